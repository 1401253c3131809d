/* A 32-bit syscall through int 0x80 from a 64-bit process: another syscall table that a
   filter written for x86_64 numbers would not cover. 20 is getpid in the i386 table; 21 is
   mount. The filter must kill the process (SIGSYS) before either runs. */
#include <stdio.h>
int main(void) {
  printf("before\n");
  fflush(stdout);
  long ret;
  __asm__ volatile("int $0x80" : "=a"(ret) : "a"(21L), "b"(0L), "c"(0L), "d"(0L) : "memory");
  printf("int 0x80 mount returned %ld\n", ret);
  __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
  printf("int 0x80 getpid returned %ld\n", ret);
  return 0;
}
