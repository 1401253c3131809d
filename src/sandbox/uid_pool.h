// Internal to src/sandbox: unprivileged uids for boxes, exclusive across every process on
// the host.
//
// RLIMIT_NPROC and the kernel's view of "who may signal whom" are per uid host-wide, so two
// servers (or `cutor run` beside a server) must never run boxes as the same uid at once. A
// uid is held through an flock(LOCK_EX) on <lock_dir>/<uid>.lock for as long as its lease
// lives; the kernel drops the lock when the holder dies, so a crashed server leaks nothing.
// The lock files themselves are left in place (removing one would race with a new locker).
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "sandbox/fd.h"

namespace cutor::sandbox {

// One held uid (gid = uid); released when destroyed.
class UidLease {
 public:
  UidLease(uid_t uid, UniqueFd lock) : uid_(uid), lock_(std::move(lock)) {}
  uid_t uid() const { return uid_; }

 private:
  uid_t uid_;
  UniqueFd lock_;  // flock(LOCK_EX) held; closing the fd releases it
};

class UidPool {
 public:
  // The host's pool: /run/cutor/uids, uids 60000..60999 (the range the service documents;
  // host guards and operators look for box processes and files there).
  static UidPool& host();

  // A pool of `count` uids from `first`, locked in `lock_dir` (created 0700 if missing).
  // Uids or gids the host's /etc/passwd or /etc/group names are never handed out.
  UidPool(std::string lock_dir, uid_t first, uid_t count);

  // A uid no other lease (of any pool on the same lock_dir, in any process) holds. Throws
  // std::system_error: EAGAIN when all are held, or naming the lock file that failed.
  std::unique_ptr<UidLease> acquire();

 private:
  std::string lock_dir_;
  uid_t first_;
  uid_t count_;
  std::set<uid_t> taken_by_host_;  // ids of real users and groups: skipped
  std::mutex mutex_;
  uid_t next_ = 0;  // where the next search starts, to spread uids over the range
};

}  // namespace cutor::sandbox
