/* The memory limit is for the whole box: four processes touching 48 MiB each stay under a
   64 MiB per-process view but not under the box's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
  for (int i = 0; i < 4; i++) {
    if (fork() == 0) {
      /* volatile: every page is really written (a plain memset of memory never read again
         is optimised away together with the malloc). */
      volatile char* p = malloc(48 << 20);
      for (long off = 0; p && off < (48 << 20); off += 4096) p[off] = 1;
      sleep(3);
      _exit(0);
    }
  }
  int status, killed = 0;
  while (wait(&status) > 0)
    if (WIFSIGNALED(status)) killed++;
  printf("%d children killed\n", killed);
  return 0;
}
