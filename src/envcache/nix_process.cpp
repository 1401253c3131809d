// One child process with limits and capture; see nix_process.h.
#include "envcache/nix_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>
#include <utility>

namespace cutor {
namespace {

using Clock = std::chrono::steady_clock;

// Owns a file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    reset(o.release());
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

std::system_error sys_error(const std::string& what) {
  return std::system_error(errno, std::generic_category(), what);
}

void make_pipe(UniqueFd& read_end, UniqueFd& write_end, const char* what) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw sys_error(std::string("pipe2 for ") + what);
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
}

// Only async-signal-safe calls from here to execve: the parent may have other threads.
[[noreturn]] void exec_child(const NixProcessSpec& spec, char* const* argv, char* const* envp,
                             int out_fd, int err_fd, int error_fd) {
  auto fail = [error_fd](int step) {
    int report[2] = {step, errno};
    ssize_t ignored = ::write(error_fd, report, sizeof report);
    (void)ignored;
    ::_exit(127);
  };
  ::setpgid(0, 0);  // its own group, so TERM/KILL reach whatever nix started in it
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s = 1; s < NSIG; ++s) ::signal(s, SIG_DFL);
  int null_fd = ::open("/dev/null", O_RDONLY);
  if (null_fd < 0 || ::dup2(null_fd, 0) < 0) fail(1);
  if (::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0) fail(2);
  auto limit = [&](int resource, int64_t value, int step) {
    if (value <= 0) return;
    rlimit rl{static_cast<rlim_t>(value), static_cast<rlim_t>(value)};
    if (::setrlimit(resource, &rl) != 0) fail(step);
  };
  limit(RLIMIT_AS, spec.memory_bytes, 3);
  limit(RLIMIT_FSIZE, spec.file_size_bytes, 4);
  if (spec.cpu_time_ms > 0) limit(RLIMIT_CPU, (spec.cpu_time_ms + 999) / 1000, 5);
  if (!spec.working_dir.empty() && ::chdir(spec.working_dir.c_str()) != 0) fail(6);
  // Close every inherited descriptor but 0-2 and the error pipe (close-on-exec already).
  ::syscall(SYS_close_range, 3u, static_cast<unsigned>(error_fd) - 1, 0u);
  ::syscall(SYS_close_range, static_cast<unsigned>(error_fd) + 1, ~0u, 0u);
  ::execve(argv[0], argv, envp);
  fail(7);
  ::_exit(127);
}

const char* child_step_name(int step) {
  switch (step) {
    case 1:
      return "open/dup2 /dev/null as stdin";
    case 2:
      return "dup2 stdout/stderr";
    case 3:
      return "setrlimit(RLIMIT_AS)";
    case 4:
      return "setrlimit(RLIMIT_FSIZE)";
    case 5:
      return "setrlimit(RLIMIT_CPU)";
    case 6:
      return "chdir";
    default:
      return "execve";
  }
}

// Appends what can be read from `fd` to `sink`, up to `cap` bytes kept. False at EOF.
bool drain(int fd, std::string& sink, int64_t cap, bool& truncated) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      int64_t room = cap - static_cast<int64_t>(sink.size());
      if (room >= n) {
        sink.append(buf, n);
      } else {
        if (room > 0) sink.append(buf, room);
        truncated = true;
      }
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return true;
    return false;
  }
}

}  // namespace

NixProcessResult run_nix_process(const NixProcessSpec& spec, std::stop_token cancel) {
  if (spec.argv.empty()) throw std::invalid_argument("run_nix_process: empty argv");
  std::vector<char*> argv, envp;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  UniqueFd out_r, out_w, err_r, err_w, fail_r, fail_w;
  make_pipe(out_r, out_w, "stdout");
  make_pipe(err_r, err_w, "stderr");
  make_pipe(fail_r, fail_w, "exec errors");

  const auto start = Clock::now();
  pid_t pid = ::fork();
  if (pid < 0) throw sys_error("fork for " + spec.argv[0]);
  if (pid == 0) exec_child(spec, argv.data(), envp.data(), out_w.get(), err_w.get(), fail_w.get());
  ::setpgid(pid, pid);  // also here, so killpg works even before the child ran
  out_w.reset();
  err_w.reset();
  fail_w.reset();

  int report[2] = {0, 0};
  ssize_t got;
  do {
    got = ::read(fail_r.get(), report, sizeof report);
  } while (got < 0 && errno == EINTR);
  if (got == sizeof report) {
    ::waitpid(pid, nullptr, 0);
    errno = report[1];
    throw sys_error(std::string(child_step_name(report[0])) + " for " + spec.argv[0]);
  }

  for (int fd : {out_r.get(), err_r.get()}) ::fcntl(fd, F_SETFL, O_NONBLOCK);
  NixProcessResult result;
  bool out_open = true, err_open = true, exited = false;
  std::optional<Clock::time_point> kill_at;
  std::optional<Clock::time_point> exited_at;
  // No wall limit: a deadline that never comes (a sentinel keeps GCC's -O3 flow analysis
  // from seeing an uninitialised optional).
  const Clock::time_point deadline = spec.wall_time_ms > 0
                                         ? start + std::chrono::milliseconds(spec.wall_time_ms)
                                         : Clock::time_point::max();
  auto stop = [&](bool timeout) {
    if (kill_at) return;
    (timeout ? result.timed_out : result.cancelled) = true;
    ::killpg(pid, SIGTERM);
    kill_at = Clock::now() + std::chrono::milliseconds(spec.kill_grace_ms);
  };

  while (!exited || out_open || err_open) {
    pollfd fds[2];
    nfds_t n = 0;
    if (out_open) fds[n++] = {out_r.get(), POLLIN, 0};
    if (err_open) fds[n++] = {err_r.get(), POLLIN, 0};
    if (n > 0) {
      if (::poll(fds, n, 20) < 0 && errno != EINTR) throw sys_error("poll on nix output");
    } else {
      ::usleep(5000);
    }
    if (out_open)
      out_open =
          drain(out_r.get(), result.stdout_data, spec.stdout_cap_bytes, result.stdout_truncated);
    if (err_open)
      err_open =
          drain(err_r.get(), result.stderr_data, spec.stderr_cap_bytes, result.stderr_truncated);
    const auto now = Clock::now();
    if (!exited) {
      siginfo_t info{};
      // WNOWAIT: keep the zombie so its pid (the group id) cannot be reused before killpg.
      if (::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) {
        exited = true;
        exited_at = now;
        ::killpg(pid, SIGKILL);  // whatever it left in its group
      }
    }
    if (!exited) {
      if (now >= deadline) stop(true);
      if (cancel.stop_requested()) stop(false);
      if (kill_at && now >= *kill_at) ::killpg(pid, SIGKILL);
    } else if (now - *exited_at > std::chrono::seconds(2)) {
      break;  // a descendant outside the group still holds a pipe: stop reading
    }
  }

  int status = 0;
  rusage usage{};
  while (::wait4(pid, &status, 0, &usage) < 0) {
    if (errno != EINTR) throw sys_error("wait4 for " + spec.argv[0]);
  }
  result.wall_time_us =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  result.cpu_time_us = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000000ll +
                       usage.ru_utime.tv_usec + usage.ru_stime.tv_usec;
  result.max_rss_bytes = usage.ru_maxrss * 1024ll;
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

}  // namespace cutor
