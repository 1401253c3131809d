#include "sandbox/mnt.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>
#include <vector>

#include "sandbox/fd.h"

namespace cutor::sandbox {
namespace {

// Where the new root is assembled. The tmpfs mounted here exists only in the box's private
// mount namespace, so every box can share the one (host-side empty) directory.
constexpr const char* kNewRootParent = "/run/cutor";
constexpr const char* kNewRoot = "/run/cutor/box-root";
// Where prepare_box_templates mounts its tmpfs, in the spawner's own mount namespace.
constexpr const char* kTemplates = "/run/cutor/box-templates";
// Inside the box: the per-box passwd and group the template's /etc links to.
constexpr const char* kBoxUserDir = "/.cutor";

// Set in the spawner by prepare_box_templates, and so in every init cloned from it.
bool templates_ready = false;
// The spawner's template mount namespace (make_template_namespace), or -1; inherited by
// every init cloned from it, which closes it once it has entered a copy (or has no use
// for it).
int template_namespace = -1;
// In box init: whether its mount namespace is a copy of the template namespace.
bool in_template_copy = false;

// In box init: the plan's read-only extras (Nix store paths), taken from the host's paths
// before init enters the template (whose root has none of them): each a detached read-only
// bind mount, or, for a store path that is a symlink, the link's text.
struct PreparedExtra {
  std::string box_path;
  UniqueFd tree;  // open_tree(OPEN_TREE_CLONE), read-only, nosuid, nodev
  bool is_dir = false;
  bool is_link = false;
  std::string link;  // is_link: what it points to
};
std::vector<PreparedExtra> prepared_extras;

// Where the extras go: a box with any gets a tmpfs here holding their mount points.
constexpr const char* kExtrasTop = "/nix";

// The box's own mounts in the template's copy: /.cutor, where init writes passwd and group.
constexpr const char* kBoxUserDirOptions = "size=64k,nr_inodes=16,mode=0755";

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

void mount_or_throw(const char* source, const std::string& target, const char* fstype,
                    unsigned long flags, const std::string& data, const std::string& what) {
  if (::mount(source, target.c_str(), fstype, flags, data.empty() ? nullptr : data.c_str()) != 0)
    throw_errno(what);
}

void make_dir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) throw_errno("mkdir " + path);
}

// mkdir -p of `path` (absolute, inside the new root being built). Parents are made only
// when `path` cannot be (ENOENT): one mkdir when the parent exists, as it nearly always
// does, rather than one per component from / (80 failing mkdirs per box).
void make_dirs(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) == 0 || errno == EEXIST) return;
  const size_t slash = path.rfind('/');
  if (errno != ENOENT || slash == std::string::npos || slash == 0) throw_errno("mkdir " + path);
  make_dirs(path.substr(0, slash), mode);
  make_dir(path, mode);
}

void write_file(const std::string& path, const std::string& content) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd) throw_errno("create " + path);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("write " + path);
    done += static_cast<size_t>(n);
  }
}

// Creates the mount point for `host_path` at `target`: a directory for a directory, an
// empty file for anything else.
void make_mount_point(const std::string& target, const struct stat& host) {
  auto slash = target.rfind('/');
  if (slash != std::string::npos && slash > 0) make_dirs(target.substr(0, slash), 0755);
  if (S_ISDIR(host.st_mode)) {
    make_dir(target, 0755);
    return;
  }
  UniqueFd fd(::open(target.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd) throw_errno("create mount point " + target);
}

// A bind mount of `host_path` at `target` with `flags` (MS_RDONLY, MS_NOSUID...), with the
// mounts below it when `recursive`. The first mount() ignores everything but
// MS_BIND/MS_REC: the flags need a second, remount call, or the bind silently stays
// writable (the remount applies to the top mount only).
void bind_mount(const std::string& host_path, const std::string& target, unsigned long flags,
                bool recursive = false) {
  struct stat host;
  if (::stat(host_path.c_str(), &host) != 0) throw_errno("stat " + host_path);
  make_mount_point(target, host);
  mount_or_throw(host_path.c_str(), target, nullptr, MS_BIND | (recursive ? MS_REC : 0), "",
                 "mount --bind " + host_path + " " + target);
  mount_or_throw(nullptr, target, nullptr, MS_REMOUNT | MS_BIND | flags, "",
                 "remount " + target + (flags & MS_RDONLY ? " read-only" : ""));
}

void read_only_bind(const std::string& host_path, const std::string& target) {
  bind_mount(host_path, target, MS_RDONLY | MS_NOSUID | MS_NODEV);
}

// The top-level paths of the host's base system a box root mirrors (mirror_base_path).
constexpr const char* kBasePaths[] = {"/usr",   "/bin",   "/sbin",  "/lib",
                                      "/lib64", "/lib32", "/libx32"};

// Makes `root` the calling process's root: pivot_root(".", ".") stacks the old root on the
// new one, which is detached at once, so no directory for it is needed (and none is left
// behind). In a box's own mount namespace, or once for the template's.
void pivot_into(const std::string& root) {
  if (::chdir(root.c_str()) != 0) throw_errno("chdir " + root);
  if (::syscall(SYS_pivot_root, ".", ".") != 0) throw_errno("pivot_root " + root);
  if (::umount2(".", MNT_DETACH) != 0) throw_errno("umount2 the old root of " + root);
  if (::chdir("/") != 0) throw_errno("chdir / after pivot_root");
}

// Whether `extra` names an absolute host path and an absolute box path that stays below /.
bool is_valid_extra(const BindMount& extra) {
  return !extra.host_path.empty() && extra.host_path[0] == '/' && !extra.box_path.empty() &&
         extra.box_path[0] == '/' && extra.box_path.find("/..") == std::string::npos;
}

// An extra's host path opened without following a link (O_PATH | O_NOFOLLOW), so what is
// mounted is exactly what was checked: no rename between the check and the mount can swap
// a link in. For a link, `link` is its text.
struct NoFollowSource {
  UniqueFd fd;
  struct stat st = {};
  std::string link;
};

NoFollowSource open_no_follow(const std::string& host_path) {
  NoFollowSource source;
  source.fd.reset(::open(host_path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!source.fd) throw_errno("open " + host_path + " (O_PATH|O_NOFOLLOW)");
  if (::fstat(source.fd.get(), &source.st) != 0) throw_errno("fstat " + host_path);
  if (S_ISLNK(source.st.st_mode)) {
    char link[4096];
    ssize_t n = ::readlinkat(source.fd.get(), "", link, sizeof(link) - 1);
    if (n < 0) throw_errno("readlink " + host_path);
    source.link.assign(link, static_cast<size_t>(n));
  }
  return source;
}

// An extra read-only mount (a Nix store path...). A source that is itself a symlink is
// recreated as the same symlink, never bound through: a store path may point at any host
// file, and inside the box the link resolves against the box's own tree. Anything else is
// bound through an O_PATH fd of exactly what was checked, so no rename between the check and
// the mount can swap in a link.
void read_only_mount_no_follow(const std::string& host_path, const std::string& target) {
  NoFollowSource source = open_no_follow(host_path);
  if (S_ISLNK(source.st.st_mode)) {
    auto slash = target.rfind('/');
    if (slash != std::string::npos && slash > 0) make_dirs(target.substr(0, slash), 0755);
    if (::symlink(source.link.c_str(), target.c_str()) != 0) throw_errno("symlink " + target);
    return;
  }
  make_mount_point(target, source.st);
  const std::string by_fd = "/proc/self/fd/" + std::to_string(source.fd.get());
  mount_or_throw(by_fd.c_str(), target, nullptr, MS_BIND, "",
                 "mount --bind " + host_path + " " + target);
  mount_or_throw(nullptr, target, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
                 "", "remount " + target + " read-only");
}

// A top-level path of the host base system (/usr, /bin -> usr/bin...): recreated as the same
// symlink when it is one (merged-/usr Debian), else bound read-only; skipped when missing.
void mirror_base_path(const std::string& root, const char* path) {
  struct stat st;
  if (::lstat(path, &st) != 0) {
    if (errno == ENOENT) return;
    throw_errno(std::string("lstat ") + path);
  }
  std::string target = root + path;
  if (S_ISLNK(st.st_mode)) {
    char link[4096];
    ssize_t n = ::readlink(path, link, sizeof(link) - 1);
    if (n < 0) throw_errno(std::string("readlink ") + path);
    link[n] = '\0';
    if (::symlink(link, target.c_str()) != 0) throw_errno("symlink " + target);
    return;
  }
  if (!S_ISDIR(st.st_mode)) return;
  read_only_bind(path, target);
}

// Copies the host's regular file `host_path` (opened without following links) to `target`
// in the box's root tmpfs. Cheaper than a bind mount (two mount syscalls, and one more
// mount for the kernel to copy and tear down), and read-only all the same once the root
// is remounted read-only.
void copy_file(const std::string& host_path, const std::string& target, mode_t mode) {
  UniqueFd in(::open(host_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in) throw_errno("open " + host_path);
  UniqueFd out(::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!out) throw_errno("create " + target);
  char buffer[16384];
  for (;;) {
    ssize_t got = ::read(in.get(), buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw_errno("read " + host_path);
    if (got == 0) break;
    for (ssize_t done = 0; done < got;) {
      ssize_t put = ::write(out.get(), buffer + done, static_cast<size_t>(got - done));
      if (put < 0 && errno == EINTR) continue;
      if (put < 0) throw_errno("write " + target);
      done += put;
    }
  }
}

// /etc: only what the dynamic linker, libc's name services, time zones and TLS need
// (files copied, directories bound read-only), plus hosts and hostname generated for the
// box (passwd and group follow with the user: write_passwd_and_group). Never shadow,
// sudoers, ssh keys or the like.
void build_etc(const std::string& root) {
  const std::string etc = root + "/etc";
  make_dir(etc, 0755);
  constexpr const char* kHostEtc[] = {
      "ld.so.cache", "ld.so.conf",   "ld.so.conf.d", "nsswitch.conf",   "localtime",
      "timezone",    "alternatives", "ssl/certs",    "ssl/openssl.cnf", "ca-certificates.conf",
      "mime.types",  "protocols",    "services",     "os-release",      "debian_version",
      "profile",
  };
  for (const char* name : kHostEtc) {
    std::string host_path = std::string("/etc/") + name;
    struct stat st;
    if (::lstat(host_path.c_str(), &st) != 0) continue;  // not on this host: fine
    std::string target = etc + "/" + name;
    if (S_ISLNK(st.st_mode)) {
      // e.g. localtime -> /usr/share/zoneinfo/...: the link resolves inside the box too.
      char link[4096];
      ssize_t n = ::readlink(host_path.c_str(), link, sizeof(link) - 1);
      if (n < 0) throw_errno("readlink " + host_path);
      link[n] = '\0';
      auto slash = target.rfind('/');
      make_dirs(target.substr(0, slash), 0755);
      if (::symlink(link, target.c_str()) != 0) throw_errno("symlink " + target);
      continue;
    }
    if (S_ISREG(st.st_mode)) {
      auto slash = target.rfind('/');
      make_dirs(target.substr(0, slash), 0755);
      copy_file(host_path, target, 0644);
      continue;
    }
    read_only_bind(host_path, target);
  }
  write_file(etc + "/hosts",
             "127.0.0.1 localhost cutor\n::1 localhost ip6-localhost ip6-loopback\n");
  write_file(etc + "/hostname", "cutor\n");
}

// The harmless character devices of /dev (made with mknod as the host's numbers: we are
// root in the host's user namespace, and a bind mount per device costs two mount syscalls)
// and the usual links into /proc/self/fd, in the directory `dev` (on a filesystem without
// nodev), with the mount point of /dev/shm.
void make_dev_nodes(const std::string& dev) {
  // No tty: the program has no controlling terminal, and the list is these five.
  for (const char* name : {"null", "zero", "full", "random", "urandom"}) {
    std::string host_path = std::string("/dev/") + name;
    struct stat st;
    if (::stat(host_path.c_str(), &st) != 0 || !S_ISCHR(st.st_mode)) {
      errno = ENODEV;
      throw_errno("host device " + host_path);
    }
    const std::string node = dev + "/" + name;
    const mode_t mode = st.st_mode & 0777;  // the host's (0666); chmod since umask applies
    if (::mknod(node.c_str(), S_IFCHR | mode, st.st_rdev) != 0) throw_errno("mknod " + node);
    if (::chmod(node.c_str(), mode) != 0) throw_errno("chmod " + node);
  }
  const std::pair<const char*, const char*> kLinks[] = {{"/proc/self/fd", "fd"},
                                                        {"/proc/self/fd/0", "stdin"},
                                                        {"/proc/self/fd/1", "stdout"},
                                                        {"/proc/self/fd/2", "stderr"}};
  for (const auto& [to, name] : kLinks) {
    std::string link = dev + "/" + name;
    if (::symlink(to, link.c_str()) != 0) throw_errno("symlink " + link);
  }
  make_dir(dev + "/shm", 01777);
}

// The size of a box's /tmp and /dev/shm. tmpfs size=0 would mean "unlimited": never pass it.
int64_t box_tmp_bytes(const BoxPlan& plan) {
  return plan.tmp_bytes > 0 ? plan.tmp_bytes : (64ll << 20);
}

// The mounts every box gets fresh, below `root` ("" once in the box's own copy of the
// template) on existing mount points: a size-limited /tmp and /dev/shm, and the proc of the
// box's pid namespace (we are its init), not the host's.
void mount_box_scratch(const std::string& root, int64_t tmp_bytes) {
  const std::string size = "size=" + std::to_string(tmp_bytes) + ",mode=1777";
  mount_or_throw("cutor-tmp", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, size,
                 "mount tmpfs " + root + "/tmp");
  mount_or_throw("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "",
                 "mount proc " + root + "/proc");
  mount_or_throw("cutor-shm", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, size,
                 "mount tmpfs " + root + "/dev/shm");
}

// /dev: the nodes (the spawner's template bound, or a small tmpfs of our own) with the
// mount point of /dev/shm; read-only.
void build_dev(const std::string& root) {
  const std::string dev = root + "/dev";
  if (templates_ready) {
    // The spawner's nodes, bound read-only (devices allowed: no MS_NODEV).
    bind_mount(std::string(kTemplates) + "/dev", dev, MS_RDONLY | MS_NOSUID | MS_NOEXEC);
  } else {
    make_dir(dev, 0755);
    mount_or_throw("cutor-dev", dev, "tmpfs", MS_NOSUID | MS_NOEXEC,
                   "size=64k,nr_inodes=64,mode=0755", "mount tmpfs " + dev);
    make_dev_nodes(dev);
    mount_or_throw(nullptr, dev, nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, "",
                   "remount " + dev + " read-only");
  }
}

// The box's /etc: the spawner's template bound read-only (with its own read-only binds),
// or built here.
void mount_etc(const std::string& root) {
  if (!templates_ready) {
    build_etc(root);
    return;
  }
  // With the template's own read-only binds (ld.so.conf.d, alternatives, ssl/certs).
  bind_mount(std::string(kTemplates) + "/etc", root + "/etc", MS_RDONLY | MS_NOSUID | MS_NODEV,
             /*recursive=*/true);
  make_dirs(root + kBoxUserDir, 0755);
}

// The mount points every box root has, with their modes (mounted on by init, or left
// empty: /root, /home, and /nix but in boxes with store paths).
constexpr std::pair<const char*, mode_t> kRootDirs[] = {
    {kBoxWorkdir.data(), 0755}, {"/tmp", 01777}, {"/proc", 0555}, {"/root", 0700}, {"/home", 0755},
    {kExtrasTop, 0755}};

// In the spawner, with the templates built: a mount namespace whose root is what every box
// starts from (but one with read-only extras outside /nix/store): a tmpfs, read-only, with
// the host base system bound, /etc and /dev bound from the templates and the empty mount
// points. Made once (pivot_root, then the old root unmounted), so a box's
// unshare(CLONE_NEWNS) copies it and none has to unmount a root of its own: each such
// unmount waits for an expedited RCU grace period (0.3-0.5 ms of a box's start on a busy
// host). Leaves the spawner in its own namespace. Returns the new namespace's fd; throws
// std::system_error.
UniqueFd make_template_namespace() {
  UniqueFd own(::open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC));
  if (!own) throw_errno("open /proc/self/ns/mnt");
  if (::unshare(CLONE_NEWNS) != 0) throw_errno("unshare(CLONE_NEWNS) for the template root");
  // Opened now: the new root has no /proc. The namespace is the same after pivot_root.
  UniqueFd made(::open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC));
  std::string failure = "open the template's /proc/self/ns/mnt";
  int failure_errno = errno;
  try {
    if (!made) throw_errno(failure);
    const std::string root = std::string(kTemplates) + "/root";
    make_dir(root, 0755);
    mount_or_throw("cutor-root", root, "tmpfs", MS_NOSUID | MS_NODEV,
                   "size=64k,nr_inodes=256,mode=0755", "mount tmpfs " + root);
    for (const char* path : kBasePaths) mirror_base_path(root, path);
    bind_mount(std::string(kTemplates) + "/etc", root + "/etc", MS_RDONLY | MS_NOSUID | MS_NODEV,
               /*recursive=*/true);
    bind_mount(std::string(kTemplates) + "/dev", root + "/dev", MS_RDONLY | MS_NOSUID | MS_NOEXEC);
    make_dir(root + kBoxUserDir, 0755);
    for (const auto& [dir, mode] : kRootDirs) make_dir(root + dir, mode);
    pivot_into(root);
    mount_or_throw(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
                   "", "remount the template root read-only");
  } catch (const std::system_error& e) {
    made.reset();
    failure = e.what();
    failure_errno = e.code().value();
  }
  // Back to the spawner's namespace, which can see the host's paths (for boxes with
  // read-only extras). A spawner that cannot go back must not fork a single init.
  if (::setns(own.get(), CLONE_NEWNS) != 0) ::_exit(1);
  if (!made) throw std::system_error(failure_errno, std::generic_category(), failure);
  return made;
}

}  // namespace

bool prepare_box_templates() {
  try {
    if (::unshare(CLONE_NEWNS) != 0) throw_errno("unshare(CLONE_NEWNS) for the box templates");
    mount_or_throw(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, "",
                   "make / private (MS_REC|MS_PRIVATE)");
    make_dirs(kTemplates, 0755);
    // No MS_NODEV: /dev's nodes must work through the boxes' binds.
    mount_or_throw("cutor-templates", kTemplates, "tmpfs", MS_NOSUID | MS_NOEXEC,
                   "size=4m,nr_inodes=1024,mode=0755", std::string("mount tmpfs ") + kTemplates);
    const std::string root = kTemplates;
    build_etc(root);
    for (const char* name : {"passwd", "group"}) {
      const std::string link = root + "/etc/" + name;
      const std::string to = std::string(kBoxUserDir) + "/" + name;
      if (::symlink(to.c_str(), link.c_str()) != 0) throw_errno("symlink " + link);
    }
    make_dir(root + "/dev", 0755);
    make_dev_nodes(root + "/dev");
    templates_ready = true;
  } catch (const std::system_error&) {
    templates_ready = false;  // every init builds its own /etc and /dev
    return false;
  }
  try {
    template_namespace = make_template_namespace().release();
  } catch (const std::system_error&) {
    template_namespace = -1;  // every init builds its root from the templates
  }
  return true;
}

int box_template_namespace_fd() {
  return template_namespace;
}

namespace {

// Whether every read-only extra of `plan` is a store path below /nix/store (anything else
// makes the box build its root from the host's paths, as before templates).
bool extras_fit_the_template(const BoxPlan& plan) {
  const std::string store = std::string(kExtrasTop) + "/store/";
  for (const BindMount& extra : plan.read_only) {
    if (!is_valid_extra(extra) || extra.box_path.rfind(store, 0) != 0 ||
        extra.box_path.size() == store.size() || extra.box_path.find("//") != std::string::npos)
      return false;
  }
  return true;
}

// Takes each extra from the host's path as it is now: a link is read (and recreated in the
// box, resolving there), anything else is cloned as a detached bind mount of exactly the
// file checked (no rename can swap a link in: it is opened with O_NOFOLLOW and cloned
// through that fd) and made read-only, nosuid and nodev before it is ever attached.
void take_extras(const BoxPlan& plan) {
  for (const BindMount& extra : plan.read_only) {
    PreparedExtra taken;
    taken.box_path = extra.box_path;
    NoFollowSource source = open_no_follow(extra.host_path);
    if (S_ISLNK(source.st.st_mode)) {
      taken.is_link = true;
      taken.link = std::move(source.link);
    } else {
      taken.is_dir = S_ISDIR(source.st.st_mode);
      taken.tree.reset(static_cast<int>(
          ::open_tree(source.fd.get(), "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH)));
      if (!taken.tree) throw_errno("open_tree(OPEN_TREE_CLONE) of " + extra.host_path);
      struct mount_attr attr = {};
      attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
      if (::mount_setattr(taken.tree.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
        throw_errno("mount_setattr(read-only) of " + extra.host_path);
    }
    prepared_extras.push_back(std::move(taken));
  }
}

// In the template's copy: a tmpfs at /nix holding the extras' mount points (and links),
// each extra attached, then the tmpfs made read-only.
void attach_extras() {
  if (prepared_extras.empty()) return;
  const std::string options =
      "size=1m,nr_inodes=" + std::to_string(64 + 2 * prepared_extras.size()) + ",mode=0755";
  mount_or_throw("cutor-nix", kExtrasTop, "tmpfs", MS_NOSUID | MS_NODEV, options,
                 std::string("mount tmpfs ") + kExtrasTop);
  for (PreparedExtra& extra : prepared_extras) {
    const std::string& target = extra.box_path;
    make_dirs(target.substr(0, target.rfind('/')), 0755);
    if (extra.is_link) {
      if (::symlink(extra.link.c_str(), target.c_str()) != 0) throw_errno("symlink " + target);
      continue;
    }
    if (extra.is_dir) {
      make_dir(target, 0755);
    } else {
      UniqueFd point(::open(target.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
      if (!point) throw_errno("create mount point " + target);
    }
    if (::move_mount(extra.tree.get(), "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
      throw_errno("move_mount " + target);
    extra.tree.reset();
  }
  prepared_extras.clear();
  mount_or_throw(nullptr, kExtrasTop, nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
                 options, std::string("remount ") + kExtrasTop + " read-only");
}

}  // namespace

bool enter_box_template(const BoxPlan& plan) {
  if (template_namespace < 0) return false;
  const bool usable = extras_fit_the_template(plan);
  if (usable) {
    take_extras(plan);  // from the host's paths, which the template cannot see
    if (::setns(template_namespace, CLONE_NEWNS) != 0)
      throw_errno("setns to the template mount namespace");
  }
  ::close(template_namespace);  // the program must not inherit it
  template_namespace = -1;
  in_template_copy = usable;
  return usable;
}

namespace {

// build_box_base in a copy of the template namespace: only what is each box's own.
void mount_box_own_parts(const BoxPlan& plan) {
  mount_box_scratch("", box_tmp_bytes(plan));
  mount_or_throw("cutor-users", kBoxUserDir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                 kBoxUserDirOptions, std::string("mount tmpfs ") + kBoxUserDir);
  attach_extras();
  if (::chdir("/") != 0) throw_errno("chdir /");
}

}  // namespace

void build_box_base(const BoxPlan& plan) {
  if (in_template_copy) {
    mount_box_own_parts(plan);
    return;
  }
  // Nothing done below may propagate to the host's mount table.
  mount_or_throw(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, "",
                 "make / private (MS_REC|MS_PRIVATE)");

  make_dir(kNewRootParent, 0700);
  make_dir(kNewRoot, 0700);
  const std::string root = kNewRoot;
  // Holds only mount points and the generated /etc files; read-only once built.
  mount_or_throw("cutor-root", root, "tmpfs", MS_NOSUID | MS_NODEV,
                 "size=1m,nr_inodes=4096,mode=0755", "mount tmpfs " + root);

  for (const char* path : kBasePaths) mirror_base_path(root, path);
  mount_etc(root);

  for (const BindMount& extra : plan.read_only) {
    if (!is_valid_extra(extra)) {
      errno = EINVAL;
      throw_errno("read-only mount " + extra.host_path + " -> " + extra.box_path);
    }
    read_only_mount_no_follow(extra.host_path, root + extra.box_path);
  }

  // The workspace's mount point; the workspace itself comes with finish_box_filesystem.
  make_dir(root + std::string(kBoxWorkdir), 0755);

  make_dir(root + "/tmp", 01777);
  make_dir(root + "/proc", 0555);
  build_dev(root);
  mount_box_scratch(root, box_tmp_bytes(plan));
  make_dir(root + "/root", 0700);
  make_dir(root + "/home", 0755);

  pivot_into(root);
}

void finish_box_filesystem(const BoxPlan& plan, int workspace_mount) {
  // The workspace: the only persistent writable place. No setuid, no devices (set on the
  // detached mount by detach_workspace_mount).
  const std::string box(kBoxWorkdir);
  if (::move_mount(workspace_mount, "", AT_FDCWD, box.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
    throw_errno("move_mount the workspace to " + box);
  const std::string uid = std::to_string(plan.uid);
  const std::string gid = std::to_string(plan.gid);
  // The box user comes first so a lookup by uid names it `cutor` even when it shares a
  // number with a well-known user.
  const std::string users = templates_ready ? kBoxUserDir : "/etc";
  write_file(users + "/passwd", "cutor:x:" + uid + ":" + gid + ":cutor:" + box +
                                    ":/bin/sh\nroot:x:0:0:root:/root:/bin/sh\n"
                                    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
  write_file(users + "/group", "cutor:x:" + gid + ":\nroot:x:0:\nnogroup:x:65534:\n");
  if (in_template_copy) {  // the root is read-only already
    mount_or_throw(nullptr, kBoxUserDir, nullptr,
                   MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, kBoxUserDirOptions,
                   std::string("remount ") + kBoxUserDir + " read-only");
    return;
  }
  mount_or_throw(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, "",
                 "remount / read-only");
}

UniqueFd detach_workspace_mount(int workspace_dirfd) {
  UniqueFd tree(static_cast<int>(
      ::open_tree(workspace_dirfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH)));
  if (!tree) throw_errno("open_tree(OPEN_TREE_CLONE) of the workspace");
  struct mount_attr attr = {};
  attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  if (::mount_setattr(tree.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
    throw_errno("mount_setattr(nosuid, nodev) of the workspace");
  return tree;
}

}  // namespace cutor::sandbox
