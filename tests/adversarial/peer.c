/* One of two boxes run at the same time. It starts a marker process (argv[1]), announces
   itself on an abstract unix socket, a SysV shared memory key derived from argv[1] and files
   in /tmp, /dev/shm and /box, then for 3 s looks for the other's (argv[2]) marker in all of
   them. Prints the time window it was looking in, so the test can prove the two overlapped. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}
static key_t key_of(const char* s) {
  key_t k = 5381;
  while (*s) k = k * 33 + *s++;
  return k & 0x7fffffff;
}
static socklen_t abstract_addr(struct sockaddr_un* a, const char* name) {
  memset(a, 0, sizeof(*a));
  a->sun_family = AF_UNIX;
  snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "%s", name);
  return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name);
}
/* True when a process runs the marker process, "sh -c 'sleep 30; :' <marker>" (the program's
   own command line names both markers, so the search is for the marker process's form). */
static int proc_has(const char* marker) {
  char wanted[512];
  snprintf(wanted, sizeof(wanted), "sleep 30; : %s", marker);
  DIR* d = opendir("/proc");
  struct dirent* e;
  int found = 0;
  while ((e = readdir(d))) {
    char path[300], buf[4096];
    snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) continue;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    for (ssize_t i = 0; i < n; i++)
      if (buf[i] == 0) buf[i] = ' ';
    if (n > 0) {
      buf[n] = 0;
      if (strstr(buf, wanted)) found = 1;
    }
  }
  closedir(d);
  return found;
}
int main(int argc, char** argv) {
  if (argc < 3) return 2;
  const char *mine = argv[1], *theirs = argv[2];
  pid_t marker = fork();
  if (marker == 0) {
    execl("/bin/sh", "sh", "-c", "sleep 30; :", mine, (char*)NULL);
    _exit(1);
  }
  int srv = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a;
  socklen_t len = abstract_addr(&a, mine);
  if (bind(srv, (struct sockaddr*)&a, len) != 0 || listen(srv, 4) != 0) {
    perror("bind");
    return 3;
  }
  char path[512];
  const char* dirs[] = {"/tmp", "/dev/shm", "/box"};
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof(path), "%s/%s", dirs[i], mine);
    close(open(path, O_WRONLY | O_CREAT, 0666));
  }
  int shm = shmget(key_of(mine), 4096, IPC_CREAT | 0666);
  if (shm < 0) {
    perror("shmget");
    return 4;
  }
  usleep(100000);
  if (!proc_has(mine)) {
    printf("own marker not visible\n");
    return 5;
  }
  double start = now(), end = start;
  int seen_proc = 0, seen_sock = 0, seen_shm = 0, seen_file = 0;
  while ((end = now()) < start + 3) {
    seen_proc |= proc_has(theirs);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    len = abstract_addr(&a, theirs);
    if (connect(c, (struct sockaddr*)&a, len) == 0) seen_sock = 1;
    close(c);
    if (shmget(key_of(theirs), 0, 0) >= 0) seen_shm = 1;
    for (int i = 0; i < 3; i++) {
      snprintf(path, sizeof(path), "%s/%s", dirs[i], theirs);
      if (access(path, F_OK) == 0) seen_file = 1;
    }
    usleep(50000);
  }
  printf("window %.3f %.3f\n", start, end);
  printf("peer proc %d sock %d shm %d file %d\n", seen_proc, seen_sock, seen_shm, seen_file);
  shmctl(shm, IPC_RMID, NULL);
  kill(marker, SIGKILL);
  return 0;
}
