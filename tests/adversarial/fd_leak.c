/* Inherited descriptors (isolate-cheater forged its verdict through one): nothing but 0-2
   may be open when the program starts. */
#include <fcntl.h>
#include <stdio.h>
int main(void) {
  int open_fds = 0;
  for (int fd = 3; fd < 65536; fd++)
    if (fcntl(fd, F_GETFD) != -1) {
      printf("fd %d is open\n", fd);
      open_fds++;
    }
  printf("%d inherited fds\n", open_fds);
  return 0;
}
