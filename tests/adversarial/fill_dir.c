/* Fills directory argv[1] with 8 MiB files (each under the file size limit) until the
   filesystem is full; prints the errno and the total written. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char** argv) {
  static char chunk[1 << 20];
  memset(chunk, 'f', sizeof(chunk));
  long long total = 0;
  int err = 0;
  for (int i = 0; i < 100000 && !err; i++) {
    char name[4096];
    snprintf(name, sizeof(name), "%s/fill-%d", argc > 1 ? argv[1] : ".", i);
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
      err = errno;
      break;
    }
    for (int j = 0; j < 8; j++) {
      ssize_t n = write(fd, chunk, sizeof(chunk));
      if (n < 0) {
        err = errno;
        break;
      }
      total += n;
      if (n < (ssize_t)sizeof(chunk)) {
        err = ENOSPC;
        break;
      }
    }
    close(fd);
  }
  printf("%s after %lld bytes\n", err ? strerrorname_np(err) : "no error", total);
  return 0;
}
