#include "sandbox/spawner.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "sandbox/fd_passing.h"
#include "sandbox/mnt.h"
#include "sandbox/seccomp.h"

namespace cutor::sandbox {
namespace {

constexpr uint32_t kMagic = 0x63737031;  // "csp1"
// sync, status, command, net namespace (-1 there: init unshares its own).
constexpr int kFdCount = 4;
constexpr uint64_t kMaxPayload = 64ull << 20;

struct SpawnRequest {
  uint32_t magic = kMagic;
  uint32_t fd_mask = 0;  // bit i: fd i was sent
  int64_t tmp_bytes = 0;
  int32_t background = 0;
  uint32_t read_only_count = 0;
  uint64_t payload_bytes = 0;  // read_only as host\0box\0 pairs
};

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

// One request: fills `plan` (fds owned by the caller afterwards). False at EOF or on a
// malformed request (the spawner then exits: its only peer is the server).
bool receive_request(int socket, BoxPlan& plan) {
  SpawnRequest request;
  int fds[kFdCount];
  size_t fd_count = 0;
  if (receive_with_fds(socket, &request, sizeof request, fds, kFdCount, &fd_count) != 0)
    return false;
  if (request.magic != kMagic || request.payload_bytes > kMaxPayload ||
      (request.fd_mask >> kFdCount) != 0 ||
      static_cast<size_t>(__builtin_popcount(request.fd_mask)) != fd_count) {
    for (size_t i = 0; i < fd_count; ++i) ::close(fds[i]);
    return false;
  }
  // The fds arrive in mask order, packed.
  int packed = 0;
  int slot[kFdCount] = {-1, -1, -1, -1};
  for (int i = 0; i < kFdCount; ++i)
    if ((request.fd_mask & (1u << i)) != 0) slot[i] = fds[packed++];
  std::string payload(request.payload_bytes, '\0');
  if (receive_all(socket, payload.data(), payload.size()) != 0) return false;
  std::vector<std::string> strings;
  for (size_t at = 0; at < payload.size();) {
    size_t end = payload.find('\0', at);
    if (end == std::string::npos) return false;
    strings.emplace_back(payload, at, end - at);
    at = end + 1;
  }
  if (strings.size() != 2ull * request.read_only_count) return false;
  plan = BoxPlan{};
  for (size_t i = 0; i < strings.size(); i += 2)
    plan.read_only.push_back({strings[i], strings[i + 1]});
  plan.tmp_bytes = request.tmp_bytes;
  plan.background = request.background != 0;
  plan.sync_fd = slot[0];
  plan.status_fd = slot[1];
  plan.command_fd = slot[2];
  plan.net_ns_fd = slot[3];
  plan.seccomp_program = &seccomp_filter_program();  // compiled before the spawner's fork
  return plan.sync_fd >= 0 && plan.status_fd >= 0 && plan.command_fd >= 0;
}

// `announce`: write a ready word on the socket once set up (a restarted spawner, whose
// server waits to know the restart worked).
[[noreturn]] void spawner_main(int socket, pid_t* born, bool announce) {
  // The server's mask (it takes SIGTERM/SIGINT with sigwait) is not ours. A ^C or a stop
  // of the whole process group must not take the spawner down before the server: it goes
  // with the server (PR_SET_PDEATHSIG) or when the Sandbox closes its socket. Each init
  // resets every disposition to the default first thing.
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) ::signal(sig, SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // 0-2 stay (the server's stdio, as for a box init forked by the server): closed, their
  // numbers would be reused for the fds inits receive.
  if (socket > 3) ::close_range(3, static_cast<unsigned>(socket) - 1, 0);
  ::close_range(static_cast<unsigned>(socket) + 1, ~0U, 0);
  try {
    hide_server_command_line("cutor-spawner");
  } catch (const std::system_error&) {
    // Only the host sees the spawner; each init hides its copy again, or fails to start.
  }
  // The parts of a box's filesystem every box shares, built once in a mount namespace of
  // the spawner's own (every init starts from a copy of it). Without them, inits build
  // their own.
  prepare_box_templates();
  // Forks for prepared boxes are background work (set_scheduling), so the fork does not
  // hold a cpu a stage wants, and the init is born there. Forks on demand, which a stage
  // waits for, are stage work at the server's own nice value.
  errno = 0;
  const int own_nice = ::getpriority(PRIO_PROCESS, 0);
  const int normal_nice = errno == 0 ? own_nice : 0;
  set_scheduling(0, Scheduling::kStageWork, normal_nice);  // refused: the server's, harmless
  bool in_background = false;
  if (announce && send_all(socket, &kMagic, sizeof kMagic) != 0) ::_exit(0);
  for (;;) {
    BoxPlan plan;
    if (!receive_request(socket, plan)) ::_exit(0);
    int scheduling_error = 0;
    if (plan.background != in_background) {
      scheduling_error = set_scheduling(
          0, plan.background ? Scheduling::kBackground : Scheduling::kStageWork, normal_nice);
      if (scheduling_error == 0) in_background = plan.background;
      if (plan.background) scheduling_error = 0;  // built at normal priority then: slower only
    }
    // A fork (no stack argument: the child runs on a copy of ours) into a new pid
    // namespace, as a sibling: the server is its parent. Never a box a stage waits for
    // born at background priority: that is refused with the errno. The kernel writes the
    // init's pid to `born` (shared with the server) before the clone returns, so the server
    // knows it even if we are killed before our reply.
    long pid = -1;
    errno = scheduling_error;
    if (scheduling_error == 0)
      pid = ::syscall(SYS_clone, CLONE_PARENT | CLONE_NEWPID | CLONE_PARENT_SETTID, 0, born,
                      nullptr, 0);
    if (pid == 0) {
      ::close(socket);
      box_init_main(plan);
    }
    int32_t reply = pid > 0 ? static_cast<int32_t>(pid) : -errno;
    for (int fd : {plan.sync_fd, plan.status_fd, plan.command_fd, plan.net_ns_fd})
      if (fd >= 0) ::close(fd);
    if (send_all(socket, &reply, sizeof reply) != 0) ::_exit(0);
  }
}

// The shared pid page, in a memfd so a restarted spawner maps the same page.
pid_t* map_born_page(int memfd) {
  void* page = ::mmap(nullptr, sizeof(pid_t), PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  return page == MAP_FAILED ? nullptr : static_cast<pid_t*>(page);
}

// One request and its reply. Returns the init's pid, or -errno: -EPIPE when the spawner
// is gone (an init it made before going is killed and reaped: it holds the plan's fds).
long exchange(int socket, pid_t* born, const SpawnRequest& request, const int* fds, int count,
              const std::string& payload) {
  __atomic_store_n(born, 0, __ATOMIC_SEQ_CST);
  const int sent = send_with_fds(socket, &request, sizeof request, fds, static_cast<size_t>(count));
  if (sent == EPIPE || sent == ECONNRESET) return -EPIPE;
  if (sent != 0) return -sent;
  if (send_all(socket, payload.data(), payload.size()) != 0) return -EPIPE;
  int32_t reply = 0;
  if (receive_all(socket, &reply, sizeof reply) != 0) {
    if (const pid_t orphan = __atomic_load_n(born, __ATOMIC_SEQ_CST); orphan > 0) {
      ::kill(orphan, SIGKILL);
      while (::waitpid(orphan, nullptr, __WALL) < 0 && errno == EINTR) {
      }
    }
    return -EPIPE;
  }
  if (reply <= 0) throw_errno(-reply, "the box spawner's clone(CLONE_PARENT|CLONE_NEWPID)");
  return reply;
}

// Waits up to 10 s for a restarted spawner's ready word. 0, or an errno.
int await_ready(int socket) {
  struct pollfd ready = {socket, POLLIN, 0};
  int n;
  do n = ::poll(&ready, 1, 10'000);
  while (n < 0 && errno == EINTR);
  if (n == 0) return ETIMEDOUT;
  uint32_t word = 0;
  const int got = receive_all(socket, &word, sizeof word);
  if (got != 0) return got < 0 ? EPIPE : got;
  return word == kMagic ? 0 : EPROTO;
}

}  // namespace

}  // namespace cutor::sandbox

int cutor::box_spawner_main(int argc, char** argv) {
  using namespace cutor::sandbox;
  if (argc != 3 || std::string_view(argv[1]) != kBoxSpawnerArgument) return 1;
  const long parent = std::strtol(argv[2], nullptr, 10);
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 || ::getppid() != parent) return 1;
  constexpr int kSocket = 3, kBornMemfd = 4;
  pid_t* born = map_born_page(kBornMemfd);
  if (born == nullptr) return 1;
  ::close(kBornMemfd);
  seccomp_filter_program();
  spawner_main(kSocket, born, /*announce=*/true);
}

namespace cutor::sandbox {

Spawner::Spawner(pid_t pid, UniqueFd socket, UniqueFd born_memfd, pid_t* born,
                 std::string restart_exe)
    : pid_(pid),
      socket_(std::move(socket)),
      born_memfd_(std::move(born_memfd)),
      born_(born),
      restart_exe_(std::move(restart_exe)),
      keeper_([this] { keeper_loop(); }) {}

std::unique_ptr<Spawner> Spawner::start(std::string restart_exe) {
  seccomp_filter_program();  // compiled once, inherited by the spawner and every init
  int sockets[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0)
    throw_errno(errno, "socketpair for the box spawner");
  UniqueFd ours(sockets[0]), theirs(sockets[1]);
  // One pid shared with the spawner: where its clone writes each init's pid.
  UniqueFd memfd(::memfd_create("cutor-spawner-born", MFD_CLOEXEC));
  if (!memfd) throw_errno(errno, "memfd_create for the box spawner's shared pid");
  if (::ftruncate(memfd.get(), sizeof(pid_t)) != 0)
    throw_errno(errno, "ftruncate the box spawner's shared pid");
  pid_t* born = map_born_page(memfd.get());
  if (born == nullptr) throw_errno(errno, "mmap the box spawner's shared pid");
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::munmap(born, sizeof(pid_t));
    throw_errno(err, "fork the box spawner");
  }
  if (pid == 0) {
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 || ::getppid() != parent) ::_exit(1);
    spawner_main(theirs.get(), born, /*announce=*/false);
  }
  return std::unique_ptr<Spawner>(
      new Spawner(pid, std::move(ours), std::move(memfd), born, std::move(restart_exe)));
}

Spawner::~Spawner() {
  {
    std::lock_guard lock(keeper_mutex_);
    keeper_stop_ = true;
  }
  keeper_wake_.notify_all();
  keeper_.join();
  socket_.reset();
  if (pid_ > 0) {
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  ::munmap(born_, sizeof(pid_t));
}

pid_t Spawner::pid() const {
  std::lock_guard lock(mutex_);
  return pid_;
}

SpawnerHealth Spawner::health() const {
  std::lock_guard lock(health_mutex_);
  return health_;
}

void Spawner::keeper_loop() {
  ::pthread_setname_np(::pthread_self(), "cutor-spawnkeep");
  std::unique_lock lock(keeper_mutex_);
  for (;;) {
    keeper_wake_.wait(lock, [this] { return keeper_stop_ || keeper_request_; });
    if (keeper_stop_) return;
    // posix_spawn: vfork and exec, safe in a multi-threaded process (nothing runs between).
    const std::string parent = std::to_string(::getpid());
    char* argv[] = {const_cast<char*>("cutor-spawner"),
                    const_cast<char*>(kBoxSpawnerArgument.data()),
                    const_cast<char*>(parent.c_str()), nullptr};
    char* envp[] = {nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, keeper_socket_.get(), 3);
    posix_spawn_file_actions_adddup2(&actions, born_memfd_.get(), 4);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t all;
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &all);  // spawner_main sets its dispositions, then unmasks
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    pid_t pid = -1;
    keeper_error_ = ::posix_spawn(&pid, restart_exe_.c_str(), &actions, &attr, argv, envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    keeper_pid_ = keeper_error_ == 0 ? pid : -1;
    keeper_socket_.reset();
    keeper_request_ = false;
    keeper_wake_.notify_all();
  }
}

void Spawner::restart_locked() {
  if (pid_ > 0) {
    socket_.reset();
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
  const auto fail = [this](int err, const std::string& why) {
    set_health(false, why);
    throw_errno(err, why);
  };
  if (restart_exe_.empty()) fail(EPIPE, "the box spawner is gone and restarts are off");
  int sockets[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0)
    fail(errno, std::string("restart the box spawner: socketpair: ") + std::strerror(errno));
  UniqueFd ours(sockets[0]);
  int error = 0;
  pid_t pid = -1;
  {
    std::unique_lock lock(keeper_mutex_);
    keeper_socket_.reset(sockets[1]);
    keeper_request_ = true;
    keeper_wake_.notify_all();
    keeper_wake_.wait(lock, [this] { return !keeper_request_; });
    error = keeper_error_;
    pid = keeper_pid_;
  }
  if (error != 0)
    fail(error,
         "restart the box spawner: posix_spawn " + restart_exe_ + ": " + std::strerror(error));
  if (const int err = await_ready(ours.get()); err != 0) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    fail(err,
         "restart the box spawner: " + restart_exe_ + " did not get ready: " + std::strerror(err));
  }
  pid_ = pid;
  socket_ = std::move(ours);
  std::lock_guard health_lock(health_mutex_);
  ++health_.restarts;
  health_.ok = true;
  health_.problem.clear();
}

void Spawner::set_health(bool ok, const std::string& problem) {
  std::lock_guard lock(health_mutex_);
  health_.ok = ok;
  health_.problem = problem;
}

pid_t Spawner::spawn(const BoxPlan& plan) {
  if (plan.sync_fd < 0 || plan.status_fd < 0 || plan.command_fd < 0)
    throw_errno(EINVAL, "spawn a box: sync, status and command fds are required");
  std::string payload;
  for (const BindMount& mount : plan.read_only) {
    payload.append(mount.host_path.c_str(), mount.host_path.size() + 1);
    payload.append(mount.box_path.c_str(), mount.box_path.size() + 1);
  }
  SpawnRequest request;
  request.tmp_bytes = plan.tmp_bytes;
  request.background = plan.background ? 1 : 0;
  request.read_only_count = static_cast<uint32_t>(plan.read_only.size());
  request.payload_bytes = payload.size();
  int fds[kFdCount];
  int count = 0;
  const int wanted[kFdCount] = {plan.sync_fd, plan.status_fd, plan.command_fd, plan.net_ns_fd};
  for (int i = 0; i < kFdCount; ++i) {
    if (wanted[i] < 0) continue;
    request.fd_mask |= 1u << i;
    fds[count++] = wanted[i];
  }

  std::lock_guard lock(mutex_);
  for (int attempt = 0;; ++attempt) {
    if (!socket_) restart_locked();  // throws when it cannot: the stage fails, closed
    const long result = exchange(socket_.get(), born_, request, fds, count, payload);
    if (result > 0) return static_cast<pid_t>(result);
    if (result != -EPIPE) throw_errno(static_cast<int>(-result), "sendmsg to the box spawner");
    socket_.reset();  // gone: restarted at the next attempt (or the next spawn)
    if (attempt == 1) {
      set_health(false, "the restarted box spawner went away at once");
      throw_errno(EPIPE, "the box spawner went away after a restart");
    }
  }
}

}  // namespace cutor::sandbox
