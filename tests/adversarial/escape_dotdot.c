/* Walking out of the workspace with "..": by path, from a directory fd, and by chdir. Each
   attempt names the host file in argv[1]; none may open it. */
#include <fcntl.h>
#include <unistd.h>

#include "sys_report.h"
int main(int argc, char** argv) {
  if (argc < 2) return 2;
  char path[4096];
  snprintf(path, sizeof(path), "../../../../../../..%s", argv[1]);
  report("open ../ path", open(path, O_RDONLY));
  snprintf(path, sizeof(path), "/box/../../../..%s", argv[1]);
  report("open /box/../ path", open(path, O_RDONLY));
  int dir = open("/box", O_RDONLY | O_DIRECTORY);
  snprintf(path, sizeof(path), "../../../..%s", argv[1]);
  report("openat dirfd ../", openat(dir, path, O_RDONLY));
  for (int i = 0; i < 40; i++) chdir("..");
  report("open after chdir ..", open(argv[1] + 1, O_RDONLY));
  report("open absolute", open(argv[1], O_RDONLY));
  return 0;
}
