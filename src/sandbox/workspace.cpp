#include "sandbox/workspace.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>
#include <vector>

#include "sandbox/fd.h"

namespace cutor::sandbox {

namespace {

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

// A file's identity, to recognise a directory again after moving through "..".
using FileId = std::pair<dev_t, ino_t>;
FileId id_of(const struct stat& st) {
  return {st.st_dev, st.st_ino};
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

void write_all(int fd, std::string_view content, const std::string& what) {
  while (!content.empty()) {
    ssize_t n = ::write(fd, content.data(), content.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, what + ": write");
    }
    content.remove_prefix(static_cast<size_t>(n));
  }
}

class HostWorkspaceImpl : public HostWorkspace {
 public:
  HostWorkspaceImpl(std::string path, std::string name, UniqueFd parent_fd, UniqueFd dir_fd,
                    dev_t dev, bool tmpfs, const WorkspaceOptions& options)
      : path_(std::move(path)),
        name_(std::move(name)),
        parent_fd_(std::move(parent_fd)),
        dir_fd_(std::move(dir_fd)),
        dev_(dev),
        tmpfs_(tmpfs),
        options_(options) {}

  ~HostWorkspaceImpl() override {
    // Best effort: a destructor has nobody to report to. Nothing here follows a link.
    if (tmpfs_) {
      dir_fd_.reset();
      ::umount2(path_.c_str(), MNT_DETACH);
    } else {
      UniqueFd readable(::openat(dir_fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (readable) remove_directory_contents(readable.get());
      dir_fd_.reset();
    }
    ::unlinkat(parent_fd_.get(), name_.c_str(), AT_REMOVEDIR);
  }

  const std::string& path() const override { return path_; }
  int dirfd() const override { return dir_fd_.get(); }
  uid_t owner_uid() const override { return options_.owner_uid; }
  gid_t owner_gid() const override { return options_.owner_gid; }

  void copy_from(const Workspace& source) override {
    copy_directory_tree(source.dirfd(), dir_fd_.get(), options_.owner_uid, options_.owner_gid,
                        "workspace " + path_ + ": copy from " + source.path());
  }

  void write_file(std::string_view relative_path, std::string_view content,
                  bool executable) override {
    const std::string context = "workspace " + path_ + ": write_file " + std::string(relative_path);
    if (std::string why = check_relative_path(relative_path); !why.empty()) {
      throw_errno(EINVAL, context + ": " + why);
    }
    std::vector<std::string_view> parts = split_path(relative_path);
    const std::string leaf(parts.back());
    parts.pop_back();

    UniqueFd current;  // the directory reached so far; empty means the workspace root
    for (std::string_view part_view : parts) {
      const std::string part(part_view);
      const int at = current ? current.get() : dir_fd_.get();
      const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
      UniqueFd next(::openat(at, part.c_str(), flags));
      bool created = false;
      if (!next && errno == ENOENT) {
        if (::mkdirat(at, part.c_str(), 0755) != 0 && errno != EEXIST) {
          throw_errno(errno, context + ": mkdirat " + part);
        }
        created = true;
        next.reset(::openat(at, part.c_str(), flags));
      }
      if (!next) {
        // ENOTDIR or ELOOP: the component is a symlink, FIFO, device or file.
        throw_errno(errno, context + ": openat " + part + " (O_DIRECTORY|O_NOFOLLOW)");
      }
      struct stat st;
      if (::fstat(next.get(), &st) != 0) throw_errno(errno, context + ": fstat " + part);
      if (st.st_dev != dev_) throw_errno(EXDEV, context + ": " + part + " is another filesystem");
      if (created) {
        if (::fchmod(next.get(), 0755) != 0) throw_errno(errno, context + ": fchmod " + part);
        own(next.get(), context + ": fchown " + part);
      }
      current = std::move(next);
    }

    const int at = current ? current.get() : dir_fd_.get();
    const mode_t mode = executable ? 0755 : 0644;
    UniqueFd file(
        ::openat(at, leaf.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!file) throw_errno(errno, context + ": openat " + leaf + " (O_CREAT|O_EXCL|O_NOFOLLOW)");
    if (::fchmod(file.get(), mode) != 0) throw_errno(errno, context + ": fchmod");
    own(file.get(), context + ": fchown");
    write_all(file.get(), content, context);
  }

 private:
  void own(int fd, const std::string& what) const {
    if (options_.owner_uid == static_cast<uid_t>(-1) &&
        options_.owner_gid == static_cast<gid_t>(-1)) {
      return;
    }
    if (::fchown(fd, options_.owner_uid, options_.owner_gid) != 0) throw_errno(errno, what);
  }

  std::string path_;
  std::string name_;
  UniqueFd parent_fd_;  // O_PATH of the parent directory, to remove `name_` from
  UniqueFd dir_fd_;     // O_PATH of the workspace itself
  dev_t dev_;           // the workspace's filesystem; never leave it
  bool tmpfs_;
  WorkspaceOptions options_;
};

// Removes `name` in `parent_fd` whatever it is (a leftover of a crashed run).
void remove_leftover(int parent_fd, const std::string& name, const std::string& path,
                     dev_t parent_dev) {
  struct stat st;
  if (::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return;
    throw_errno(errno, "workspace " + path + ": fstatat");
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(parent_fd, name.c_str(), 0) != 0) {
      throw_errno(errno, "workspace " + path + ": unlinkat leftover");
    }
    return;
  }
  if (st.st_dev != parent_dev && ::umount2(path.c_str(), MNT_DETACH) != 0) {
    throw_errno(errno, "workspace " + path + ": umount2 leftover tmpfs");
  }
  UniqueFd dir(::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) throw_errno(errno, "workspace " + path + ": openat leftover");
  if (!remove_directory_contents(dir.get())) {
    throw_errno(ENOTEMPTY, "workspace " + path + ": could not empty leftover directory");
  }
  if (::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) != 0) {
    throw_errno(errno, "workspace " + path + ": rmdir leftover");
  }
}

// Mount points as /proc/self/mountinfo spells them (field 5, with \ooo escapes for space,
// tab, newline and backslash undone).
std::set<std::string> mount_points() {
  std::set<std::string> points;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    if (!(fields >> id >> parent >> dev >> root >> point)) continue;
    std::string plain;
    for (size_t i = 0; i < point.size(); ++i) {
      if (point[i] == '\\' && i + 3 < point.size()) {
        const std::string octal = point.substr(i + 1, 3);
        if (octal.find_first_not_of("01234567") == std::string::npos) {
          plain += static_cast<char>(std::stoi(octal, nullptr, 8));
          i += 3;
          continue;
        }
      }
      plain += point[i];
    }
    points.insert(plain);
  }
  return points;
}

// Removes the stale workspace `name` (a directory) in `parent_fd`, whose path is `path`.
void remove_stale_workspace(int parent_fd, const std::string& name, const std::string& path) {
  // A tmpfs may have been mounted more than once on the same directory; each umount2
  // takes the top one. Bounded: a mount that will not go is reported below.
  for (int round = 0; round < 8 && mount_points().count(path) != 0; ++round) {
    if (::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0)
      throw_errno(errno, "stale workspace " + path + ": umount2 MNT_DETACH");
  }
  UniqueFd dir(::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) throw_errno(errno, "stale workspace " + path + ": openat");
  if (!remove_directory_contents(dir.get()))
    throw_errno(ENOTEMPTY, "stale workspace " + path + ": could not empty it (a mount inside?)");
  dir.reset();
  if (::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) != 0)
    throw_errno(errno, "stale workspace " + path + ": rmdir");
}

}  // namespace

std::string check_relative_path(std::string_view path) {
  if (path.empty()) return "empty path";
  if (path.size() > 4095) return "path longer than 4095 bytes";
  if (path.front() == '/') return "absolute path";
  if (path.find('\0') != std::string_view::npos) return "NUL in path";
  if (path.find('\\') != std::string_view::npos) return "backslash in path";
  for (std::string_view part : split_path(path)) {
    if (part.empty()) return "empty path component";
    if (part == "." || part == "..") return "'.' or '..' component";
    if (part.size() > 255) return "path component longer than 255 bytes";
  }
  return {};
}

bool remove_directory_contents(int dir_fd) {
  struct stat root_st;
  if (::fstat(dir_fd, &root_st) != 0) return false;
  const dev_t root_dev = root_st.st_dev;

  UniqueFd current(::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!current) return false;
  FileId current_id = id_of(root_st);
  // Identities of the directories above `current`; going up through ".." is checked
  // against them, so only one directory fd is open at a time whatever the depth.
  std::vector<FileId> ancestors;
  // Directories that could not be emptied (mount points below, errors): not retried.
  std::set<FileId> stuck;

  for (;;) {
    UniqueFd listing_fd(::openat(current.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    DIR* listing = listing_fd ? ::fdopendir(listing_fd.get()) : nullptr;
    if (listing == nullptr) return false;
    listing_fd.release();  // owned by `listing` now

    bool clean = true;
    UniqueFd child;
    FileId child_id;
    while (struct dirent* entry = ::readdir(listing)) {
      const char* name = entry->d_name;
      if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
      struct stat st;
      if (::fstatat(current.get(), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT) clean = false;
        continue;
      }
      if (!S_ISDIR(st.st_mode)) {
        if (::unlinkat(current.get(), name, 0) != 0 && errno != ENOENT) clean = false;
        continue;
      }
      if (st.st_dev != root_dev || stuck.count(id_of(st)) != 0) {
        clean = false;  // a mount point (never cross it) or known to be stuck
        continue;
      }
      if (::unlinkat(current.get(), name, AT_REMOVEDIR) == 0) continue;
      if (errno != ENOTEMPTY && errno != EEXIST) {
        stuck.insert(id_of(st));
        clean = false;
        continue;
      }
      UniqueFd sub(::openat(current.get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      struct stat sub_st;
      if (!sub || ::fstat(sub.get(), &sub_st) != 0 || id_of(sub_st) != id_of(st)) {
        stuck.insert(id_of(st));
        clean = false;
        continue;
      }
      child = std::move(sub);
      child_id = id_of(sub_st);
      break;
    }
    ::closedir(listing);

    if (child) {
      ancestors.push_back(current_id);
      current = std::move(child);
      current_id = child_id;
      continue;
    }
    if (ancestors.empty()) return clean;
    if (!clean) stuck.insert(current_id);
    UniqueFd up(::openat(current.get(), "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    struct stat up_st;
    if (!up || ::fstat(up.get(), &up_st) != 0 || id_of(up_st) != ancestors.back()) {
      return false;  // the tree moved under us: stop rather than delete the wrong thing
    }
    ancestors.pop_back();
    current = std::move(up);
    current_id = id_of(up_st);
  }
}

std::unique_ptr<HostWorkspace> create_workspace(const std::string& parent_dir,
                                                const std::string& name,
                                                const WorkspaceOptions& options) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    throw_errno(EINVAL, "workspace name '" + name + "' is not one path component");
  }
  if (parent_dir.empty()) throw_errno(EINVAL, "workspace parent directory is empty");
  const std::string abs_parent = std::filesystem::absolute(parent_dir).lexically_normal();
  std::filesystem::create_directories(abs_parent);  // throws filesystem_error with the path
  std::string path = abs_parent;
  if (path.back() != '/') path += '/';
  path += name;

  UniqueFd parent_fd(::open(abs_parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd) throw_errno(errno, "workspace parent " + abs_parent + ": open");
  struct stat parent_st;
  if (::fstat(parent_fd.get(), &parent_st) != 0) {
    throw_errno(errno, "workspace parent " + abs_parent + ": fstat");
  }
  remove_leftover(parent_fd.get(), name, path, parent_st.st_dev);

  if (::mkdirat(parent_fd.get(), name.c_str(), 0711) != 0) {
    throw_errno(errno, "workspace " + path + ": mkdirat");
  }
  // From here on a failure removes the directory again.
  struct Cleanup {
    int parent;
    const std::string& name;
    const std::string& path;
    bool mounted = false;
    bool armed = true;
    ~Cleanup() {
      if (!armed) return;
      if (mounted) ::umount2(path.c_str(), MNT_DETACH);
      ::unlinkat(parent, name.c_str(), AT_REMOVEDIR);
    }
  } cleanup{parent_fd.get(), name, path};

  if (options.tmpfs_bytes > 0) {
    std::string data = "size=" + std::to_string(options.tmpfs_bytes) + ",mode=0711";
    if (options.owner_uid != static_cast<uid_t>(-1)) {
      data += ",uid=" + std::to_string(options.owner_uid);
    }
    if (options.owner_gid != static_cast<gid_t>(-1)) {
      data += ",gid=" + std::to_string(options.owner_gid);
    }
    if (::mount("tmpfs", path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, data.c_str()) != 0) {
      throw_errno(errno, "workspace " + path + ": mount tmpfs " + data);
    }
    cleanup.mounted = true;
  }

  UniqueFd dir_fd(
      ::openat(parent_fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir_fd) throw_errno(errno, "workspace " + path + ": openat");
  if (::fchmod(dir_fd.get(), 0711) != 0) throw_errno(errno, "workspace " + path + ": fchmod");
  if ((options.owner_uid != static_cast<uid_t>(-1) ||
       options.owner_gid != static_cast<gid_t>(-1)) &&
      ::fchown(dir_fd.get(), options.owner_uid, options.owner_gid) != 0) {
    throw_errno(errno, "workspace " + path + ": fchown");
  }
  struct stat dir_st;
  if (::fstat(dir_fd.get(), &dir_st) != 0) throw_errno(errno, "workspace " + path + ": fstat");
  // Keep an O_PATH fd as the public dirfd(): usable with *at() calls, grants no I/O.
  UniqueFd path_fd(::openat(dir_fd.get(), ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!path_fd) throw_errno(errno, "workspace " + path + ": openat O_PATH");

  cleanup.armed = false;
  return std::make_unique<HostWorkspaceImpl>(path, name, std::move(parent_fd), std::move(path_fd),
                                             dir_st.st_dev, options.tmpfs_bytes > 0, options);
}

int remove_stale_workspaces(const std::string& parent_dir) {
  if (parent_dir.empty()) throw_errno(EINVAL, "stale workspaces: parent directory is empty");
  std::error_code error;
  // Canonical, as /proc/self/mountinfo shows mount points (the parent is the server's own
  // directory, so resolving its links is safe).
  const std::string parent = std::filesystem::canonical(parent_dir, error).string();
  if (error == std::errc::no_such_file_or_directory) return 0;
  if (error) throw_errno(error.value(), "stale workspaces: canonical " + parent_dir);

  UniqueFd parent_fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd) throw_errno(errno, "stale workspaces: open " + parent);
  std::vector<std::string> names;
  {
    UniqueFd listing_fd(::openat(parent_fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    DIR* listing = listing_fd ? ::fdopendir(listing_fd.get()) : nullptr;
    if (listing == nullptr) throw_errno(errno, "stale workspaces: opendir " + parent);
    listing_fd.release();
    while (struct dirent* entry = ::readdir(listing)) {
      const std::string name = entry->d_name;
      if (name == "." || name == "..") continue;
      struct stat st;
      if (::fstatat(parent_fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (S_ISDIR(st.st_mode)) names.push_back(name);
    }
    ::closedir(listing);
  }

  int removed = 0;
  std::optional<std::system_error> first_error;
  for (const std::string& name : names) {
    try {
      remove_stale_workspace(parent_fd.get(), name, parent + "/" + name);
      ++removed;
    } catch (const std::system_error& e) {
      if (!first_error) first_error = e;
    }
  }
  if (first_error) throw *first_error;
  return removed;
}

}  // namespace cutor::sandbox
