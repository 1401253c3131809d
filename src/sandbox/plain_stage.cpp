#include "sandbox/plain_stage.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <utility>

#include "sandbox/box.h"
#include "sandbox/rlimits.h"

namespace cutor::sandbox {

namespace {

// Fixed fds in the reaper and, until exec, in the program's child.
constexpr int kStatusFd = 3;
constexpr int kControlFd = 4;

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

// Everything the children need, built before fork: after fork in a multi-threaded server
// only async-signal-safe calls are allowed, so no allocation happens there.
struct Prepared {
  std::vector<std::string> argv_storage;
  std::vector<std::string> env_storage;
  std::vector<char*> argv;
  std::vector<char*> envp;
  std::vector<std::string> candidates;  // paths to try with execve, in PATH order
  std::string workdir;
  std::string not_found;  // messages for the program's stderr, as a shell would print
  std::string denied;
  std::string cannot_execute;
  SandboxLimits limits;
};

std::string path_of_env(const std::vector<std::string>& env) {
  for (const std::string& entry : env) {
    if (entry.starts_with("PATH=")) return entry.substr(5);
  }
  return "/usr/local/bin:/usr/bin:/bin";  // what a shell uses when PATH is unset
}

Prepared prepare(const PlainPlan& plan) {
  Prepared p;
  p.argv_storage = plan.argv;
  p.env_storage = plan.env;
  for (std::string& a : p.argv_storage) p.argv.push_back(a.data());
  p.argv.push_back(nullptr);
  for (std::string& e : p.env_storage) p.envp.push_back(e.data());
  p.envp.push_back(nullptr);
  const std::string& name = plan.argv.front();
  if (name.find('/') != std::string::npos) {
    p.candidates.push_back(name);
  } else if (!name.empty()) {
    // Like execvpe(), but with the program's PATH, not the server's. An empty entry is the
    // working directory.
    std::string path = path_of_env(plan.env);
    size_t start = 0;
    while (start <= path.size()) {
      size_t colon = path.find(':', start);
      if (colon == std::string::npos) colon = path.size();
      std::string dir = path.substr(start, colon - start);
      p.candidates.push_back((dir.empty() ? std::string(".") : dir) + "/" + name);
      start = colon + 1;
    }
  }
  p.workdir = plan.workdir;
  p.not_found = "cutor: " + name + ": command not found\n";
  p.denied = "cutor: " + name + ": Permission denied\n";
  p.cannot_execute = "cutor: " + name + ": cannot execute, errno ";
  p.limits = plan.limits;
  return p;
}

// --- Async-signal-safe helpers for the forked children. ---

void write_text(int fd, const char* text, size_t len) {
  while (len > 0) {
    ssize_t n = ::write(fd, text, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text += n;
    len -= static_cast<size_t>(n);
  }
}

// Appends `text` to the message buffer, keeping it NUL-terminated.
void append(char* buf, size_t size, const char* text) {
  size_t used = std::strlen(buf);
  while (*text != '\0' && used + 1 < size) buf[used++] = *text++;
  buf[used] = '\0';
}

void append_number(char* buf, size_t size, long value) {
  char digits[24];
  int n = 0;
  unsigned long v =
      value < 0 ? static_cast<unsigned long>(-value) : static_cast<unsigned long>(value);
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && n < 22);
  char text[24];
  int t = 0;
  if (value < 0) text[t++] = '-';
  while (n > 0) text[t++] = digits[--n];
  text[t] = '\0';
  append(buf, size, text);
}

[[noreturn]] void report_setup_failure(const char* step, int err, int exit_code) {
  PlainReport report;
  report.setup_errno = err;
  append(report.message, sizeof report.message, "stage setup failed: ");
  append(report.message, sizeof report.message, step);
  append(report.message, sizeof report.message, ": errno ");
  append_number(report.message, sizeof report.message, err);
  write_text(kStatusFd, reinterpret_cast<const char*>(&report), sizeof report);
  ::_exit(exit_code);
}

void reset_signals() {
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);  // EINVAL ignored
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

// The program's side: runs in the reaper's child, ends in execve.
[[noreturn]] void program_main(const Prepared& p) {
  ::setpgid(0, 0);  // its own group, so the reaper can kill it and its jobs at once
  ::close(kControlFd);
  ::signal(SIGPIPE, SIG_DFL);
  const char* resource = nullptr;
  if (int err = apply_stage_rlimits(p.limits, &resource); err != 0) {
    report_setup_failure(resource, err, 126);
  }
  if (::chdir(p.workdir.c_str()) != 0) report_setup_failure("chdir to the workspace", errno, 126);
  // The server's scheduling but the kernel's default slice (box.h, Scheduling::kProgram).
  errno = 0;
  const int nice = ::getpriority(PRIO_PROCESS, 0);
  if (errno == 0) set_scheduling(0, Scheduling::kProgram, nice);

  bool denied = false;
  int last_errno = ENOENT;
  for (const std::string& candidate : p.candidates) {
    ::execve(candidate.c_str(), p.argv.data(), p.envp.data());
    last_errno = errno;
    if (errno == EACCES) {
      denied = true;
    } else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE && errno != ELOOP &&
               errno != ENAMETOOLONG && errno != ENODEV && errno != ETIMEDOUT) {
      break;
    }
  }
  // Like a shell: 127 when nothing was found, 126 when found but not runnable.
  if (last_errno == ENOENT && !denied) {
    write_text(2, p.not_found.data(), p.not_found.size());
    ::_exit(127);
  }
  if (denied) {
    write_text(2, p.denied.data(), p.denied.size());
    ::_exit(126);
  }
  char line[64] = {};
  append_number(line, sizeof line, last_errno);
  append(line, sizeof line, "\n");
  write_text(2, p.cannot_execute.data(), p.cannot_execute.size());
  write_text(2, line, std::strlen(line));
  ::_exit(126);
}

// SIGKILLs every direct child of the calling (single-threaded) process. They are ours and
// not yet reaped, so their pids cannot have been reused.
void kill_listed_children() {
  int fd = ::open("/proc/thread-self/children", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[4096];
  long pid = 0;
  bool in_number = false;
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] >= '0' && buf[i] <= '9') {
        pid = pid * 10 + (buf[i] - '0');
        in_number = true;
      } else if (in_number) {
        ::kill(static_cast<pid_t>(pid), SIGKILL);
        pid = 0;
        in_number = false;
      }
    }
  }
  if (in_number) ::kill(static_cast<pid_t>(pid), SIGKILL);
  ::close(fd);
}

// The reaper: the forked child of the supervisor. Never returns.
[[noreturn]] void reaper_main(const Prepared& p, int stdin_fd, int stdout_fd, int stderr_fd,
                              int status_fd, int control_fd) {
  reset_signals();
  ::signal(SIGPIPE, SIG_IGN);  // the host may be gone; the report write must not kill us
  // Move the fds out of the way first so the dup2s below cannot clobber each other.
  int in = ::fcntl(stdin_fd, F_DUPFD_CLOEXEC, 10);
  int out = ::fcntl(stdout_fd, F_DUPFD_CLOEXEC, 10);
  int err = ::fcntl(stderr_fd, F_DUPFD_CLOEXEC, 10);
  int status = ::fcntl(status_fd, F_DUPFD_CLOEXEC, 10);
  int control = ::fcntl(control_fd, F_DUPFD_CLOEXEC, 10);
  if (in < 0 || out < 0 || err < 0 || status < 0 || control < 0) ::_exit(125);
  if (::dup3(status, kStatusFd, O_CLOEXEC) < 0) ::_exit(125);
  if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) {
    report_setup_failure("dup2 of stdio", errno, 0);
  }
  if (::dup3(control, kControlFd, O_CLOEXEC) < 0) report_setup_failure("dup3 control", errno, 0);
  // Nothing of the server's may leak into the program (a leaked fd is a way out).
  if (::close_range(kControlFd + 1, ~0U, 0) != 0) report_setup_failure("close_range", errno, 0);
  if (::setsid() < 0) report_setup_failure("setsid", errno, 0);
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    report_setup_failure("prctl(PR_SET_CHILD_SUBREAPER)", errno, 0);
  }

  pid_t program = ::fork();
  if (program < 0) report_setup_failure("fork", errno, 0);
  if (program == 0) program_main(p);

  ::close(0);  // only the program holds the stdio pipes now: EOF comes when it is gone
  ::close(1);
  ::close(2);
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, program, 0));
  if (pidfd >= 0) {
    for (;;) {
      struct pollfd fds[2] = {{pidfd, POLLIN, 0}, {kControlFd, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (fds[1].revents != 0) {
        // The host closed the control pipe (a limit, a cancel, or the host died).
        ::kill(-program, SIGKILL);
        ::kill(program, SIGKILL);
        break;
      }
      if (fds[0].revents != 0) break;
    }
  } else {
    ::kill(-program, SIGKILL);  // cannot watch the control pipe: refuse to run unwatched
    ::kill(program, SIGKILL);
  }
  int wait_status = 0;
  while (::waitpid(program, &wait_status, __WALL) < 0 && errno == EINTR) {
  }
  // The stage ends with its main process: kill the group, then everything the subreaper
  // inherits (daemons that left the group included), until there is nothing left to reap.
  ::kill(-program, SIGKILL);
  for (;;) {
    kill_listed_children();
    bool reaped = false;
    pid_t got;
    while ((got = ::waitpid(-1, nullptr, __WALL | WNOHANG)) > 0) reaped = true;
    if (got < 0 && errno == ECHILD) break;
    if (!reaped) {
      got = ::waitpid(-1, nullptr, __WALL);
      if (got < 0 && errno == ECHILD) break;
    }
  }
  struct rusage usage;
  std::memset(&usage, 0, sizeof usage);
  ::getrusage(RUSAGE_CHILDREN, &usage);
  PlainReport report;
  report.wait_status = wait_status;
  report.cpu_time_us = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1'000'000ll +
                       usage.ru_utime.tv_usec + usage.ru_stime.tv_usec;
  report.max_rss_kib = usage.ru_maxrss;
  if (pidfd < 0) {
    report.setup_errno = ESRCH;
    append(report.message, sizeof report.message, "reaper: pidfd_open of the program failed");
  }
  write_text(kStatusFd, reinterpret_cast<const char*>(&report), sizeof report);
  ::_exit(0);
}

}  // namespace

StageChild start_plain_stage(const PlainPlan& plan, UniqueFd& control) {
  if (plan.argv.empty()) throw_errno(EINVAL, "start stage: empty argv");
  const Prepared prepared = prepare(plan);
  Pipe in = make_pipe("stdin");
  Pipe out = make_pipe("stdout");
  Pipe err = make_pipe("stderr");
  Pipe status = make_pipe("status");
  Pipe ctl = make_pipe("control");

  StageChild child;
  child.started_ns = monotonic_ns();
  pid_t pid = ::fork();
  if (pid < 0) throw_errno(errno, "fork of the stage reaper");
  if (pid == 0) {
    reaper_main(prepared, plan.stdin_fd >= 0 ? plan.stdin_fd : in.read.get(),
                plan.stdout_fd >= 0 ? plan.stdout_fd : out.write.get(), err.write.get(),
                status.write.get(), ctl.read.get());
  }
  child.pid = pid;
  control = std::move(ctl.write);
  if (plan.stdin_fd < 0) child.stdin_pipe = std::move(in.write);
  if (plan.stdout_fd < 0) child.stdout_pipe = std::move(out.read);
  child.stderr_pipe = std::move(err.read);
  child.status_pipe = std::move(status.read);
  // The child's ends close here (Pipe destructors), so EOF means the stage let go.
  child.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!child.pidfd) {
    int saved = errno;
    control.reset();  // the reaper kills the program and exits
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    throw_errno(saved, "pidfd_open of the stage reaper");
  }
  return child;
}

namespace {

// The whole of a small /proc file, or "" when the process is gone. Plain read(2): a /proc
// file of an exiting process fails with ESRCH mid-read, which iostreams turn into an
// exception.
std::string read_proc_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return {};
    if (n == 0) return text;
    text.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace

int64_t process_tree_cpu_time_us(pid_t root) {
  static const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  std::vector<pid_t> pending = {root};
  int64_t ticks = 0;
  bool root_seen = false;
  while (!pending.empty()) {
    pid_t pid = pending.back();
    pending.pop_back();
    const std::string base = "/proc/" + std::to_string(pid);
    const std::string stat = read_proc_file(base + "/stat");
    size_t close_paren = stat.rfind(')');  // comm may hold spaces and parentheses
    if (close_paren == std::string::npos || close_paren + 2 > stat.size()) continue;  // gone
    if (pid == root) root_seen = true;
    // After "pid (comm) ": state is field 3; utime, stime, cutime, cstime are 14 to 17.
    const char* cursor = stat.c_str() + close_paren + 2;
    for (int index = 3; index <= 17 && *cursor != '\0'; ++index) {
      char* end = nullptr;
      long long value = std::strtoll(cursor, &end, 10);
      if (index >= 14) ticks += value;
      cursor = std::strchr(cursor, ' ');
      if (cursor == nullptr) break;
      ++cursor;
    }
    DIR* tasks = ::opendir((base + "/task").c_str());
    if (tasks == nullptr) continue;
    while (struct dirent* task = ::readdir(tasks)) {
      if (task->d_name[0] == '.') continue;
      const std::string children = read_proc_file(base + "/task/" + task->d_name + "/children");
      const char* p = children.c_str();
      while (*p != '\0') {
        char* end = nullptr;
        long child = std::strtol(p, &end, 10);
        if (end == p) break;
        if (child > 0) pending.push_back(static_cast<pid_t>(child));
        p = end;
      }
    }
    ::closedir(tasks);
  }
  if (!root_seen || ticks_per_second <= 0) return -1;
  return ticks * 1'000'000 / ticks_per_second;
}

}  // namespace cutor::sandbox
