// One server per data directory: `serve` holds <data>/cutor.lock exclusively for its whole
// life, so a second `serve`, or a `cutor deps` that writes, on the same directory refuses
// instead of re-queueing the first server's running submissions and deleting its live
// workspaces. `cutor run --data` takes no lock: the environment cache is safe to share
// between processes (a lock per key). The holder's pid is written into the file for the refusal's
// message.
#pragma once

#include <string>

#include "sandbox/fd.h"

namespace cutor {

class DataDirLock {
 public:
  // Locks `data_dir` (created if missing) exclusively, without waiting. Throws std::runtime_error
  // saying who holds it (pid) and what to do when another process does, and naming the
  // file and errno on any other failure. `who` names the caller in the message ("serve", "deps
  // gc").
  static DataDirLock acquire(const std::string& data_dir, const std::string& who);

 private:
  explicit DataDirLock(sandbox::UniqueFd fd) : fd_(std::move(fd)) {}
  sandbox::UniqueFd fd_;  // the flock lasts as long as this fd
};

}  // namespace cutor
