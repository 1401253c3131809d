/* io_uring: a large kernel attack surface whose operations bypass seccomp per-syscall rules. */
#include <sys/syscall.h>
#include <unistd.h>

#include "sys_report.h"
int main(void) {
  unsigned char params[120] = {0};
  report("io_uring_setup", syscall(SYS_io_uring_setup, 8, params));
  report("io_uring_enter", syscall(SYS_io_uring_enter, 0, 1, 0, 0, NULL, 0));
  report("io_uring_register", syscall(SYS_io_uring_register, 0, 0, NULL, 0));
  return 0;
}
