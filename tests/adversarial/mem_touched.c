/* Allocates and touches argv[1] MiB in 1 MiB steps: past the memory limit the box must be
   killed and the verdict be MEMORY_LIMIT_EXCEEDED (not a crash, not the host's OOM). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char** argv) {
  long mib = argc > 1 ? atol(argv[1]) : 0;
  for (long i = 0; i < mib; i++) {
    volatile char* p = malloc(1 << 20);
    if (!p) {
      printf("malloc failed at %ld MiB\n", i);
      return 3;
    }
    for (long off = 0; off < (1 << 20); off += 4096) p[off] = 0x5a; /* volatile: really written */
  }
  printf("touched %ld MiB and survived\n", mib);
  return 0;
}
