/* Typing into a terminal (TIOCSTI) reaches whoever reads it next, e.g. a host shell: the box
   has no controlling terminal and the ioctl is refused on any fd. */
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "sys_report.h"
int main(void) {
  report("open /dev/tty", open("/dev/tty", O_RDWR));
  char c = 'x';
  for (int fd = 0; fd < 3; fd++) {
    char what[64];
    snprintf(what, sizeof(what), "TIOCSTI fd %d", fd);
    report(what, ioctl(fd, TIOCSTI, &c));
  }
  report("TIOCSTI high bits", ioctl(0, TIOCSTI | 0x100000000UL, &c));
  report("setsid again", setsid());
  return 0;
}
