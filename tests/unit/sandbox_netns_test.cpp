// Network namespaces prepared ahead of time: each distinct while lent, with lo up; one that
// comes back exactly as new is lent again, one that shows any trace of its box (a packet
// on lo, a socket left) never is; and the server's own thread is never left in one.
// Needs root.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>
#include <thread>
#include <vector>

#include "sandbox/fd_passing.h"
#include "sandbox/net.h"

namespace cutor::sandbox {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // Linux 5.14
#endif

ino_t ns_inode(int fd) {
  struct stat st;
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

// The namespace's cookie: unlike its inode number, which the kernel gives to a namespace
// made after this one is gone (other tests make namespaces meanwhile), never reused.
uint64_t ns_cookie(int fd) {
  uint64_t cookie = 0;
  std::thread([&] {  // setns on a thread of its own: only that thread moves
    if (::setns(fd, CLONE_NEWNET) != 0) return;
    int sock = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof cookie;
    if (sock >= 0 && ::getsockopt(sock, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0)
      cookie = 0;
    if (sock >= 0) ::close(sock);
  })
      .join();
  EXPECT_NE(cookie, 0u) << "SO_NETNS_COOKIE";
  return cookie;
}

LentNetNamespace take_within(milliseconds limit) {
  auto deadline = steady_clock::now() + limit;
  for (;;) {
    LentNetNamespace ns = take_prepared_net_namespace();
    if (ns || steady_clock::now() > deadline) return ns;
    std::this_thread::sleep_for(milliseconds(5));
  }
}

// Runs `body` in a child process inside `ns`; its exit code (100+ for setns failing).
int in_namespace(const NetNamespace& ns, const std::function<int()>& body) {
  pid_t child = ::fork();
  if (child == 0) {
    if (::setns(net_namespace_fd(ns), CLONE_NEWNET) != 0) ::_exit(100);
    ::_exit(body());
  }
  int status = 0;
  EXPECT_EQ(::waitpid(child, &status, 0), child);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The pool's counts once every namespace returned so far has been checked.
NetNamespaceCounts all_checked() {
  auto deadline = steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    NetNamespaceCounts now = net_namespace_counts();
    if (now.unchecked == 0) return now;
    if (steady_clock::now() > deadline) {
      ADD_FAILURE() << now.unchecked << " returned namespaces still unchecked after 5 s";
      return now;
    }
    std::this_thread::sleep_for(milliseconds(2));
  }
}

// Returns `ns` to the pool and waits for its check: the pool's counts before and after.
std::pair<NetNamespaceCounts, NetNamespaceCounts> return_and_check(LentNetNamespace ns) {
  NetNamespaceCounts before = all_checked();
  return_net_namespace(std::move(ns));
  return {before, all_checked()};
}

// Whether the namespace with `cookie` is among those the pool lends now (up to ten are
// taken, then all returned).
bool lent_again(uint64_t cookie) {
  std::vector<LentNetNamespace> ready;
  bool found = false;
  for (int i = 0; i < 10 && !found; ++i) {
    ready.push_back(take_within(milliseconds(500)));
    if (!ready.back()) break;
    found = ns_cookie(net_namespace_fd(*ready.back())) == cookie;
  }
  for (auto& r : ready) return_net_namespace(std::move(r));
  return found;
}

TEST(SandboxNetNamespaceTest, PreparedNamespacesAreDistinctAndHaveLoopbackUp) {
  ASSERT_EQ(::geteuid(), 0u) << "needs root";
  start_preparing_net_namespaces();
  UniqueFd own(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(own);
  std::set<ino_t> seen = {ns_inode(own.get())};
  std::vector<LentNetNamespace> taken;  // held, so none comes back and none is lent twice
  for (int i = 0; i < 5; ++i) {
    taken.push_back(take_within(std::chrono::seconds(5)));
    ASSERT_TRUE(taken.back()) << "no prepared namespace within 5 s";
    const NetNamespace& ns = *taken.back();
    EXPECT_TRUE(seen.insert(ns_inode(net_namespace_fd(ns))).second) << "lent twice";

    // lo is up and is the only interface.
    int code = in_namespace(ns, [] {
      int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      struct ifreq request;
      std::memset(&request, 0, sizeof request);
      std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
      if (sock < 0 || ::ioctl(sock, SIOCGIFFLAGS, &request) != 0) return 3;
      if ((request.ifr_flags & IFF_UP) == 0) return 4;
      struct if_nameindex* names = ::if_nameindex();
      int count = 0;
      for (auto* n = names; n != nullptr && n->if_index != 0; ++n) ++count;
      return count == 1 ? 0 : 5;
    });
    EXPECT_EQ(code, 0);
  }
  // No thread of this process (the pool's included) is in a namespace it handed out. (The
  // pool thread may be inside the next one it is preparing, for a moment.)
  seen.erase(ns_inode(own.get()));
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    UniqueFd ns(::open((task.path() / "ns/net").c_str(), O_RDONLY | O_CLOEXEC));
    if (ns) {
      EXPECT_EQ(seen.count(ns_inode(ns.get())), 0u) << task.path();
    }
  }
}

// Lent, used by a process that leaves no trace (it only looks), returned: lent again.
TEST(SandboxNetNamespaceTest, ANamespaceThatComesBackAsNewIsLentAgain) {
  ASSERT_EQ(::geteuid(), 0u) << "needs root";
  LentNetNamespace ns = take_within(std::chrono::seconds(5));
  ASSERT_TRUE(ns);
  const uint64_t cookie = ns_cookie(net_namespace_fd(*ns));
  EXPECT_EQ(in_namespace(*ns, [] { return ::if_nametoindex("lo") == 1 ? 0 : 1; }), 0);
  auto [before, after] = return_and_check(std::move(ns));
  EXPECT_EQ(after.reused, before.reused + 1);
  EXPECT_EQ(after.dirty, before.dirty);
  EXPECT_TRUE(lent_again(cookie)) << "the clean namespace was not lent again";
}

// What a box can leave in its network namespace: each makes it be destroyed, never lent
// again.
void expect_destroyed_after(const char* what, const std::function<int(int)>& use) {
  SCOPED_TRACE(what);
  LentNetNamespace ns = take_within(std::chrono::seconds(5));
  ASSERT_TRUE(ns);
  const uint64_t cookie = ns_cookie(net_namespace_fd(*ns));
  // A socket the child sends back here outlives the child, as one kept in flight would.
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd ours(pair[0]), theirs(pair[1]);
  EXPECT_EQ(in_namespace(*ns, [&] { return use(theirs.get()); }), 0);
  theirs.reset();
  UniqueFd kept;
  char byte;
  int fd = -1;
  size_t count = 0;
  if (receive_with_fds(ours.get(), &byte, 1, &fd, 1, &count) == 0 && count == 1) kept.reset(fd);

  auto [before, after] = return_and_check(std::move(ns));
  EXPECT_EQ(after.dirty, before.dirty + 1);
  EXPECT_EQ(after.reused, before.reused);
  EXPECT_FALSE(lent_again(cookie)) << "lent again";
}

int send_fd_back(int channel, int fd) {
  char byte = 'x';
  return send_with_fds(channel, &byte, 1, &fd, 1) == 0 ? 0 : 9;
}

TEST(SandboxNetNamespaceTest, ANamespaceWithATraceOfItsBoxIsDestroyed) {
  ASSERT_EQ(::geteuid(), 0u) << "needs root";
  expect_destroyed_after("TCP over lo (packets, then TIME_WAIT)", [](int) {
    int server = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 1;
    if (::listen(server, 1) != 0) return 2;
    ::getsockname(server, reinterpret_cast<sockaddr*>(&addr), &len);
    int client = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 3;
    int accepted = ::accept(server, nullptr, nullptr);
    ::close(accepted);
    ::close(client);
    ::close(server);
    return 0;
  });
  expect_destroyed_after("a datagram to a closed port on lo", [](int) {
    int sock = ::socket(AF_INET6, SOCK_DGRAM, 0);
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_loopback;
    addr.sin6_port = htons(9);
    return ::sendto(sock, "x", 1, 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 1 ? 0 : 1;
  });
  expect_destroyed_after("a bound UDP socket that outlives its process (no packet)", [](int ch) {
    int sock = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 1;
    return send_fd_back(ch, sock);
  });
  expect_destroyed_after(
      "a listening TCP socket that outlives its process (no packet)", [](int ch) {
        int sock = ::socket(AF_INET6, SOCK_STREAM, 0);
        sockaddr_in6 addr{};
        addr.sin6_family = AF_INET6;
        addr.sin6_addr = in6addr_loopback;
        if (::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) || ::listen(sock, 1))
          return 1;
        return send_fd_back(ch, sock);
      });
  expect_destroyed_after("an abstract unix name that outlives its process", [](int ch) {
    int sock = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, "\0cutor-test", 11);
    if (::bind(sock, reinterpret_cast<sockaddr*>(&addr), offsetof(sockaddr_un, sun_path) + 11))
      return 1;
    return send_fd_back(ch, sock);
  });
}

}  // namespace
}  // namespace cutor::sandbox
