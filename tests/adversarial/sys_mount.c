/* mount(2) family: new mounts, remounting the read-only binds writable, unmounting. */
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sys_report.h"
int main(void) {
  report("mount tmpfs /tmp", mount("x", "/tmp", "tmpfs", 0, NULL));
  report("remount /usr rw", mount(NULL, "/usr", NULL, MS_REMOUNT | MS_BIND, NULL));
  report("remount / rw", mount(NULL, "/", NULL, MS_REMOUNT, NULL));
  report("bind /proc over /box", mount("/proc", "/box", NULL, MS_BIND, NULL));
  report("umount /proc", umount2("/proc", MNT_DETACH));
  report("umount /usr", umount("/usr"));
  report("fsopen tmpfs", syscall(SYS_fsopen, "tmpfs", 0));
  report("open_tree /", syscall(SYS_open_tree, -100, "/", 1 /*OPEN_TREE_CLONE*/));
  report("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
  report("chroot /tmp", chroot("/tmp"));
  return 0;
}
