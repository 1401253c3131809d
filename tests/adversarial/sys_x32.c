/* The x32 ABI: x86_64 syscall numbers with bit 30 set, a third table. unshare (272) must
   not get through (the kernel may not have x32 at all: ENOSYS; the filter: SIGSYS). */
#include <sched.h>
#include <unistd.h>

#include "sys_report.h"
int main(void) {
  printf("before\n");
  fflush(stdout);
  report("x32 unshare user", syscall(0x40000000L | 272, (long)CLONE_NEWUSER));
  report("x32 getpid", syscall(0x40000000L | 39));
  return 0;
}
