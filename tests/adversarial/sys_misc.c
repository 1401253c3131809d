/* Kernel interfaces no judged program needs; each has been a privilege escalation path. */
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <sys/personality.h>
#include <sys/reboot.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sys_report.h"
int main(void) {
  union bpf_attr attr = {0};
  report("bpf map_create", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
  struct perf_event_attr pe = {0};
  pe.size = sizeof(pe);
  pe.type = PERF_TYPE_SOFTWARE;
  report("perf_event_open", syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
  report("userfaultfd", syscall(SYS_userfaultfd, 0));
  /* "shocker": open a host file by handle, bypassing the mount namespace. */
  struct {
    unsigned int bytes;
    int type;
    unsigned char h[8];
  } handle = {8, 1, {2, 0, 0, 0, 0, 0, 0, 0}};
  report("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, &handle, O_RDONLY));
  report("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, "/usr", &handle, NULL, 0));
  report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
  report("init_module", syscall(SYS_init_module, NULL, 0, ""));
  report("reboot", reboot(RB_POWER_OFF));
  report("swapoff", swapoff("/box/x"));
  report("syslog read", syscall(SYS_syslog, 3, NULL, 0));
  report("acct", acct("/box/acct"));
  report("sethostname", sethostname("evil", 4));
  report("personality no-aslr", personality(ADDR_NO_RANDOMIZE) == -1
                                    ? -1
                                    : (personality(0xffffffff) & ADDR_NO_RANDOMIZE ? 0 : -1));
  report("iopl", syscall(SYS_iopl, 3));
  return 0;
}
