#include "sandbox/net.h"

#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "sandbox/box.h"

namespace cutor::sandbox {

void bring_up_loopback() {
  // Interface flags are set through any socket of the namespace; a datagram socket is the
  // cheapest. No netlink needed (and the box's seccomp filter refuses netlink later).
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) throw std::system_error(errno, std::generic_category(), "socket(AF_INET) for lo");
  struct ifreq request;
  std::memset(&request, 0, sizeof(request));
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &request) != 0)
    throw std::system_error(errno, std::generic_category(), "ioctl SIOCGIFFLAGS lo");
  request.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &request) != 0)
    throw std::system_error(errno, std::generic_category(), "ioctl SIOCSIFFLAGS lo up");
}

namespace {

// How many fresh namespaces to keep ready: enough for back-to-back stages of two workers.
constexpr size_t kPoolSize = 2;
// How many to keep at most, counting those that came back clean; more are destroyed.
constexpr size_t kMaxReady = 8;

// The /proc/net views whose content must read as when the namespace was new (net.h).
// Those that do not exist on this host (no IPv6, say) are left out, at making and at
// checking alike. No socket table: sockstat's "sockets: used" counts the namespace's
// sockets of every family (unix, raw, packet and ping ones included) and its TCP line the
// TIME_WAIT ones, while listing a table walks hash tables shared by every namespace (1 ms
// for tcp here).
constexpr const char* kProbeFiles[] = {"dev",      "sockstat",  "sockstat6",    "snmp",
                                       "snmp6",    "netstat",   "igmp",         "igmp6",
                                       "mcfilter", "mcfilter6", "ip6_flowlabel"};

// sockstat's figures that are not the namespace's own (TCP's orphans, allocated sockets
// and memory pages are host-wide): blanked out before comparing.
constexpr const char* kHostWideSockstatFields[] = {"orphan", "alloc", "mem"};

// The whole of a /proc/net file, read from its start again. Files opened in a namespace
// show that namespace however often they are read, and from any thread.
bool read_whole(int fd, std::string& out) {
  out.clear();
  char buf[8192];
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(out.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    out.append(buf, static_cast<size_t>(n));
  }
}

// `content` of sockstat without its host-wide figures.
std::string without_host_wide_figures(const std::string& content) {
  std::string out;
  size_t pos = 0;
  bool skip_next = false;
  while (pos < content.size()) {
    size_t end = content.find_first_of(" \n", pos);
    if (end == std::string::npos) end = content.size();
    std::string_view word(content.data() + pos, end - pos);
    if (!skip_next) out.append(word);
    skip_next = false;
    for (const char* field : kHostWideSockstatFields)
      if (word == field) skip_next = true;
    if (end < content.size()) out.push_back(content[end]);
    pos = end + 1;
  }
  return out;
}

// What a probe shows that must not change.
bool read_probe(const char* name, int fd, std::string& out) {
  if (!read_whole(fd, out)) return false;
  if (std::string_view(name) == "sockstat") out = without_host_wide_figures(out);
  return true;
}

}  // namespace

class NetNamespace {
 public:
  UniqueFd fd;
  struct Probe {
    const char* name;      // in kProbeFiles
    UniqueFd fd;           // opened inside the namespace
    std::string baseline;  // what it showed right after lo came up
  };
  std::vector<Probe> probes;

  // True when every probe shows exactly its baseline.
  bool unchanged() const {
    std::string now;
    for (const Probe& p : probes)
      if (!read_probe(p.name, p.fd.get(), now) || now != p.baseline) return false;
    return true;
  }
};

void NetNamespaceDeleter::operator()(NetNamespace* ns) const {
  delete ns;
}

int net_namespace_fd(const NetNamespace& ns) {
  return ns.fd.get();
}

namespace {

// The process-wide pool. Its thread enters each new namespace alone (unshare(CLONE_NEWNET)
// is per thread), keeps an fd of it and of its /proc/net views, and goes back to the
// server's namespace at once, so no server thread ever lives in a box's namespace. The same
// thread checks the namespaces that come back.
class NetNamespacePool {
 public:
  static NetNamespacePool& instance() {
    // Never destroyed: the thread runs until the process ends, and a forked child that
    // calls exit() must not try to join a thread it does not have.
    static NetNamespacePool* pool = new NetNamespacePool();
    return *pool;
  }

  LentNetNamespace take() {
    std::lock_guard lock(mutex_);
    if (ready_.empty() || stuck_) {
      wanted_.notify_one();
      return nullptr;
    }
    LentNetNamespace ns = std::move(ready_.front());
    ready_.pop_front();
    return ns;
  }

  void give_back(LentNetNamespace ns) {
    if (!ns) return;
    {
      std::lock_guard lock(mutex_);
      if (!own_) return;  // no thread to check it: destroyed here
      returned_.push_back(std::move(ns));
    }
    wanted_.notify_one();
  }

  void refill() {
    std::lock_guard lock(mutex_);
    wanted_.notify_one();
  }

  NetNamespaceCounts counts() {
    std::lock_guard lock(mutex_);
    NetNamespaceCounts now = counts_;
    now.unchecked = static_cast<int64_t>(returned_.size()) + (checking_ ? 1 : 0);
    return now;
  }

 private:
  NetNamespacePool() {
    own_.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (own_) std::thread([this] { fill(); }).detach();
  }

  void fill() {
    ::pthread_setname_np(::pthread_self(), "cutor-netns");
    // No stage waits for a namespace being made or checked (a box without one unshares its
    // own).
    set_scheduling(0, Scheduling::kBackground, 0);
    for (;;) {
      LentNetNamespace back;
      {
        std::unique_lock lock(mutex_);
        wanted_.wait(lock, [this] {
          return !returned_.empty() || (!cannot_make_ && !stuck_ && ready_.size() < kPoolSize);
        });
        if (!returned_.empty()) {
          back = std::move(returned_.front());
          returned_.pop_front();
          checking_ = true;
        }
      }
      if (back) {
        const bool clean = back->unchanged();
        std::lock_guard lock(mutex_);
        checking_ = false;
        if (!clean) {
          ++counts_.dirty;
        } else if (ready_.size() < kMaxReady && !stuck_) {
          ++counts_.reused;
          ready_.push_back(std::move(back));
        }
        continue;  // a namespace not kept is destroyed as `back` goes
      }
      LentNetNamespace made = make_one();
      std::lock_guard lock(mutex_);
      if (!made) {
        cannot_make_ = true;  // this host cannot (no privilege): boxes unshare their own
      } else if (!stuck_) {
        ++counts_.made;
        ready_.push_back(std::move(made));
      }
    }
  }

  // A new namespace with lo up and its probes read, or null on failure (then this thread is
  // back in the server's namespace, or it is stuck and hands out nothing more).
  LentNetNamespace make_one() {
    if (::unshare(CLONE_NEWNET) != 0) return nullptr;
    LentNetNamespace made(new NetNamespace);
    made->fd.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    bool usable = static_cast<bool>(made->fd);
    if (usable) {
      try {
        bring_up_loopback();
      } catch (const std::system_error&) {
        usable = false;
      }
    }
    for (const char* name : kProbeFiles) {
      if (!usable) break;
      std::string path = std::string("/proc/thread-self/net/") + name;
      UniqueFd probe(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!probe) continue;  // not on this host
      std::string content;
      if (!read_probe(name, probe.get(), content)) continue;
      made->probes.push_back({name, std::move(probe), std::move(content)});
    }
    if (::setns(own_.get(), CLONE_NEWNET) != 0) {
      // Stuck in a namespace of our own making: hand out nothing more. (The thread does
      // nothing but sleep from here on; it holds no socket.)
      {
        std::lock_guard lock(mutex_);
        ready_.clear();
        stuck_ = true;
      }
      for (;;) ::pause();
    }
    return usable ? std::move(made) : nullptr;
  }

  std::mutex mutex_;
  std::condition_variable wanted_;
  std::deque<LentNetNamespace> ready_;
  std::deque<LentNetNamespace> returned_;
  NetNamespaceCounts counts_;
  bool checking_ = false;  // one taken from returned_ is being checked
  bool cannot_make_ = false;
  bool stuck_ = false;
  UniqueFd own_;  // the server's network namespace
};

}  // namespace

LentNetNamespace take_prepared_net_namespace() {
  return NetNamespacePool::instance().take();
}

void return_net_namespace(LentNetNamespace ns) {
  if (ns) NetNamespacePool::instance().give_back(std::move(ns));
}

void start_preparing_net_namespaces() {
  NetNamespacePool::instance();
}

void refill_prepared_net_namespaces() {
  NetNamespacePool::instance().refill();
}

NetNamespaceCounts net_namespace_counts() {
  return NetNamespacePool::instance().counts();
}

}  // namespace cutor::sandbox
