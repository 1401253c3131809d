#include "sandbox/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <limits>

namespace cutor::sandbox {

int64_t monotonic_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kCpuCheckInterval = 10 * kMs;
// After the direct child exited everything is being killed; buffered output is read
// until EOF, but a writer we failed to kill must not hold the stage open.
constexpr int64_t kDrainLimit = 500 * kMs;
// The direct child must exit this long after kill_all(), or it is killed itself.
constexpr int64_t kKillGrace = 5000 * kMs;
constexpr size_t kChunk = 64 * 1024;

std::string errno_text(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err) + " (errno " + std::to_string(err) + ")";
}

void set_nonblocking(const UniqueFd& fd) {
  if (!fd) return;
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK);
}

// Keeps SIGPIPE from killing the server when the program closes its stdin: blocked in this
// thread while the loop runs (a write to a broken pipe raises it on the writing thread),
// then any pending one is consumed and the old mask restored.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_set_);
    sigaddset(&pipe_set_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set_, &old_mask_);
  }
  ~SigpipeBlock() {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set_, nullptr, &zero) == SIGPIPE) {
    }
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t pipe_set_;
  sigset_t old_mask_;
};

class Loop {
 public:
  Loop(StageChild& child, StageControl& control, const SandboxLimits& limits,
       std::string_view stdin_data, SupervisedRun& run)
      : child_(child), control_(control), limits_(limits), stdin_data_(stdin_data), run_(run) {}

  void run(std::stop_token cancel) {
    UniqueFd cancel_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!cancel_fd) fail(errno_text("eventfd", errno));
    const int cancel_raw = cancel_fd.get();
    auto signal_cancel = [cancel_raw] {
      uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(cancel_raw, &one, sizeof one);
    };
    std::stop_callback<decltype(signal_cancel)> on_cancel(cancel, signal_cancel);

    set_nonblocking(child_.stdin_pipe);
    set_nonblocking(child_.stdout_pipe);
    set_nonblocking(child_.stderr_pipe);
    set_nonblocking(child_.status_pipe);
    if (stdin_data_.empty()) child_.stdin_pipe.reset();

    const int64_t wall_deadline = limits_.wall_time_ms > 0
                                      ? child_.started_ns + limits_.wall_time_ms * kMs
                                      : std::numeric_limits<int64_t>::max();
    const int64_t first_cpu_check = monotonic_ns() + kCpuCheckInterval;
    try {
      loop_until_exit(wall_deadline, first_cpu_check, cancel_raw);
    } catch (const std::exception& e) {
      // Out of memory for the output, most likely: stop the stage, but always reap it.
      fail(std::string("supervisor: ") + e.what());
    }
    finish();
  }

 private:
  void loop_until_exit(int64_t wall_deadline, int64_t next_cpu_check, int cancel_raw) {
    bool exited = false;
    while (!exited) {
      int64_t now = monotonic_ns();
      int64_t wake = std::min(wall_deadline, next_cpu_check);
      if (killed_) wake = std::min(wake, kill_time_ + kKillGrace);
      int timeout_ms = static_cast<int>(std::clamp<int64_t>((wake - now + kMs - 1) / kMs, 0, 1000));

      struct pollfd fds[6];
      int n = 0;
      const int i_pid = n;
      fds[n++] = {child_.pidfd.get(), POLLIN, 0};
      const int i_cancel = n;
      fds[n++] = {cancel_raw, POLLIN, 0};
      const int i_out = n;
      fds[n++] = {child_.stdout_pipe.get(), POLLIN, 0};  // fd -1 is ignored by poll
      const int i_err = n;
      fds[n++] = {child_.stderr_pipe.get(), POLLIN, 0};
      const int i_status = n;
      fds[n++] = {child_.status_pipe.get(), POLLIN, 0};
      const int i_in = n;
      fds[n++] = {child_.stdin_pipe.get(), POLLOUT, 0};

      if (::poll(fds, static_cast<nfds_t>(n), timeout_ms) < 0) {
        if (errno == EINTR) continue;
        fail(errno_text("poll", errno));
        break;
      }
      if (fds[i_out].revents != 0) read_stream(child_.stdout_pipe, run_.stdout_data);
      if (fds[i_err].revents != 0) read_stream(child_.stderr_pipe, run_.stderr_data);
      if (fds[i_status].revents != 0) read_status();
      if (fds[i_in].revents != 0) write_stdin();
      if (fds[i_cancel].revents != 0) stop(StopReason::kCancelled);
      if (fds[i_pid].revents != 0) exited = true;
      if (!exited && !killed_ && reported_and_drained()) {
        ended_by_report_ = true;
        break;
      }

      now = monotonic_ns();
      if (now >= wall_deadline) stop(StopReason::kWallTime);
      if (now >= next_cpu_check) {
        check_cpu();
        next_cpu_check = now + kCpuCheckInterval;
      }
      if (killed_ && !exited && now >= kill_time_ + kKillGrace && !forced_) {
        // kill_all() did not end the stage; take down the direct child itself.
        forced_ = true;
        ::kill(child_.pid, SIGKILL);
        fail("the stage did not exit within 5 s of being killed");
      }
    }
  }

  bool reported_and_drained() const {
    return child_.final_status_bytes > 0 && run_.status_bytes.size() >= child_.final_status_bytes &&
           !child_.stdout_pipe && !child_.stderr_pipe;
  }

  void fail(std::string why) {
    if (run_.internal_error.empty()) run_.internal_error = std::move(why);
    if (!killed_) {
      killed_ = true;
      kill_time_ = monotonic_ns();
      kill_everything();
    }
  }

  void kill_everything() {
    try {
      control_.kill_all();
    } catch (const std::exception& e) {
      if (run_.internal_error.empty()) run_.internal_error = std::string("kill_all: ") + e.what();
    }
  }

  void stop(StopReason reason) {
    if (run_.stop == StopReason::kNone) run_.stop = reason;
    if (!killed_) {
      killed_ = true;
      kill_time_ = monotonic_ns();
      kill_everything();
    }
  }

  void check_cpu() {
    bool memory_hit = false;
    try {
      memory_hit = control_.memory_limit_hit();
    } catch (const std::exception&) {
      // As for cpu: retried next tick.
    }
    if (memory_hit) stop(StopReason::kMemory);
    int64_t cpu = -1;
    try {
      cpu = control_.cpu_time_us();
    } catch (const std::exception&) {
      // A measurement that failed once (a cgroup file mid-teardown) is retried next tick.
    }
    if (cpu < 0) return;
    // Never lower: a tree measured through /proc loses the processes that ended.
    run_.cpu_time_us = std::max(run_.cpu_time_us, cpu);
    cpu = run_.cpu_time_us;
    if (limits_.cpu_time_ms > 0 && cpu > limits_.cpu_time_ms * 1000) stop(StopReason::kCpuTime);
  }

  // Reads one chunk; returns false at EOF or error (the pipe is then closed).
  bool read_stream(UniqueFd& pipe, std::string& data) {
    if (!pipe) return false;
    char buf[kChunk];
    ssize_t got = ::read(pipe.get(), buf, sizeof buf);
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) return true;
      pipe.reset();
      return false;
    }
    if (got == 0) {
      pipe.reset();
      return false;
    }
    size_t keep = static_cast<size_t>(got);
    if (limits_.output_bytes > 0) {
      const size_t room = static_cast<size_t>(limits_.output_bytes) - data.size();
      if (keep > room) {
        keep = room;
        run_.truncated = true;
        stop(StopReason::kOutput);
      }
    }
    data.append(buf, keep);
    run_.output.append(buf, keep);
    return true;
  }

  bool read_status() {
    if (!child_.status_pipe) return false;
    char buf[1024];
    ssize_t got = ::read(child_.status_pipe.get(), buf, sizeof buf);
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) return true;
      child_.status_pipe.reset();
      return false;
    }
    if (got == 0) {
      child_.status_pipe.reset();
      return false;
    }
    // A report is a few hundred bytes; more than this is not from our child.
    if (run_.status_bytes.size() < 64 * 1024)
      run_.status_bytes.append(buf, static_cast<size_t>(got));
    return true;
  }

  void write_stdin() {
    if (!child_.stdin_pipe) return;
    const size_t len = std::min(kChunk, stdin_data_.size() - stdin_offset_);
    ssize_t put = ::write(child_.stdin_pipe.get(), stdin_data_.data() + stdin_offset_, len);
    if (put < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      child_.stdin_pipe.reset();  // EPIPE: the program closed stdin or exited; fine
      return;
    }
    stdin_offset_ += static_cast<size_t>(put);
    if (stdin_offset_ == stdin_data_.size()) child_.stdin_pipe.reset();  // EOF for the program
  }

  void finish() {
    if (ended_by_report_) {
      // Every process of the stage but the direct child is gone (final_status_bytes); the
      // caller reaps the child.
      run_.child_reaped = false;
      run_.wall_time_us = (monotonic_ns() - child_.started_ns) / 1000;
      child_.stdin_pipe.reset();
      child_.status_pipe.reset();
      return;  // no last check_cpu: the caller reads its final figures itself
    }
    kill_everything();  // the stage ends with its main process: nothing may outlive it
    int status = 0;
    struct rusage usage = {};
    for (;;) {
      pid_t got = ::wait4(child_.pid, &status, 0, &usage);
      if (got == child_.pid) break;
      if (got < 0 && errno == EINTR) continue;
      fail(errno_text("wait4", errno));
      break;
    }
    const int64_t reaped = monotonic_ns();
    run_.child_wait_status = status;
    run_.child_usage = usage;
    run_.wall_time_us = (reaped - child_.started_ns) / 1000;
    child_.stdin_pipe.reset();
    child_.pidfd.reset();

    // Read what is buffered until every writer is gone, within a bound.
    const int64_t drain_deadline = reaped + kDrainLimit;
    while (child_.stdout_pipe || child_.stderr_pipe || child_.status_pipe) {
      int64_t now = monotonic_ns();
      if (now >= drain_deadline) break;
      struct pollfd fds[3] = {{child_.stdout_pipe.get(), POLLIN, 0},
                              {child_.stderr_pipe.get(), POLLIN, 0},
                              {child_.status_pipe.get(), POLLIN, 0}};
      int timeout_ms = static_cast<int>((drain_deadline - now + kMs - 1) / kMs);
      if (::poll(fds, 3, timeout_ms) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (fds[0].revents != 0) read_stream(child_.stdout_pipe, run_.stdout_data);
      if (fds[1].revents != 0) read_stream(child_.stderr_pipe, run_.stderr_data);
      if (fds[2].revents != 0) read_status();
    }
    child_.stdout_pipe.reset();
    child_.stderr_pipe.reset();
    child_.status_pipe.reset();
    check_cpu();
  }

  StageChild& child_;
  StageControl& control_;
  const SandboxLimits& limits_;
  std::string_view stdin_data_;
  SupervisedRun& run_;
  size_t stdin_offset_ = 0;
  bool killed_ = false;
  bool forced_ = false;
  bool ended_by_report_ = false;
  int64_t kill_time_ = 0;
};

}  // namespace

SupervisedRun supervise(StageChild& child, StageControl& control, const SandboxLimits& limits,
                        std::string_view stdin_data, std::stop_token cancel) {
  SupervisedRun run;
  SigpipeBlock block_sigpipe;
  Loop loop(child, control, limits, stdin_data, run);
  loop.run(std::move(cancel));
  return run;
}

}  // namespace cutor::sandbox
