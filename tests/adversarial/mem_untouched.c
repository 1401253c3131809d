/* Reserves 64 GiB of address space and touches one page per GiB: memory limits count what is
   used, so this must run OK (RLIMIT_AS-style limits break JVMs, Go and V8 this way). */
#include <stdio.h>
#include <sys/mman.h>
int main(void) {
  size_t size = 64ull << 30;
  char* p =
      mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap 64 GiB");
    return 3;
  }
  for (size_t off = 0; off < size; off += 1ull << 30) p[off] = 1;
  printf("reserved 64 GiB, touched 64 pages\n");
  return 0;
}
