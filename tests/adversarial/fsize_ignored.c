/* Past the file size limit with SIGXFSZ ignored: write fails with EFBIG and the file stops at
   exactly the limit. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
  signal(SIGXFSZ, SIG_IGN);
  int fd = open("big", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  static char chunk[100000];
  ssize_t n;
  while ((n = write(fd, chunk, sizeof(chunk))) > 0) {
  }
  int err = errno;
  struct stat st;
  fstat(fd, &st);
  printf("%s size %lld\n", strerrorname_np(err), (long long)st.st_size);
  return 0;
}
