/* The seccomp filter refuses personality flags that weaken the address space (no ASLR,
   READ_IMPLIES_EXEC, page 0...) but lets the query personality(0xffffffff) through by
   allowing any value with a bit of the top nibble set. The kernel stores whatever value it
   is given: a flag plus an undefined top bit must be refused too. */
#include <sys/personality.h>

#include "sys_report.h"
static void try_flag(const char* what, unsigned long flag) {
  long rc = personality(flag | 0x10000000UL);
  if (rc >= 0) {
    int now = personality(0xffffffff);
    rc = (now & flag) ? 0 : -1;
    if (rc < 0) errno = EPERM;
    personality(PER_LINUX);
  }
  report(what, rc);
}
int main(void) {
  report("plain ADDR_NO_RANDOMIZE", personality(ADDR_NO_RANDOMIZE));
  try_flag("ADDR_NO_RANDOMIZE with top bit", ADDR_NO_RANDOMIZE);
  try_flag("READ_IMPLIES_EXEC with top bit", READ_IMPLIES_EXEC);
  try_flag("ADDR_COMPAT_LAYOUT with top bit", ADDR_COMPAT_LAYOUT);
  return 0;
}
