#include "sandbox/box_pool.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <limits>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

#include "sandbox/box.h"
#include "sandbox/seccomp.h"
#include "sandbox/spawner.h"
#include "sandbox/supervisor.h"

namespace cutor::sandbox {

// --- BoxReaper -------------------------------------------------------------------------

BoxReaper::BoxReaper() : thread_([this] { loop(); }) {}

BoxReaper::~BoxReaper() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void BoxReaper::adopt(pid_t init, std::unique_ptr<StageCgroup> cgroup, LentNetNamespace net) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back({init, std::move(cgroup), std::move(net)});
  }
  wake_.notify_one();
}

namespace {

// This thread only: no stage waits for what it does.
void lower_this_threads_priority() {
  set_scheduling(0, Scheduling::kBackground, 0);
}

}  // namespace

void BoxReaper::loop() {
  ::pthread_setname_np(::pthread_self(), "cutor-reaper");
  lower_this_threads_priority();
  for (;;) {
    Adopted item;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything adopted is done
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    if (item.init > 0) {
      // Init exits right after its report (or was killed); its exit includes the kernel's
      // teardown of the namespaces it was the last user of.
      while (::waitpid(item.init, nullptr, __WALL) < 0 && errno == EINTR) {
      }
    }
    item.cgroup.reset();  // kills what is left in the cgroup (nothing, normally), removes it
    // Init was the box's pid 1: with it reaped, no process of the box is left to hold a
    // socket of its network namespace.
    return_net_namespace(std::move(item.net));
  }
}

// --- BoxPool ---------------------------------------------------------------------------

BoxPool::BoxPool(BoxPoolOptions options, BoxReaper& reaper)
    : options_(std::move(options)), reaper_(reaper), thread_([this] { loop(); }) {}

BoxPool::~BoxPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();  // discards what is ready on its way out
}

std::optional<PreparedBox> BoxPool::take(const SandboxLimits& limits) {
  std::optional<PreparedBox> taken;
  std::vector<PreparedBox> dead;
  {
    std::lock_guard lock(mutex_);
    last_take_ns_ = monotonic_ns();
    expected_limits_ = limits;
    while (!ready_.empty()) {
      PreparedBox box = std::move(ready_.front());
      ready_.pop_front();
      // An init that failed to build its box has exited (its report says why): skip it.
      struct pollfd exited = {box.pidfd.get(), POLLIN, 0};
      if (::poll(&exited, 1, 0) == 0) {
        taken = std::move(box);
        break;
      }
      dead.push_back(std::move(box));
    }
    if (!taken) refill_wanted_ = true;  // warming up, or taken faster than made
  }
  for (PreparedBox& box : dead) discard(std::move(box));
  if (!taken) wake_.notify_one();
  return taken;
}

void BoxPool::refill() {
  {
    std::lock_guard lock(mutex_);
    refill_wanted_ = true;
  }
  wake_.notify_one();
}

void BoxPool::discard(PreparedBox box) {
  ::syscall(SYS_pidfd_send_signal, box.pidfd.get(), SIGKILL, nullptr, 0);
  reaper_.adopt(box.pid, std::move(box.cgroup), std::move(box.net));
}

void BoxPool::loop() {
  ::pthread_setname_np(::pthread_self(), "cutor-boxpool");
  lower_this_threads_priority();
  const int64_t idle_ns = options_.idle_ms * 1'000'000;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    const int64_t now = monotonic_ns();
    const bool active = last_take_ns_ > 0 && now - last_take_ns_ < idle_ns;
    if (!active && !ready_.empty()) {
      std::deque<PreparedBox> stale = std::move(ready_);
      ready_.clear();
      lock.unlock();
      for (PreparedBox& box : stale) discard(std::move(box));
      lock.lock();
      continue;
    }
    const bool wants_box = active && refill_wanted_ && ready_.size() < options_.size;
    if (wants_box && now >= retry_after_ns_) {
      lock.unlock();
      std::optional<PreparedBox> made;
      try {
        made = make_box();
      } catch (const std::exception&) {
        // The on-demand path reports the same failure, with its context, to the stage.
      }
      lock.lock();
      if (!made) {
        ++failures_in_a_row_;
        const int64_t wait_ms =
            std::min<int64_t>(30'000, 100ll << std::min(failures_in_a_row_ - 1, 9));
        retry_after_ns_ = monotonic_ns() + wait_ms * 1'000'000;
      } else {
        failures_in_a_row_ = 0;
        ready_.push_back(std::move(*made));
        if (ready_.size() >= options_.size) refill_wanted_ = false;
      }
      continue;
    }
    // Wake again when the ready boxes go stale, or when a failed box may be tried again.
    int64_t wake_ns = std::numeric_limits<int64_t>::max();
    if (!ready_.empty()) wake_ns = last_take_ns_ + idle_ns + 1'000'000;
    if (wants_box) wake_ns = std::min(wake_ns, retry_after_ns_);
    if (wake_ns == std::numeric_limits<int64_t>::max()) {
      wake_.wait(lock);
    } else {
      wake_.wait_for(lock, std::chrono::nanoseconds(std::max<int64_t>(wake_ns - now, 0)));
    }
  }
  std::deque<PreparedBox> left = std::move(ready_);
  ready_.clear();
  lock.unlock();
  for (PreparedBox& box : left) discard(std::move(box));
}

PreparedBox BoxPool::make_box() {
  SandboxLimits limits;
  {
    std::lock_guard lock(mutex_);
    limits = expected_limits_;
  }
  return start_prepared_box(
      options_.spawner,
      create_stage_cgroup(options_.cgroup_parent, options_.next_cgroup_name(), limits), limits,
      options_.tmp_bytes, {}, take_prepared_net_namespace(), /*background=*/true);
}

PreparedBox start_prepared_box(Spawner* spawner, std::unique_ptr<StageCgroup> cgroup,
                               const SandboxLimits& cgroup_limits, int64_t tmp_bytes,
                               const std::vector<BindMount>& read_only, LentNetNamespace net,
                               bool background) {
  PreparedBox box;
  box.cgroup = std::move(cgroup);
  box.cgroup_limits = cgroup_limits;
  Pipe status = make_pipe("status");
  // The go byte travels on a socket, not a pipe: send(MSG_NOSIGNAL) to an init that was
  // killed meanwhile is EPIPE, not a SIGPIPE for the whole process.
  int sync_pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sync_pair) != 0)
    throw std::system_error(errno, std::generic_category(), "socketpair for a box's go byte");
  Pipe sync = {UniqueFd(sync_pair[0]), UniqueFd(sync_pair[1])};
  int command[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, command) != 0)
    throw std::system_error(errno, std::generic_category(), "socketpair for a box's command");
  UniqueFd command_ours(command[0]), command_box(command[1]);

  BoxPlan plan;
  plan.tmp_bytes = tmp_bytes;
  plan.read_only = read_only;
  plan.net_ns_fd = net ? net_namespace_fd(*net) : -1;
  plan.background = background;
  plan.sync_fd = sync.read.get();
  plan.status_fd = status.write.get();
  plan.command_fd = command_box.get();
  plan.seccomp_program = &seccomp_filter_program();
  box.started_ns = monotonic_ns();
  // With a spawner, never a fork of this (multi-threaded) process: a spawner that is gone
  // and cannot be restarted fails the box.
  box.pid = spawner != nullptr ? spawner->spawn(plan) : start_box(plan);
  sync.read.reset();
  status.write.reset();
  command_box.reset();
  box.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, box.pid, 0)));
  std::string error;
  if (!box.pidfd) error = std::string("pidfd_open of the box: ") + std::strerror(errno);
  if (error.empty()) {
    try {
      box.cgroup->add_process(box.pid);
    } catch (const std::exception& e) {
      error = std::string("placing the box in its cgroup: ") + e.what();
    }
  }
  if (error.empty()) {
    // Until this byte the box only waits: everything it does from here on is accounted.
    char go = 'g';
    ssize_t n;
    do n = ::send(sync.write.get(), &go, 1, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n != 1) error = std::string("writing the box's go byte: ") + std::strerror(errno);
  }
  if (!error.empty()) {
    ::kill(box.pid, SIGKILL);
    while (::waitpid(box.pid, nullptr, __WALL) < 0 && errno == EINTR) {
    }
    throw std::runtime_error(error);
  }
  box.command = std::move(command_ours);
  box.status = std::move(status.read);
  box.net = std::move(net);
  return box;
}

}  // namespace cutor::sandbox
