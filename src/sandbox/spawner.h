// Internal to src/sandbox: the box spawner, a small single-threaded helper process that
// forks every box init.
//
// Forked once by make_sandbox while the server is still small and single-threaded, it
// forks box inits on request with clone(CLONE_PARENT | CLONE_NEWPID): each init is PID 1 of
// a fresh pid namespace, a fork of a small process (cheap page tables, for init and for
// the program init forks), never a fork of a multi-threaded process (a child of one may
// find the allocator locked by a thread that does not exist in it), and still a child of
// the server, so the supervisor waits for it, gets its rusage and pidfd as before.
//
// If the spawner dies (killed by someone), the next spawn restarts it: never by forking the
// multi-threaded server, but by executing `restart_exe` (cutor itself, which runs
// box_spawner_main of sandbox.h) from a keeper thread of its own. If that fails,
// spawns fail (the stage is an internal error) until a later restart succeeds: boxes are
// never forked another way.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "sandbox/box.h"
#include "sandbox/fd.h"

namespace cutor::sandbox {

struct SpawnerHealth {
  bool ok = true;        // false: the spawner is gone and could not be restarted
  int64_t restarts = 0;  // successful restarts since start
  std::string problem;   // why the last restart failed (empty when ok)
};

class Spawner {
 public:
  // Forks the spawner. It hides the server's command line, closes every fd but its
  // socket, and dies with the calling thread (PR_SET_PDEATHSIG), which must outlive the
  // Spawner (and the box inits: their parent-death signal is tied to it too).
  // `restart_exe`: what a restart executes (empty: a dead spawner is not restarted).
  // Throws std::system_error naming the syscall.
  static std::unique_ptr<Spawner> start(std::string restart_exe = "");
  // Closes the socket (the spawner exits at EOF) and reaps the spawner.
  ~Spawner();
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;

  // Has the spawner fork a box init for `plan`, which must be a prepared box's plan
  // (command_fd, sync_fd and status_fd set; read_only, tmp_bytes, net_ns_fd and background
  // are passed along; argv, env, stdio and the workspace come later with send_box_command). The
  // init is a child of this process. Returns its pid. A spawner found dead is restarted
  // once per call. Thread-safe. Throws std::system_error (the spawner's errno for a failed
  // clone, EPIPE when it is gone and could not be restarted).
  pid_t spawn(const BoxPlan& plan);

  pid_t pid() const;
  SpawnerHealth health() const;

 private:
  Spawner(pid_t pid, UniqueFd socket, UniqueFd born_memfd, pid_t* born, std::string restart_exe);
  // With mutex_ held: reaps the dead spawner and has the keeper thread execute a new one.
  void restart_locked();
  void keeper_loop();
  void set_health(bool ok, const std::string& problem);

  pid_t pid_;
  UniqueFd socket_;
  UniqueFd born_memfd_;  // the page below, shared with a restarted spawner too
  pid_t* born_;          // a MAP_SHARED page: the spawner's clone writes each init's pid here
  const std::string restart_exe_;
  mutable std::mutex mutex_;         // one request at a time; guards pid_ and socket_
  mutable std::mutex health_mutex_;  // apart: a health check never waits for a restart
  SpawnerHealth health_;

  // The keeper thread executes restarted spawners, so their parent-death signal (and that of
  // the inits they make) is tied to a thread that lives as long as the Spawner.
  std::mutex keeper_mutex_;
  std::condition_variable keeper_wake_;
  bool keeper_request_ = false;  // a restart is wanted; cleared with the result set
  bool keeper_stop_ = false;
  int keeper_error_ = 0;  // errno of the last restart (0: started)
  pid_t keeper_pid_ = -1;
  UniqueFd keeper_socket_;
  std::thread keeper_;
};

}  // namespace cutor::sandbox
