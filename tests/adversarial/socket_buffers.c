/* Memory held by the kernel for the program: data queued in unix socket pairs nobody reads.
   Queues argv[1] MiB in total (non-blocking writes until each pair is full), then holds it
   for a second. The memory limit must cover it (or the writes must fail): a program must not
   pin several times its memory limit in kernel buffers. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char** argv) {
  long long want = (argc > 1 ? atoll(argv[1]) : 256) << 20, queued = 0;
  struct rlimit nofile;
  getrlimit(RLIMIT_NOFILE, &nofile);
  static char chunk[65536];
  memset(chunk, 's', sizeof(chunk));
  int pairs = 0, err = 0;
  while (queued < want) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv) != 0) {
      err = errno;
      break;
    }
    pairs++;
    int size = 1 << 30;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    for (;;) {
      ssize_t n = write(sv[0], chunk, sizeof(chunk));
      if (n < 0) {
        if (errno != EAGAIN) err = errno;
        break;
      }
      queued += n;
      if (queued >= want) break;
    }
    if (err) break;
  }
  printf("nofile %llu pairs %d queued %lld MiB %s\n", (unsigned long long)nofile.rlim_cur, pairs,
         queued >> 20, err ? strerrorname_np(err) : "");
  fflush(stdout);
  sleep(1);
  return 0;
}
