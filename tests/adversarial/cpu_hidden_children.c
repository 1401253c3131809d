/* CPU time hidden from per-process accounting: with SIGCHLD ignored the kernel reaps the
   children itself and never adds their time to the parent's cutime; each child burns
   100 ms and exits. 30 children: 3 s of cpu against a 500 ms limit. */
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}
int main(void) {
  signal(SIGCHLD, SIG_IGN);
  for (int i = 0; i < 30; i++) {
    pid_t p = fork();
    if (p == 0) {
      volatile unsigned long x = 0;
      while (cpu_now() < 0.1) x++;
      _exit(0);
    }
    while (kill(p, 0) == 0) usleep(1000);
  }
  printf("burned 3 s of cpu unseen\n");
  return 0;
}
