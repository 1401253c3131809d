// Internal to src/sandbox: boxes made ahead of their stage (BoxPool), and the thread that
// finishes boxes off after their stage (BoxReaper). Both keep work that needs no input
// from the stage (fork of init, cgroup mkdir, namespaces, ~30 mount syscalls; init's exit,
// the namespaces' teardown, cgroup rmdir) off the stage's critical path.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "sandbox/box.h"
#include "sandbox/cgroup.h"
#include "sandbox/fd.h"
#include "sandbox/net.h"

namespace cutor::sandbox {

// Waits for box inits to exit and then destroys their stage cgroups, one after another on
// its own thread (in the background: set_scheduling). Thread-safe.
class BoxReaper {
 public:
  BoxReaper();
  // Waits for everything adopted: when it returns, no adopted init, process or cgroup is
  // left.
  ~BoxReaper();
  BoxReaper(const BoxReaper&) = delete;
  BoxReaper& operator=(const BoxReaper&) = delete;

  // Takes over a box init of this process that has reported (its namespace is empty) or was
  // SIGKILLed: reaps it (`init` -1: reaped already), then destroys `cgroup` (killing what is
  // left in it, removing it) and returns the box's network namespace `net` (if it had a
  // lent one) to be checked and lent again. Never blocks.
  void adopt(pid_t init, std::unique_ptr<StageCgroup> cgroup, LentNetNamespace net = nullptr);

 private:
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  struct Adopted {
    pid_t init = -1;
    std::unique_ptr<StageCgroup> cgroup;
    LentNetNamespace net;
  };
  std::deque<Adopted> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

// A box ready for its stage (BoxPlan::command_fd): init is in `cgroup` (with the limits of
// the stage that took the box before it: most stages of a server share them),
// inside its namespaces, building or done building the filesystem, waiting for a command.
struct PreparedBox {
  pid_t pid = -1;
  UniqueFd pidfd;
  UniqueFd command;  // send_box_command here
  UniqueFd status;   // read end of the box's status pipe
  std::unique_ptr<StageCgroup> cgroup;
  LentNetNamespace net;         // the namespace init entered (null: init made its own)
  SandboxLimits cgroup_limits;  // what `cgroup` is set to (a guess for a pool's box)
  int64_t started_ns = 0;       // CLOCK_MONOTONIC just before init's fork
};

class Spawner;

// Starts a box that waits for its command (BoxPlan::command_fd), forked by `spawner` (null:
// by the calling thread, start_box), places it in `cgroup` (set to `cgroup_limits`) and lets
// it build the box, with
// `read_only` extra mounts and the prepared network namespace `net` (null: init makes its
// own; the box keeps it until the reaper returns it). Throws std::system_error / std::runtime_error
// with context; nothing is left running then. `background`: built in the background
// (BoxPlan::background).
PreparedBox start_prepared_box(Spawner* spawner, std::unique_ptr<StageCgroup> cgroup,
                               const SandboxLimits& cgroup_limits, int64_t tmp_bytes,
                               const std::vector<BindMount>& read_only, LentNetNamespace net,
                               bool background);

struct BoxPoolOptions {
  Spawner* spawner = nullptr;  // forks the inits (null: the pool's thread does)
  size_t size = 2;             // boxes kept ready while stages run
  int64_t idle_ms = 500;       // ready boxes are discarded this long after the last take
  std::string cgroup_parent;   // as SandboxOptions::cgroup_parent
  int64_t tmp_bytes = 0;       // size of each box's /tmp
  std::function<std::string()> next_cgroup_name;  // a fresh stage cgroup name per box
};

// Keeps up to `size` prepared boxes, made by a background thread (set_scheduling); the boxes
// are built in the background too, their inits forked by the spawner (without one by the
// thread, and PR_SET_PDEATHSIG ties them to it, which lives as long as the pool). A box is
// handed out once and never reused. The pool fills only while stages are being run: after
// `idle_ms` without a take the ready boxes are discarded, so an idle server holds no box,
// process, mount or cgroup. Thread-safe.
class BoxPool {
 public:
  BoxPool(BoxPoolOptions options, BoxReaper& reaper);
  // Discards the ready boxes (to the reaper) and stops the thread.
  ~BoxPool();
  BoxPool(const BoxPool&) = delete;
  BoxPool& operator=(const BoxPool&) = delete;

  // A ready box, or nothing when none is (the caller builds one on demand). Never blocks on
  // the making of a box. `limits` are the taking stage's: boxes made from now on get them in
  // their cgroups (the caller sets them when the box it got has others).
  std::optional<PreparedBox> take(const SandboxLimits& limits);

  // A stage has ended: make up for what was taken (called then rather than at the take, so
  // making a box does not compete with the stage's own start for a cpu).
  void refill();

 private:
  void loop();
  PreparedBox make_box();
  void discard(PreparedBox box);

  BoxPoolOptions options_;
  BoxReaper& reaper_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<PreparedBox> ready_;
  int64_t last_take_ns_ = 0;
  SandboxLimits expected_limits_;
  bool refill_wanted_ = false;
  bool stopping_ = false;
  // After a box could not be made (stages build their own meanwhile): no new try before
  // this CLOCK_MONOTONIC time. Each failure in a row doubles the wait, from 100 ms up to
  // 30 s; a box made resets it. A host that cannot prepare boxes costs one try per 30 s, and
  // one that failed once (a fork or a cgroup refused for a moment) gets its pool back.
  int64_t retry_after_ns_ = 0;
  int failures_in_a_row_ = 0;
  std::thread thread_;
};

}  // namespace cutor::sandbox
