/* ptrace and its relatives, against the program's own child (same uid: only seccomp stops it). */
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sys_report.h"
int main(void) {
  static char secret[] = "child memory";
  pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  report("ptrace attach child", ptrace(PTRACE_ATTACH, child, 0, 0));
  report("ptrace seize child", ptrace(PTRACE_SEIZE, child, 0, 0));
  report("ptrace attach init", ptrace(PTRACE_ATTACH, 1, 0, 0));
  char buf[32];
  struct iovec local = {buf, sizeof(buf)}, remote = {secret, sizeof(secret)};
  report("process_vm_readv child", process_vm_readv(child, &local, 1, &remote, 1, 0));
  report("process_vm_writev child", process_vm_writev(child, &local, 1, &remote, 1, 0));
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  report("ptrace traceme", ptrace(PTRACE_TRACEME, 0, 0, 0));
  return 0;
}
