/* The seccomp filter denies by default: a syscall on no allow list gets ENOSYS (each of
   these works for an unprivileged user on the host), modify_ldt gets EPERM, and every
   socket family but AF_UNIX, AF_INET and AF_INET6 gets EAFNOSUPPORT, even with garbage in
   the upper half of the family register. The allowed calls next to them must still work. */
#include <asm/ldt.h>
#include <linux/aio_abi.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <unistd.h>

#include "sys_report.h"
int main(void) {
  char ldt[sizeof(struct user_desc) * 8];
  report("modify_ldt read", syscall(SYS_modify_ldt, 0, ldt, sizeof(ldt)));

  aio_context_t aio = 0;
  report("io_setup", syscall(SYS_io_setup, 1, &aio));
  struct timex tx = {0};
  report("adjtimex read", syscall(SYS_adjtimex, &tx));
  void* head;
  size_t len;
  report("get_robust_list self", syscall(SYS_get_robust_list, 0, &head, &len));
  report("set_mempolicy default", syscall(SYS_set_mempolicy, 0 /* MPOL_DEFAULT */, NULL, 0));
  report("move_pages self", syscall(SYS_move_pages, 0, 0, NULL, NULL, NULL, 0));
  report("sysfs count", syscall(SYS_sysfs, 3));
  report("landlock_create_ruleset version",
         syscall(SYS_landlock_create_ruleset, NULL, 0, 1 /* LANDLOCK_CREATE_RULESET_VERSION */));

  /* Every family the kernel numbers (AF_MAX is 46) but the three allowed. */
  char what[64];
  for (int family = 0; family < 46; ++family) {
    if (family == AF_UNIX || family == AF_INET || family == AF_INET6) continue;
    snprintf(what, sizeof(what), "socket family %d", family);
    report(what, socket(family, SOCK_DGRAM, 0));
    snprintf(what, sizeof(what), "socketpair family %d", family);
    int pair[2];
    report(what, socketpair(family, SOCK_DGRAM, 0, pair));
  }
  report("socket AF_ALG high bits", syscall(SYS_socket, (1L << 32) | AF_ALG, SOCK_SEQPACKET, 0));

  /* What stays allowed. */
  report("socket AF_UNIX", socket(AF_UNIX, SOCK_STREAM, 0));
  report("socket AF_UNIX high bits", syscall(SYS_socket, (1L << 32) | AF_UNIX, SOCK_STREAM, 0));
  report("socket AF_INET", socket(AF_INET, SOCK_STREAM, 0));
  report("socket AF_INET6", socket(AF_INET6, SOCK_DGRAM, 0));
  int pair[2];
  report("socketpair AF_UNIX", socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
  report("personality query", personality(0xffffffff));
  report("personality PER_LINUX", personality(PER_LINUX));
  report("mkfifo", mkfifo("/tmp/fifo", 0600));
  return 0;
}
