#include "sandbox/uid_pool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <string>
#include <system_error>

namespace cutor::sandbox {
namespace {

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

// The numeric third field of every line of a passwd/group-style file.
void add_ids_of(const char* path, std::set<uid_t>& ids) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    size_t first = line.find(':');
    if (first == std::string::npos) continue;
    size_t second = line.find(':', first + 1);
    if (second == std::string::npos) continue;
    const std::string field = line.substr(second + 1, line.find(':', second + 1) - second - 1);
    if (field.empty() || field.find_first_not_of("0123456789") != std::string::npos) continue;
    ids.insert(static_cast<uid_t>(std::strtoul(field.c_str(), nullptr, 10)));
  }
}

// mkdir -p with `mode` for the directories created; an existing one is used as it is.
void make_dirs(const std::string& path, mode_t mode) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    const std::string prefix = path.substr(0, slash);
    if (::mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST)
      throw_errno(errno, "mkdir " + prefix);
    if (slash == std::string::npos) break;
  }
}

}  // namespace

UidPool& UidPool::host() {
  static UidPool pool("/run/cutor/uids", 60000, 1000);
  return pool;
}

UidPool::UidPool(std::string lock_dir, uid_t first, uid_t count)
    : lock_dir_(std::move(lock_dir)), first_(first), count_(count) {
  add_ids_of("/etc/passwd", taken_by_host_);
  add_ids_of("/etc/group", taken_by_host_);
}

std::unique_ptr<UidLease> UidPool::acquire() {
  std::lock_guard lock(mutex_);
  make_dirs(lock_dir_, 0700);
  UniqueFd dir(::open(lock_dir_.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) throw_errno(errno, "open uid lock directory " + lock_dir_);
  for (uid_t i = 0; i < count_; ++i) {
    const uid_t uid = first_ + (next_ + i) % count_;
    if (taken_by_host_.count(uid) != 0) continue;
    const std::string name = std::to_string(uid) + ".lock";
    UniqueFd file(
        ::openat(dir.get(), name.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!file) throw_errno(errno, "open " + lock_dir_ + "/" + name);
    // Held by another lease (in this process or another): try the next uid.
    if (::flock(file.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK || errno == EINTR) continue;
      throw_errno(errno, "flock " + lock_dir_ + "/" + name);
    }
    next_ = (uid - first_ + 1) % count_;
    return std::make_unique<UidLease>(uid, std::move(file));
  }
  throw_errno(EAGAIN, "all box uids " + std::to_string(first_) + ".." +
                          std::to_string(first_ + count_ - 1) + " are in use on this host (" +
                          lock_dir_ + ")");
}

}  // namespace cutor::sandbox
