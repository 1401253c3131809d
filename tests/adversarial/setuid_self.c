/* Becoming root again, or another user: every identity change must fail. */
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sys_report.h"
int main(void) {
  report("setuid 0", setuid(0));
  report("setresuid 0", setresuid(0, 0, 0));
  report("setgid 0", setgid(0));
  gid_t root = 0;
  report("setgroups root", setgroups(1, &root));
  report("setuid 60999", setuid(60999));
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2] = {{~0u, ~0u, ~0u}, {~0u, ~0u, ~0u}};
  report("capset all", syscall(SYS_capset, &h, d));
  report("ambient raise", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, 21 /*SYS_ADMIN*/, 0, 0));
  report("chown workspace to root", chown("/box", 0, 0));
  printf("uid %d euid %d gid %d nnp %d\n", getuid(), geteuid(), getgid(),
         prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
  return 0;
}
