/* CVE-2019-5736 (runc): box init is the host's cutor binary, forked; writing through
   /proc/1/exe (or an fd of it) would replace the host's binary. Also init's fds and its
   mapped files. argv[1]: the host path of the binary, which must not resolve in the box. */
#include <fcntl.h>
#include <unistd.h>

#include "sys_report.h"
int main(int argc, char** argv) {
  report("open /proc/1/exe for writing", open("/proc/1/exe", O_WRONLY));
  report("open /proc/1/exe O_PATH", open("/proc/1/exe", O_PATH));
  report("open /proc/1/fd/0", open("/proc/1/fd/0", O_RDONLY));
  report("opendir /proc/1/map_files", open("/proc/1/map_files", O_RDONLY | O_DIRECTORY));
  report("open /proc/1/mem", open("/proc/1/mem", O_RDWR));
  report("open host binary path", argc > 1 ? open(argv[1], O_WRONLY) : -1);
  return 0;
}
