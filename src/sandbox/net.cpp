#include "sandbox/net.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>

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

// How many prepared namespaces to keep: enough for back-to-back stages of two workers.
constexpr size_t kPoolSize = 2;

// The process-wide pool. Its thread enters each new namespace alone (unshare(CLONE_NEWNET)
// is per thread), keeps an fd of it, and goes back to the server's namespace at once, so no
// server thread ever lives in a box's namespace.
class NetNamespacePool {
 public:
  static NetNamespacePool& instance() {
    // Never destroyed: the thread runs until the process ends, and a forked child that
    // calls exit() must not try to join a thread it does not have.
    static NetNamespacePool* pool = new NetNamespacePool();
    return *pool;
  }

  UniqueFd take() {
    std::lock_guard lock(mutex_);
    if (ready_.empty() || stuck_) {
      wanted_.notify_one();
      return UniqueFd();
    }
    UniqueFd fd = std::move(ready_.front());
    ready_.pop_front();
    return fd;
  }

  void refill() {
    std::lock_guard lock(mutex_);
    wanted_.notify_one();
  }

 private:
  NetNamespacePool() {
    own_.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (own_) std::thread([this] { fill(); }).detach();
  }

  void fill() {
    // No stage waits for a namespace being made (a box without one unshares its own).
    set_scheduling(0, true, kBackgroundNice);
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        wanted_.wait(lock, [this] { return ready_.size() < kPoolSize; });
      }
      UniqueFd made = make_one();
      if (!made) return;  // this host cannot (no privilege): boxes unshare their own
      std::lock_guard lock(mutex_);
      ready_.push_back(std::move(made));
    }
  }

  // A new namespace with lo up, or an invalid fd on failure (then this thread is back in
  // the server's namespace, or it stops for good).
  UniqueFd make_one() {
    if (::unshare(CLONE_NEWNET) != 0) return UniqueFd();
    UniqueFd made(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    bool usable = static_cast<bool>(made);
    if (usable) {
      try {
        bring_up_loopback();
      } catch (const std::system_error&) {
        usable = false;
      }
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
    return usable ? std::move(made) : UniqueFd();
  }

  std::mutex mutex_;
  std::condition_variable wanted_;
  std::deque<UniqueFd> ready_;
  bool stuck_ = false;
  UniqueFd own_;  // the server's network namespace
};

}  // namespace

UniqueFd take_prepared_net_namespace() {
  return NetNamespacePool::instance().take();
}

void start_preparing_net_namespaces() {
  NetNamespacePool::instance();
}

void refill_prepared_net_namespaces() {
  NetNamespacePool::instance().refill();
}

}  // namespace cutor::sandbox
