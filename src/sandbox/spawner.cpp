#include "sandbox/spawner.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
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

[[noreturn]] void spawner_main(int socket, pid_t* born) {
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

}  // namespace

std::unique_ptr<Spawner> Spawner::start() {
  seccomp_filter_program();  // compiled once, inherited by the spawner and every init
  int sockets[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0)
    throw_errno(errno, "socketpair for the box spawner");
  UniqueFd ours(sockets[0]), theirs(sockets[1]);
  // One pid shared with the spawner: where its clone writes each init's pid.
  void* page =
      ::mmap(nullptr, sizeof(pid_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) throw_errno(errno, "mmap the box spawner's shared pid");
  pid_t* born = static_cast<pid_t*>(page);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::munmap(born, sizeof(pid_t));
    throw_errno(err, "fork the box spawner");
  }
  if (pid == 0) {
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 || ::getppid() != parent) ::_exit(1);
    spawner_main(theirs.get(), born);
  }
  return std::unique_ptr<Spawner>(new Spawner(pid, std::move(ours), born));
}

Spawner::~Spawner() {
  socket_.reset();
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  ::munmap(born_, sizeof(pid_t));
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
  __atomic_store_n(born_, 0, __ATOMIC_SEQ_CST);
  if (int err =
          send_with_fds(socket_.get(), &request, sizeof request, fds, static_cast<size_t>(count)))
    throw_errno(err, "sendmsg to the box spawner");
  if (send_all(socket_.get(), payload.data(), payload.size()) != 0)
    throw_errno(EPIPE, "send to the box spawner");
  int32_t reply = 0;
  if (receive_all(socket_.get(), &reply, sizeof reply) != 0) {
    // Killed after its clone, before the reply: the init it made is our child, holds this
    // plan's fds (it would race a fallback init for the go byte) and would be a zombie
    // nobody knows of. Its pid is in the shared page.
    if (const pid_t orphan = __atomic_load_n(born_, __ATOMIC_SEQ_CST); orphan > 0) {
      ::kill(orphan, SIGKILL);
      while (::waitpid(orphan, nullptr, __WALL) < 0 && errno == EINTR) {
      }
    }
    throw_errno(EPIPE, "read the box spawner's reply (spawner gone)");
  }
  if (reply <= 0) throw_errno(-reply, "the box spawner's clone(CLONE_PARENT|CLONE_NEWPID)");
  return reply;
}

}  // namespace cutor::sandbox
