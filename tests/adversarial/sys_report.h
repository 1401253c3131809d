/* Shared by the C probes: print "<what>: OK" or "<what>: <ERRNO>" for a syscall result.
   Compiled with -D_GNU_SOURCE (strerrorname_np). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
static void report(const char* what, long rc) {
  if (rc < 0)
    printf("%s: %s\n", what, strerrorname_np(errno));
  else
    printf("%s: OK\n", what);
  fflush(stdout);
}
