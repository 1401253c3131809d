/* New namespaces: the usual first step of a container escape (user ns grants caps). */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sys_report.h"
static char stack[65536];
static int child(void* arg) {
  (void)arg;
  return 0;
}
static long try_clone(int flags) {
  long pid = clone(child, stack + sizeof(stack), flags | SIGCHLD, NULL);
  if (pid > 0) waitpid(pid, NULL, 0);
  return pid;
}
int main(void) {
  report("unshare user", unshare(CLONE_NEWUSER));
  report("unshare mount", unshare(CLONE_NEWNS));
  report("unshare net", unshare(CLONE_NEWNET));
  report("unshare pid", unshare(CLONE_NEWPID));
  report("clone newuser", try_clone(CLONE_NEWUSER));
  report("clone newns", try_clone(CLONE_NEWNS));
  struct {
    unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
  } args = {0};
  args.flags = CLONE_NEWUSER;
  args.exit_signal = SIGCHLD;
  long rc = syscall(SYS_clone3, &args, sizeof(args));
  if (rc == 0) _exit(0);
  report("clone3 newuser", rc);
  int fd = open("/proc/1/ns/mnt", O_RDONLY);
  report("open /proc/1/ns/mnt", fd);
  report("setns mnt", setns(fd >= 0 ? fd : 0, CLONE_NEWNS));
  return 0;
}
