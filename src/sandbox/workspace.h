// Internal to src/sandbox: the host side of a submission's workspace directory.
//
// Everything here works through directory fds with O_NOFOLLOW, never through paths inside
// the workspace: the untrusted program may have planted symlinks, FIFOs or devices (as in
// Judge0's CVE-2024-28185/28189), and the host must not be tricked into writing, chowning
// or deleting anything outside.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "sandbox/sandbox.h"

namespace cutor::sandbox {

struct WorkspaceOptions {
  // > 0: a tmpfs of this many bytes is mounted on the directory (needs CAP_SYS_ADMIN);
  // it is detached and removed with the workspace. 0: a plain directory.
  int64_t tmpfs_bytes = 0;
  // Owner given to the directory and to every file and directory write_file creates, so
  // the box's unprivileged uid can write its workspace. -1: keep the creator's.
  uid_t owner_uid = static_cast<uid_t>(-1);
  gid_t owner_gid = static_cast<gid_t>(-1);
};

class HostWorkspace : public Workspace {
 public:
  // The owner given to its files, or -1.
  virtual uid_t owner_uid() const = 0;
  virtual gid_t owner_gid() const = 0;
};

// Creates `parent_dir/name` with mode 0711 (`parent_dir` is created when missing; `name`
// must be one path component). A leftover directory of that name (a crash during an
// earlier run of the same submission) is removed first. Throws std::system_error naming
// the path and the syscall on failure.
std::unique_ptr<HostWorkspace> create_workspace(const std::string& parent_dir,
                                                const std::string& name,
                                                const WorkspaceOptions& options);

// Recovery after a crash (kill -9 of the server): removes every workspace directory left
// in `parent_dir`. A tmpfs on one is detached first (umount2 MNT_DETACH|UMOUNT_NOFOLLOW),
// only when /proc/self/mountinfo lists a mount exactly at that path; then the tree is
// removed without following links and the directory itself. Entries that are not
// directories (a symlink included) are left alone: workspaces are directories, and
// nothing outside `parent_dir` is ever touched. A missing `parent_dir` is fine. Must not
// run while workspaces in `parent_dir` are in use. Returns how many were removed; after
// trying them all, throws std::system_error naming the first one that could not be.
int remove_stale_workspaces(const std::string& parent_dir);

// Removes everything inside the directory `dir_fd` without following symlinks and without
// crossing into other filesystems (mount points are left, as are their parents). Works at
// any depth with a bounded number of open fds. Returns false if something was left behind.
bool remove_directory_contents(int dir_fd);

// Copies the tree of directory `from_fd` (any fd of it) into the empty directory `to_fd`
// as Workspace::copy_from says, giving what it creates to `uid`/`gid` (-1: keep). At most
// kMaxCopyDepth levels deep. Throws std::system_error naming `context` and the entry.
inline constexpr int kMaxCopyDepth = 128;
void copy_directory_tree(int from_fd, int to_fd, uid_t uid, gid_t gid, const std::string& context);

// Checks `relative_path` like a submission file name: relative, no empty, "." or ".."
// component, no NUL or backslash, components at most 255 bytes, at most 4095 in all.
// Returns an empty string when valid, otherwise why not.
std::string check_relative_path(std::string_view relative_path);

}  // namespace cutor::sandbox
