/* 10 GB to stdout and to stderr at once, in 64 KiB writes. */
#include <string.h>
#include <unistd.h>
int main(void) {
  static char out[65536], err[65536];
  memset(out, 'o', sizeof(out));
  memset(err, 'e', sizeof(err));
  for (long long done = 0; done < 10000000000LL; done += sizeof(out)) {
    if (write(1, out, sizeof(out)) < 0) return 3;
    if (write(2, err, sizeof(err)) < 0) return 4;
  }
  return 0;
}
