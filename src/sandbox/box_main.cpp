// The box: two processes, each with one job.
//
//   init    (PID 1 of a fresh pid namespace, forked by the box spawner (spawner.h) with
//     CLONE_PARENT, so the server is its parent; or straight from the calling thread by
//     start_box) waits for the supervisor's go byte (it is in its stage cgroup by then),
//     enters fresh mount, net, ipc, uts and cgroup namespaces, names the host, builds the
//     filesystem but /box (it must mount /proc from inside the pid namespace), brings up
//     lo. A prepared box (BoxPlan::command_fd, made ahead by box_pool) then waits for its
//     command: argv, env, identity, limits, stdio and the workspace as a detached mount.
//     Init attaches the workspace at /box, writes /etc/passwd and /etc/group for the uid,
//     makes the root read-only and forks the program. Once the program has exited it kills
//     every other process of the namespace (kill(-1)) and reaps until none is left, and
//     only then writes exactly one BoxStatus: from that moment nothing of the user's runs,
//     so the supervisor ends the stage there and leaves init's exit, the namespaces'
//     teardown and the cgroup's removal to the reaper. It has no signal handlers, so
//     nothing inside the namespace can signal it, not even with kill(-1, SIGKILL). Killing
//     it (the supervisor at a limit, the OOM killer) kills the box;
//     PR_SET_PDEATHSIG(SIGKILL) does the same when the server thread it belongs to goes.
//   program
//     new session, stdio, rlimits, unprivileged identity, no capabilities,
//     no_new_privs, /box, seccomp last, execve. A setup failure before execve travels to
//     init on a close-on-exec pipe (EOF there means execve succeeded).
//
// No third "leader" process: every process handoff costs a wakeup, and on a busy host each
// wakeup may wait for a cpu.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <system_error>
#include <vector>

#include "sandbox/box.h"
#include "sandbox/mnt.h"
#include "sandbox/net.h"
#include "sandbox/seccomp.h"
#include "sandbox/user.h"

namespace cutor::sandbox {
namespace {

constexpr const char* kHostname = "cutor";
constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

// argv/envp as execve wants them, and the paths to try for argv[0]; built before the first
// fork so the later processes allocate almost nothing.
struct PreparedExec {
  std::vector<char*> argv;
  std::vector<char*> envp;
  std::vector<std::string> candidates;
};

PreparedExec prepare_exec(const BoxPlan& plan) {
  PreparedExec exec;
  for (const std::string& arg : plan.argv) exec.argv.push_back(const_cast<char*>(arg.c_str()));
  exec.argv.push_back(nullptr);
  for (const std::string& var : plan.env) exec.envp.push_back(const_cast<char*>(var.c_str()));
  exec.envp.push_back(nullptr);
  if (plan.argv.empty() || plan.argv[0].empty()) return exec;
  const std::string& command = plan.argv[0];
  if (command.find('/') != std::string::npos) {
    exec.candidates.push_back(command);
    return exec;
  }
  std::string path = kDefaultPath;
  for (const std::string& var : plan.env)
    if (var.rfind("PATH=", 0) == 0) path = var.substr(5);
  size_t start = 0;
  while (true) {
    size_t colon = path.find(':', start);
    std::string dir = path.substr(start, colon == std::string::npos ? colon : colon - start);
    exec.candidates.push_back((dir.empty() ? std::string(".") : dir) + "/" + command);
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return exec;
}

// One write of a fixed-size struct below PIPE_BUF: atomic on a pipe.
void write_status(int fd, const BoxStatus& status) {
  ssize_t n;
  do n = ::write(fd, &status, sizeof(status));
  while (n < 0 && errno == EINTR);
}

BoxStatus setup_failure(int err, const char* what) {
  BoxStatus status;
  status.setup_errno = err != 0 ? err : EIO;
  std::snprintf(status.message, sizeof(status.message), "%s (errno %d)", what, status.setup_errno);
  return status;
}

BoxStatus status_from_exception() {
  try {
    throw;
  } catch (const std::system_error& e) {
    return setup_failure(e.code().value(), e.what());
  } catch (const std::exception& e) {
    return setup_failure(EIO, e.what());
  }
}

[[noreturn]] void fail_with_errno(int status_fd, const char* what) {
  int err = errno;
  char text[200];
  std::snprintf(text, sizeof(text), "%s: %s", what, std::strerror(err));
  write_status(status_fd, setup_failure(err, text));
  ::_exit(1);
}

// The supervisor's dispositions and mask (a server may block or ignore signals in its
// threads) must not reach the box: a program starting with SIGPIPE ignored or SIGXCPU
// blocked behaves differently.
void reset_signals() {
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::signal(sig, SIG_DFL);  // EINVAL for the few reserved numbers: nothing to do
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

// Closes every fd from 3 up except `keep` (fds inherited from a multi-threaded server).
void close_fds_except(std::vector<int> keep) {
  keep.erase(std::remove_if(keep.begin(), keep.end(), [](int fd) { return fd < 3; }), keep.end());
  std::sort(keep.begin(), keep.end());
  unsigned first = 3;
  for (int fd : keep) {
    if (static_cast<unsigned>(fd) > first) ::close_range(first, fd - 1, 0);
    first = std::max(first, static_cast<unsigned>(fd) + 1);
  }
  ::close_range(first, ~0U, 0);
}

// fd `from` becomes `to` (0, 1 or 2); -1 means /dev/null.
void install_stdio(int from, int to, int open_flags) {
  if (from < 0) {
    from = ::open("/dev/null", open_flags | O_CLOEXEC);
    if (from < 0) throw std::system_error(errno, std::generic_category(), "open /dev/null");
  }
  if (::dup2(from, to) < 0)
    throw std::system_error(errno, std::generic_category(), "dup2 to fd " + std::to_string(to));
}

[[noreturn]] void run_program(const BoxPlan& plan, const PreparedExec& exec, int error_fd) {
  try {
    if (::setsid() < 0) throw std::system_error(errno, std::generic_category(), "setsid");
    // Copy the three sources above 2 first so that one dup2 cannot clobber another's source
    // (e.g. stdout_fd == 0). The copies are close-on-exec.
    int sources[3] = {plan.stdin_fd, plan.stdout_fd, plan.stderr_fd};
    for (int& fd : sources) {
      if (fd < 0) continue;
      fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
      if (fd < 0) throw std::system_error(errno, std::generic_category(), "fcntl F_DUPFD_CLOEXEC");
    }
    install_stdio(sources[0], 0, O_RDONLY);
    install_stdio(sources[1], 1, O_WRONLY);
    install_stdio(sources[2], 2, O_WRONLY);
    // Nothing but 0-2 survives execve (an inherited fd let programs forge verdicts in other
    // judges). Close-on-exec rather than close: error_fd is needed until then.
    if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
      throw std::system_error(errno, std::generic_category(), "close_range(3, ~0, CLOEXEC)");
    apply_rlimits(plan.limits);
    // Init's scheduling (stage work) but the default slice; refused: init's, harmless.
    errno = 0;
    const int nice = ::getpriority(PRIO_PROCESS, 0);
    if (errno == 0) set_scheduling(0, Scheduling::kProgram, nice);
    // Enter the workspace while still root: a previous stage may have run `chmod 000 /box`
    // (the box user owns it). The cwd stays after the drop, and the program then fails to
    // read its script like any program denied its own files, a verdict of its own making
    // rather than an internal error.
    if (::chdir(std::string(kBoxWorkdir).c_str()) != 0)
      throw std::system_error(errno, std::generic_category(), "chdir " + std::string(kBoxWorkdir));
    drop_identity(plan.uid, plan.gid, BoundingSet::kAlreadyEmpty);  // box_init_main
    if (plan.seccomp_program != nullptr)
      load_seccomp_program(*plan.seccomp_program);
    else
      install_seccomp_filter();
  } catch (...) {
    write_status(error_fd, status_from_exception());
    ::_exit(125);
  }

  // Past this point failures are the user's (a missing command), reported like a shell.
  int exec_errno = ENOENT;
  for (const std::string& candidate : exec.candidates) {
    ::execve(candidate.c_str(), exec.argv.data(), exec.envp.data());
    if (errno != ENOENT && errno != ENOTDIR) exec_errno = errno;
    if (errno != ENOENT && errno != ENOTDIR && errno != EACCES) break;
  }
  const char* command = plan.argv.empty() ? "" : plan.argv[0].c_str();
  char line[512];
  int len;
  if (exec_errno == ENOENT)
    len = std::snprintf(line, sizeof(line), "cutor: %s: not found\n", command);
  else
    len = std::snprintf(line, sizeof(line), "cutor: %s: %s\n", command, std::strerror(exec_errno));
  if (len > 0) (void)!::write(2, line, std::min<size_t>(len, sizeof(line) - 1));
  ::_exit(exec_errno == ENOENT ? 127 : 126);
}

// The program is started like posix_spawn does it: clone(CLONE_VM | CLONE_VFORK) on a
// stack of its own. Init is suspended until the program's execve (or _exit), and no page
// table is copied; everything the program does before execve is to its own task (ids,
// capabilities, seccomp, rlimits, fds: CLONE_FILES is not shared), and what it allocates
// stays in init's heap unused. Init allocates nothing after the program has started, so a
// program killed mid-allocation cannot leave init a locked heap.
class ProgramStack {
 public:
  ProgramStack() = default;
  ~ProgramStack() {
    if (base_ != nullptr) ::munmap(base_, kSize);
  }
  // Maps the stack; throws std::system_error.
  void allocate() {
    void* mapped = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (mapped == MAP_FAILED)
      throw std::system_error(errno, std::generic_category(), "mmap the program's stack");
    base_ = mapped;
  }
  ProgramStack(const ProgramStack&) = delete;
  ProgramStack& operator=(const ProgramStack&) = delete;
  void* top() const { return static_cast<char*>(base_) + kSize; }  // x86-64 stacks grow down

 private:
  static constexpr size_t kSize = 256 * 1024;
  void* base_ = nullptr;
};

#if defined(__SANITIZE_ADDRESS__)
// ASan knows one stack per thread: code running on a stack of our own makes it warn on
// stderr ("ignoring requested __asan_handle_no_return") and may give false reports. The
// sanitizer build forks the program instead (init is single-threaded: safe, only slower).
constexpr bool kSpawnWithFork = true;
#else
constexpr bool kSpawnWithFork = false;
#endif

struct ProgramStart {
  const BoxPlan* plan;
  const PreparedExec* exec;
  int error_read_fd;   // init's end, closed in the program
  int error_write_fd;  // close-on-exec: EOF for init once execve succeeded
};

int program_main(void* arg) {
  const ProgramStart& start = *static_cast<const ProgramStart*>(arg);
  ::close(start.error_read_fd);
  run_program(*start.plan, *start.exec, start.error_write_fd);
}

// Builds the box around `base` (for a prepared box: waits for its command first), then
// runs the program and reaps the namespace.
[[noreturn]] void run_init(const BoxPlan& base) {
  BoxPlan plan = base;  // a prepared box fills in the rest from its command
  ProgramStack program_stack;
  UniqueFd workspace_mount;
  PreparedExec exec;
  int error_pipe[2];
  pid_t program = -1;
  try {
    const bool prepared = base.command_fd >= 0;
    if (!prepared && base.workspace_mount_fd < 0) {
      // Tests hand over a host path: clone it here, while the host's tree is still in view.
      UniqueFd dir(::open(base.workspace_host_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      if (!dir)
        throw std::system_error(errno, std::generic_category(),
                                "open workspace " + base.workspace_host_path);
      workspace_mount = detach_workspace_mount(dir.get());
    }
    program_stack.allocate();
    build_box_base(base);
    if (base.net_ns_fd < 0) bring_up_loopback();  // a prepared namespace has lo up already
    if (prepared) {
      if (!receive_box_command(base.command_fd, plan, workspace_mount)) ::_exit(0);
      ::close(base.command_fd);
    } else if (!workspace_mount) {
      workspace_mount.reset(::fcntl(base.workspace_mount_fd, F_DUPFD_CLOEXEC, 3));
      if (!workspace_mount)
        throw std::system_error(errno, std::generic_category(), "dup the workspace mount");
      ::close(base.workspace_mount_fd);
    }
    if (plan.argv.empty() || plan.argv[0].empty())
      throw std::system_error(EINVAL, std::generic_category(), "empty argv");
    finish_box_filesystem(plan, workspace_mount.get());
    workspace_mount.reset();
    exec = prepare_exec(plan);
    if (::pipe2(error_pipe, O_CLOEXEC) != 0)
      throw std::system_error(errno, std::generic_category(), "pipe2 for the program's errors");
    ProgramStart start = {&plan, &exec, error_pipe[0], error_pipe[1]};
    if (kSpawnWithFork) {
      program = ::fork();
      if (program == 0) program_main(&start);
    } else {
      program =
          ::clone(program_main, program_stack.top(), CLONE_VM | CLONE_VFORK | SIGCHLD, &start);
    }
    if (program < 0) throw std::system_error(errno, std::generic_category(), "clone the program");
  } catch (...) {
    write_status(plan.status_fd, status_from_exception());
    ::_exit(1);
  }

  // Only the program (and what it starts) may hold the output pipes: the supervisor reads
  // them to EOF. (sync_fd was closed already; its number may be reused.)
  ::close(error_pipe[1]);
  for (int fd : {plan.stdin_fd, plan.stdout_fd, plan.stderr_fd})
    if (fd > 2) ::close(fd);

  BoxStatus setup_error;
  ssize_t got;
  do got = ::read(error_pipe[0], &setup_error, sizeof(setup_error));
  while (got < 0 && errno == EINTR);
  ::close(error_pipe[0]);

  // The reaper of the namespace: orphans are re-parented to us.
  int program_status = 0;
  while (true) {
    int status;
    pid_t pid = ::waitpid(-1, &status, __WALL);
    if (pid == program) {
      program_status = status;
      break;
    }
    if (pid < 0 && errno != EINTR) break;  // ECHILD: cannot happen before the program
  }
  // The stage ends with its program: kill everything else of the namespace (kill(-1)
  // spares only us) and reap until nothing is left, then report. After the report no
  // process of the user's exists anywhere, so the supervisor may end the stage at once and
  // leave our exit (and the kernel's namespace teardown) off its critical path. Killing
  // again after each reap catches what a dying fork bomb forked meanwhile.
  while (true) {
    ::kill(-1, SIGKILL);
    pid_t pid = ::waitpid(-1, nullptr, __WALL);
    if (pid < 0 && errno != EINTR) break;  // ECHILD: the namespace is empty
  }

  BoxStatus result = got == static_cast<ssize_t>(sizeof(setup_error)) ? setup_error : BoxStatus{};
  result.wait_status = program_status;
  struct rusage usage;
  if (::getrusage(RUSAGE_CHILDREN, &usage) == 0) {
    result.cpu_time_us = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000000ll +
                         usage.ru_utime.tv_usec + usage.ru_stime.tv_usec;
    result.max_rss_bytes = static_cast<int64_t>(usage.ru_maxrss) * 1024;
  }
  write_status(plan.status_fd, result);
  // What is left (our exit, the namespaces' teardown) is nobody's critical path.
  set_scheduling(0, Scheduling::kBackground, 0);
  ::_exit(0);
}

}  // namespace

// The box's init from its first instruction: single-threaded, PID 1.
[[noreturn]] void box_init_main(const BoxPlan& plan) {
  reset_signals();
  try {
    hide_server_command_line("cutor-box-init");
  } catch (...) {
    write_status(plan.status_fd, status_from_exception());
    ::_exit(1);
  }
  // Die with the supervisor thread that forked us (and the namespace with us).
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
    fail_with_errno(plan.status_fd, "prctl PR_SET_PDEATHSIG");
  close_fds_except({plan.stdin_fd, plan.stdout_fd, plan.stderr_fd, plan.sync_fd, plan.status_fd,
                    plan.net_ns_fd, plan.workspace_mount_fd, plan.command_fd,
                    box_template_namespace_fd()});

  // Wait until the supervisor has put us into the stage cgroup: everything forked from
  // here on is accounted for. EOF: the supervisor gave up (or died) before the go.
  char go;
  ssize_t n;
  do n = ::read(plan.sync_fd, &go, 1);
  while (n < 0 && errno == EINTR);
  if (n != 1) {
    if (n == 0) errno = EPIPE;
    fail_with_errno(plan.status_fd, "read the go byte from the supervisor");
  }
  ::close(plan.sync_fd);

  int fresh = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
  if (plan.net_ns_fd >= 0) {
    // From the supervisor's pool: new, or back from an earlier box exactly as new (net.h).
    if (::setns(plan.net_ns_fd, CLONE_NEWNET) != 0)
      fail_with_errno(plan.status_fd, "setns to the prepared network namespace");
    ::close(plan.net_ns_fd);
  } else {
    fresh |= CLONE_NEWNET;
  }
  try {
    enter_box_template(plan);  // then the unshare copies the template's mount namespace
  } catch (...) {
    write_status(plan.status_fd, status_from_exception());
    ::_exit(1);
  }
  if (::unshare(fresh) != 0)
    fail_with_errno(plan.status_fd, "unshare(mount, net, ipc, uts, cgroup namespaces)");
  if (::sethostname(kHostname, std::strlen(kHostname)) != 0)
    fail_with_errno(plan.status_fd, "sethostname");
  // The program inherits it empty (run_program); init keeps what it holds.
  try {
    drop_bounding_set();
  } catch (...) {
    write_status(plan.status_fd, status_from_exception());
    ::_exit(1);
  }
  run_init(plan);
}

namespace {

// The process's own pid namespace (every thread's active one), opened once, to return the
// calling thread to after a box's fork. Throws when it cannot be opened.
int own_pid_namespace() {
  struct Opened {
    int fd;
    int error;
  };
  static const Opened opened = [] {
    int fd = ::open("/proc/thread-self/ns/pid", O_RDONLY | O_CLOEXEC);
    return Opened{fd, fd < 0 ? errno : 0};
  }();
  if (opened.fd < 0)
    throw std::system_error(opened.error, std::generic_category(), "open /proc/thread-self/ns/pid");
  return opened.fd;
}

}  // namespace

// Init (or the spawner) is a fork of the server and would show the server's command line (data dir,
// listen address, token file) in the world-readable /proc/1/cmdline of the box. The kernel reads
// that file from the process's own memory between arg_start and arg_end, so init overwrites
// its copy (the server's memory is untouched: fork copies on write) with a fixed name and
// zeros, and zeroes the environment strings too (root-only through ptrace rules, but
// nothing of the server's should stay in reach). PR_SET_MM could move the range instead,
// but it needs CAP_SYS_RESOURCE, which hosts (this one) may withhold.
void hide_server_command_line(const char* name) {
  int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw std::system_error(errno, std::generic_category(),
                            "open /proc/self/stat (to hide the server's argv)");
  char stat[4096];
  ssize_t got;
  do got = ::read(fd, stat, sizeof(stat) - 1);
  while (got < 0 && errno == EINTR);
  ::close(fd);
  if (got <= 0)
    throw std::system_error(got < 0 ? errno : EIO, std::generic_category(),
                            "read /proc/self/stat (to hide the server's argv)");
  stat[got] = '\0';
  // After "pid (comm) ": field 3 on; arg_start..env_end are fields 48..51 (proc(5)).
  unsigned long long field_value[52] = {};
  const char* at = std::strrchr(stat, ')');
  int field = 3;
  for (at = at != nullptr ? at + 1 : stat + got; field <= 51 && *at != '\0'; ++field) {
    char* end = nullptr;
    field_value[field] = std::strtoull(at, &end, 10);
    if (end == at) {  // the state letter (field 3): skip the word
      while (*at == ' ') ++at;
      while (*at != ' ' && *at != '\0') ++at;
    } else {
      at = end;
    }
  }
  const unsigned long long arg_start = field_value[48], arg_end = field_value[49];
  const unsigned long long env_start = field_value[50], env_end = field_value[51];
  if (field <= 51 || arg_start == 0 || arg_end <= arg_start || env_end < env_start) {
    throw std::system_error(EPROTO, std::generic_category(),
                            "parse arg_start..env_end of /proc/self/stat");
  }
  char* args = reinterpret_cast<char*>(arg_start);
  const size_t arg_bytes = arg_end - arg_start;
  std::memset(args, 0, arg_bytes);
  std::memcpy(args, name, std::min(std::strlen(name), arg_bytes - 1));
  std::memset(reinterpret_cast<char*>(env_start), 0, env_end - env_start);
  ::prctl(PR_SET_NAME, name, 0, 0, 0);  // comm, for ps; cannot fail with a valid pointer
}

int set_scheduling(pid_t tid, Scheduling scheduling, int nice) {
  // struct sched_attr of the kernel's uapi (SCHED_ATTR_SIZE_VER0), which glibc 2.36 does
  // not declare and <linux/sched/types.h> cannot be included next to <sched.h>.
  struct {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
  } attr = {};
  static_assert(sizeof attr == 48);
  attr.size = sizeof attr;
  attr.sched_policy = SCHED_OTHER;
  const bool background = scheduling == Scheduling::kBackground;
  attr.sched_nice = background ? kBackgroundNice : nice;
  // For SCHED_OTHER, sched_runtime is the task's slice (0: the kernel's default).
  attr.sched_runtime = scheduling == Scheduling::kStageWork ? kStageWorkSliceNs : 0;
  if (::syscall(SYS_sched_setattr, tid, &attr, 0) == 0) return 0;
  const int err = errno;
  if (background && ::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), kBackgroundNice) == 0)
    return 0;
  return err;
}

pid_t start_box(const BoxPlan& plan) {
  const int own = own_pid_namespace();
  if (::unshare(CLONE_NEWPID) != 0)
    throw std::system_error(errno, std::generic_category(), "unshare(CLONE_NEWPID)");
  const pid_t init = ::fork();
  if (init == 0) box_init_main(plan);
  const int fork_errno = errno;
  // Init never sets its own scheduling before it has reported: a prepared box may be taken
  // before init has run at all, and the stage's switch to stage work must not be undone
  // by init's first instructions. So the forker sets it (the spawner forks at the right
  // one); refused: built at normal priority, only slower.
  if (init > 0 && plan.background) set_scheduling(init, Scheduling::kBackground, 0);
  // Before anything else: this thread's later children (other stages, other tools the
  // server runs from it) must be born in the server's own pid namespace.
  if (::setns(own, CLONE_NEWPID) != 0) {
    const int setns_errno = errno;
    if (init > 0) {
      ::kill(init, SIGKILL);
      while (::waitpid(init, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    throw std::system_error(setns_errno, std::generic_category(),
                            "setns back to the server's pid namespace");
  }
  if (init < 0) throw std::system_error(fork_errno, std::generic_category(), "fork box init");
  return init;
}

}  // namespace cutor::sandbox
