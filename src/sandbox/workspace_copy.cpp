// Copying a workspace (a compiled one, for each test case) without trusting its contents:
// the program that wrote them may have planted symlinks, FIFOs, devices or deep trees.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

#include "sandbox/fd.h"
#include "sandbox/workspace.h"

namespace cutor::sandbox {
namespace {

[[noreturn]] void fail(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

class TreeCopier {
 public:
  TreeCopier(uid_t uid, gid_t gid, std::string context)
      : uid_(uid), gid_(gid), context_(std::move(context)) {}

  void copy_dir(int from, int to, dev_t dev, const std::string& where, int depth) {
    if (depth > kMaxCopyDepth)
      fail(ELOOP, context_ + ": " + where + " is nested deeper than " +
                      std::to_string(kMaxCopyDepth) + " directories");
    // fdopendir takes the fd: give it a copy that it closes.
    const int listing = ::openat(from, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (listing < 0) fail(errno, context_ + ": open " + where);
    DIR* dir = ::fdopendir(listing);
    if (dir == nullptr) {
      const int err = errno;
      ::close(listing);
      fail(err, context_ + ": fdopendir " + where);
    }
    struct Closer {
      DIR* d;
      ~Closer() { ::closedir(d); }
    } closer{dir};
    while (true) {
      errno = 0;
      const dirent* e = ::readdir(dir);
      if (e == nullptr) {
        if (errno != 0) fail(errno, context_ + ": readdir " + where);
        return;
      }
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      copy_entry(from, to, dev, name, where.empty() ? name : where + "/" + name, depth);
    }
  }

 private:
  void copy_entry(int from, int to, dev_t dev, const std::string& name, const std::string& path,
                  int depth) {
    struct stat st;
    if (::fstatat(from, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      fail(errno, context_ + ": fstatat " + path);
    const mode_t mode = st.st_mode & 0777;  // never set-id or sticky
    if (S_ISDIR(st.st_mode)) {
      if (st.st_dev != dev) return;  // a filesystem mounted inside: not part of the workspace
      if (::mkdirat(to, name.c_str(), 0700) != 0) fail(errno, context_ + ": mkdirat " + path);
      const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
      UniqueFd sub_from(::openat(from, name.c_str(), flags));
      if (!sub_from) fail(errno, context_ + ": open " + path);
      UniqueFd sub_to(::openat(to, name.c_str(), flags));
      if (!sub_to) fail(errno, context_ + ": open the copy of " + path);
      copy_dir(sub_from.get(), sub_to.get(), dev, path, depth + 1);
      finish(sub_to.get(), mode | 0700, path);  // the owner keeps its way in
    } else if (S_ISREG(st.st_mode)) {
      // O_NONBLOCK: had it been swapped for a FIFO since fstatat, open must not wait.
      UniqueFd in(::openat(from, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
      if (!in) fail(errno, context_ + ": open " + path);
      struct stat opened;
      if (::fstat(in.get(), &opened) != 0) fail(errno, context_ + ": fstat " + path);
      if (!S_ISREG(opened.st_mode)) return;  // replaced meanwhile: leave it out
      UniqueFd out(
          ::openat(to, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!out) fail(errno, context_ + ": create the copy of " + path);
      copy_bytes(in.get(), out.get(), path);
      finish(out.get(), mode, path);
    } else if (S_ISLNK(st.st_mode)) {
      std::string target(PATH_MAX, '\0');
      const ssize_t n = ::readlinkat(from, name.c_str(), target.data(), target.size());
      if (n < 0) fail(errno, context_ + ": readlinkat " + path);
      target.resize(static_cast<size_t>(n));
      if (::symlinkat(target.c_str(), to, name.c_str()) != 0)
        fail(errno, context_ + ": symlinkat " + path);
      if (uid_ != static_cast<uid_t>(-1) &&
          ::fchownat(to, name.c_str(), uid_, gid_, AT_SYMLINK_NOFOLLOW) != 0)
        fail(errno, context_ + ": fchownat " + path);
    }
    // FIFOs, sockets and devices are not copied.
  }

  void copy_bytes(int in, int out, const std::string& path) {
    for (;;) {
      const ssize_t n = ::copy_file_range(in, nullptr, out, nullptr, 1 << 30, 0);
      if (n == 0) return;
      if (n > 0) continue;
      if (errno == EINTR) continue;
      if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        fail(errno, context_ + ": copy " + path);
      break;  // a kernel or filesystem without it: read and write
    }
    char buffer[65536];
    for (;;) {
      const ssize_t n = ::read(in, buffer, sizeof buffer);
      if (n == 0) return;
      if (n < 0) {
        if (errno == EINTR) continue;
        fail(errno, context_ + ": read " + path);
      }
      for (ssize_t done = 0; done < n;) {
        const ssize_t w = ::write(out, buffer + done, static_cast<size_t>(n - done));
        if (w < 0) {
          if (errno == EINTR) continue;
          fail(errno, context_ + ": write the copy of " + path);
        }
        done += w;
      }
    }
  }

  void finish(int fd, mode_t mode, const std::string& path) {
    if (uid_ != static_cast<uid_t>(-1) && ::fchown(fd, uid_, gid_) != 0)
      fail(errno, context_ + ": fchown the copy of " + path);
    if (::fchmod(fd, mode) != 0) fail(errno, context_ + ": fchmod the copy of " + path);
  }

  uid_t uid_;
  gid_t gid_;
  std::string context_;
};

}  // namespace

void copy_directory_tree(int from_fd, int to_fd, uid_t uid, gid_t gid, const std::string& context) {
  UniqueFd from(::openat(from_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!from) fail(errno, context + ": open the source");
  UniqueFd to(::openat(to_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!to) fail(errno, context + ": open the destination");
  struct stat st;
  if (::fstat(from.get(), &st) != 0) fail(errno, context + ": fstat the source");
  TreeCopier(uid, gid, context).copy_dir(from.get(), to.get(), st.st_dev, "", 0);
}

}  // namespace cutor::sandbox
