// Internal to src/sandbox: the box spawner, a small single-threaded helper process that
// forks every box init.
//
// Forked once by make_sandbox while the server is still small and single-threaded, it
// forks box inits on request with clone(CLONE_PARENT | CLONE_NEWPID): each init is PID 1 of
// a fresh pid namespace, a fork of a small process (cheap page tables, for init and for
// the program init forks), never a fork of a multi-threaded process (a child of one may
// find the allocator locked by a thread that does not exist in it), and still a child of
// the server, so the supervisor waits for it, gets its rusage and pidfd as before.
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>

#include "sandbox/box.h"
#include "sandbox/fd.h"

namespace cutor::sandbox {

class Spawner {
 public:
  // Forks the spawner. It hides the server's command line, closes every fd but its
  // socket, and dies with the calling thread (PR_SET_PDEATHSIG), which must outlive the
  // Spawner (and the box inits: their parent-death signal is tied to it too). Throws
  // std::system_error naming the syscall.
  static std::unique_ptr<Spawner> start();
  // Closes the socket (the spawner exits at EOF) and reaps the spawner.
  ~Spawner();
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;

  // Has the spawner fork a box init for `plan`, which must be a prepared box's plan
  // (command_fd, sync_fd and status_fd set; read_only, tmp_bytes, net_ns_fd and background
  // are passed along; argv, env, stdio and the workspace come later with send_box_command). The
  // init is a child of this process. Returns its pid. Thread-safe. Throws
  // std::system_error (the spawner's errno for a failed clone, EPIPE when it is gone).
  pid_t spawn(const BoxPlan& plan);

  pid_t pid() const { return pid_; }

 private:
  Spawner(pid_t pid, UniqueFd socket, pid_t* born)
      : pid_(pid), socket_(std::move(socket)), born_(born) {}

  pid_t pid_;
  UniqueFd socket_;
  pid_t* born_;  // a MAP_SHARED page: the spawner's clone writes each init's pid here
  std::mutex mutex_;
};

}  // namespace cutor::sandbox
