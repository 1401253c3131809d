#include "sandbox/taskstats.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/taskstats.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "sandbox/fd.h"

namespace cutor::sandbox {
namespace {

constexpr size_t kBuffer = 64 * 1024;

// Appends one netlink attribute to `message`.
void add_attribute(std::string& message, uint16_t type, const void* data, size_t size) {
  struct nlattr header;
  header.nla_type = type;
  header.nla_len = static_cast<uint16_t>(NLA_HDRLEN + size);
  message.append(reinterpret_cast<const char*>(&header), sizeof header);
  message.append(static_cast<const char*>(data), size);
  message.append(NLA_ALIGN(header.nla_len) - header.nla_len, '\0');
}

bool send_request(int fd, uint16_t family, uint8_t command, const std::string& attributes) {
  std::string message(NLMSG_HDRLEN + GENL_HDRLEN, '\0');
  message += attributes;
  auto* header = reinterpret_cast<struct nlmsghdr*>(message.data());
  header->nlmsg_len = static_cast<uint32_t>(message.size());
  header->nlmsg_type = family;
  header->nlmsg_flags = NLM_F_REQUEST;
  auto* genl = reinterpret_cast<struct genlmsghdr*>(message.data() + NLMSG_HDRLEN);
  genl->cmd = command;
  genl->version = 1;
  struct sockaddr_nl kernel = {};
  kernel.nl_family = AF_NETLINK;
  return ::sendto(fd, message.data(), message.size(), 0,
                  reinterpret_cast<struct sockaddr*>(&kernel),
                  sizeof kernel) == static_cast<ssize_t>(message.size());
}

// The id of the "TASKSTATS" generic netlink family, or 0.
uint16_t resolve_family(int fd) {
  std::string attributes;
  add_attribute(attributes, CTRL_ATTR_FAMILY_NAME, TASKSTATS_GENL_NAME,
                sizeof(TASKSTATS_GENL_NAME));
  if (!send_request(fd, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, attributes)) return 0;
  struct pollfd ready = {fd, POLLIN, 0};
  if (::poll(&ready, 1, 1000) != 1) return 0;
  alignas(struct nlmsghdr) char buffer[8192];
  ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);
  if (got < static_cast<ssize_t>(NLMSG_HDRLEN + GENL_HDRLEN)) return 0;
  auto* header = reinterpret_cast<struct nlmsghdr*>(buffer);
  if (header->nlmsg_type != GENL_ID_CTRL || !NLMSG_OK(header, static_cast<size_t>(got))) return 0;
  size_t at = NLMSG_HDRLEN + GENL_HDRLEN;
  while (at + NLA_HDRLEN <= header->nlmsg_len) {
    auto* attribute = reinterpret_cast<struct nlattr*>(buffer + at);
    if (attribute->nla_len < NLA_HDRLEN) break;
    if (attribute->nla_type == CTRL_ATTR_FAMILY_ID && attribute->nla_len >= NLA_HDRLEN + 2) {
      uint16_t id;
      std::memcpy(&id, buffer + at + NLA_HDRLEN, sizeof id);
      return id;
    }
    at += NLA_ALIGN(attribute->nla_len);
  }
  return 0;
}

class Listener final : public ExitedThreadCpu {
 public:
  explicit Listener(UniqueFd socket) : socket_(std::move(socket)) {}

  void track(uid_t uid) override {
    std::lock_guard lock(mutex_);
    drain();
    totals_[uid] = 0;
  }
  void untrack(uid_t uid) override {
    std::lock_guard lock(mutex_);
    drain();
    totals_.erase(uid);
  }
  int64_t cpu_time_us(uid_t uid) override {
    std::lock_guard lock(mutex_);
    drain();
    auto found = totals_.find(uid);
    return found == totals_.end() ? 0 : found->second;
  }

 private:
  // Reads every queued record. A lost batch (ENOBUFS: more exits on the host than the
  // buffer holds between two reads) undercounts; the RLIMIT_CPU backstop still applies.
  void drain() {
    alignas(struct nlmsghdr) static thread_local char buffer[kBuffer];
    for (;;) {
      ssize_t got = ::recv(socket_.get(), buffer, sizeof buffer, MSG_DONTWAIT);
      if (got < 0 && (errno == EINTR || errno == ENOBUFS)) continue;
      if (got <= 0) return;
      size_t left = static_cast<size_t>(got);
      for (auto* header = reinterpret_cast<struct nlmsghdr*>(buffer); NLMSG_OK(header, left);
           header = NLMSG_NEXT(header, left))
        take_message(reinterpret_cast<const char*>(header), header->nlmsg_len);
    }
  }

  // A TASKSTATS_TYPE_AGGR_PID record: one exited thread (the AGGR_TGID sums are skipped, they
  // repeat what the threads' records said).
  void take_message(const char* message, size_t length) {
    for (size_t at = NLMSG_HDRLEN + GENL_HDRLEN; at + NLA_HDRLEN <= length;) {
      struct nlattr outer;
      std::memcpy(&outer, message + at, sizeof outer);
      if (outer.nla_len < NLA_HDRLEN || at + outer.nla_len > length) return;
      if (outer.nla_type == TASKSTATS_TYPE_AGGR_PID) {
        for (size_t in = at + NLA_HDRLEN; in + NLA_HDRLEN <= at + outer.nla_len;) {
          struct nlattr inner;
          std::memcpy(&inner, message + in, sizeof inner);
          if (inner.nla_len < NLA_HDRLEN) return;
          constexpr size_t kNeeded = offsetof(struct taskstats, ac_stime) + sizeof(__u64);
          if (inner.nla_type == TASKSTATS_TYPE_STATS && inner.nla_len >= NLA_HDRLEN + kNeeded) {
            struct taskstats stats = {};
            std::memcpy(&stats, message + in + NLA_HDRLEN,
                        std::min<size_t>(sizeof stats, inner.nla_len - NLA_HDRLEN));
            auto found = totals_.find(static_cast<uid_t>(stats.ac_uid));
            if (found != totals_.end()) found->second += cpu_time_us(stats);
          }
          in += NLA_ALIGN(inner.nla_len);
        }
      }
      at += NLA_ALIGN(outer.nla_len);
    }
  }

  // The thread's cpu time: the scheduler's exact runtime (cpu_run_virtual_total, ns) where
  // the kernel has delay accounting, else utime + stime, which are sampled at the timer
  // tick and on a busy host may be off by a fifth for a thread that ran 300 ms.
  static int64_t cpu_time_us(const struct taskstats& stats) {
    if (stats.cpu_run_virtual_total > 0)
      return static_cast<int64_t>(stats.cpu_run_virtual_total / 1000);
    return static_cast<int64_t>(stats.ac_utime + stats.ac_stime);
  }

  UniqueFd socket_;
  std::mutex mutex_;
  std::map<uid_t, int64_t> totals_;
};

ExitedThreadCpu* open_listener() {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC));
  if (!fd) return nullptr;
  int bytes = 8 << 20;  // many exits between two reads on a busy host
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0)
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  struct sockaddr_nl local = {};
  local.nl_family = AF_NETLINK;
  if (::bind(fd.get(), reinterpret_cast<struct sockaddr*>(&local), sizeof local) != 0)
    return nullptr;
  const uint16_t family = resolve_family(fd.get());
  if (family == 0) return nullptr;
  const long cpus = ::sysconf(_SC_NPROCESSORS_CONF);
  const std::string mask = "0-" + std::to_string(cpus > 0 ? cpus - 1 : 0);
  std::string attributes;
  add_attribute(attributes, TASKSTATS_CMD_ATTR_REGISTER_CPUMASK, mask.c_str(), mask.size() + 1);
  if (!send_request(fd.get(), family, TASKSTATS_CMD_GET, attributes)) return nullptr;
  return new Listener(std::move(fd));
}

// The first number of a small /proc file, or -1.
long long first_number(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char text[128];
  ssize_t got = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  if (got <= 0) return -1;
  text[got] = '\0';
  char* end = nullptr;
  long long value = std::strtoll(text, &end, 10);
  return end == text ? -1 : value;
}

// One live thread's cpu time (0 for a zombie: its exit record counts it). The scheduler's
// exact runtime from schedstat where the kernel has it; else utime + stime from stat,
// which are sampled at the timer tick and can be off by a fifth on a busy host.
int64_t thread_cpu_us(const std::string& task_dir) {
  int fd = ::open((task_dir + "/stat").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[1024];
  ssize_t got = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  if (got <= 0) return 0;
  text[got] = '\0';
  const char* at = std::strrchr(text, ')');
  if (at == nullptr || at[1] != ' ') return 0;
  const char state = at[2];
  if (state == 'Z' || state == 'X') return 0;
  const long long runtime_ns = first_number(task_dir + "/schedstat");
  if (runtime_ns >= 0) return runtime_ns / 1000;
  at += 3;
  int64_t ticks = 0;
  for (int field = 4; field <= 15 && *at != '\0'; ++field) {
    char* end = nullptr;
    long long value = std::strtoll(at, &end, 10);
    if (end == at) return 0;
    if (field >= 14) ticks += value;  // utime, stime of this thread alone
    at = end;
  }
  static const long per_second = ::sysconf(_SC_CLK_TCK);
  return ticks * 1000000 / (per_second > 0 ? per_second : 100);
}

}  // namespace

ExitedThreadCpu* ExitedThreadCpu::host() {
  static ExitedThreadCpu* const listener = open_listener();  // lives as long as the process
  return listener;
}

int64_t live_threads_cpu_time_us(const std::vector<pid_t>& processes) {
  int64_t total = 0;
  for (pid_t pid : processes) {
    const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
    DIR* dir = ::opendir(tasks.c_str());
    if (dir == nullptr) continue;
    while (struct dirent* entry = ::readdir(dir)) {
      if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
      total += thread_cpu_us(tasks + "/" + entry->d_name);
    }
    ::closedir(dir);
  }
  return total;
}

}  // namespace cutor::sandbox
