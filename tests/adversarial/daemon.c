/* A classic daemon: double fork, setsid, every catchable signal ignored, stdio closed, then
   a loop that keeps a file growing in the workspace. The stage ends when the first process
   exits; the daemon must die with it. argv[1] is a marker the test looks for on the host. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char** argv) {
  (void)argc;
  if (fork() == 0) {
    setsid();
    if (fork() == 0) {
      for (int s = 1; s < 32; s++) signal(s, SIG_IGN);
      close(0);
      close(1);
      close(2);
      char* args[] = {"/bin/sh", "-c", "while :; do echo x >> /box/daemon.log; sleep 0.2; done",
                      argv[1], NULL};
      execv("/bin/sh", args);
      _exit(1);
    }
    _exit(0);
  }
  printf("daemon started\n");
  return 0;
}
