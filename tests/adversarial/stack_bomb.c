/* -Winfinite-recursion is the point. */
#pragma GCC diagnostic ignored "-Winfinite-recursion"
/* Unbounded recursion: the stack rlimit ends it with SIGSEGV, inside the box. */
#include <stdio.h>
static int depth(volatile char* prev, long n) {
  volatile char frame[4096];
  frame[0] = prev ? prev[0] : 1;
  return depth(frame, n + 1) + frame[0];
}
int main(void) {
  printf("recursing\n");
  fflush(stdout);
  return depth(NULL, 0);
}
