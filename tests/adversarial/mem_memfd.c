/* Memory that belongs to no process: a memfd (shmem) filled to 3x the limit. The pages are
   charged to the box's memory cgroup, so this must be MEMORY_LIMIT_EXCEEDED too. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(void) {
  int fd = memfd_create("cutor-adv", 0);
  if (fd < 0) {
    perror("memfd_create");
    return 3;
  }
  static char chunk[1 << 20];
  memset(chunk, 7, sizeof(chunk));
  for (int i = 0; i < 192; i++)
    if (write(fd, chunk, sizeof(chunk)) != sizeof(chunk)) {
      printf("write failed at %d MiB\n", i);
      return 4;
    }
  printf("192 MiB in a memfd\n");
  return 0;
}
