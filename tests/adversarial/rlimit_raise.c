/* Raising the limits the box was started with: hard limits only go down. */
#include <sys/resource.h>

#include "sys_report.h"
static long raise_limit(int resource) {
  struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
  return setrlimit(resource, &rl);
}
int main(void) {
  report("raise RLIMIT_NPROC", raise_limit(RLIMIT_NPROC));
  report("raise RLIMIT_FSIZE", raise_limit(RLIMIT_FSIZE));
  report("raise RLIMIT_CPU", raise_limit(RLIMIT_CPU));
  report("raise RLIMIT_CORE", raise_limit(RLIMIT_CORE));
  report("raise RLIMIT_STACK", raise_limit(RLIMIT_STACK));
  report("priority -20", setpriority(PRIO_PROCESS, 0, -20));
  return 0;
}
