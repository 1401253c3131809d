// Network namespaces prepared ahead of time: each fresh, distinct, with lo up, handed out
// once, and the server's own thread never left in one. Needs root.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>
#include <vector>

#include "sandbox/net.h"

namespace cutor::sandbox {
namespace {

ino_t ns_inode(int fd) {
  struct stat st;
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

UniqueFd take_within(std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    UniqueFd fd = take_prepared_net_namespace();
    if (fd || std::chrono::steady_clock::now() > deadline) return fd;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

TEST(SandboxNetNamespaceTest, PreparedNamespacesAreFreshDistinctAndHaveLoopbackUp) {
  ASSERT_EQ(::geteuid(), 0u) << "needs root";
  start_preparing_net_namespaces();
  UniqueFd own(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(own);
  std::set<ino_t> seen = {ns_inode(own.get())};
  std::vector<UniqueFd> taken;  // held open, so their inode numbers are not recycled
  for (int i = 0; i < 5; ++i) {
    taken.push_back(take_within(std::chrono::seconds(5)));
    const UniqueFd& fd = taken.back();
    ASSERT_TRUE(fd) << "no prepared namespace within 5 s";
    EXPECT_TRUE(seen.insert(ns_inode(fd.get())).second) << "handed out twice";

    // In a child: enter it; lo is up and is the only interface.
    pid_t child = ::fork();
    if (child == 0) {
      if (::setns(fd.get(), CLONE_NEWNET) != 0) ::_exit(2);
      int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      struct ifreq request;
      std::memset(&request, 0, sizeof request);
      std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
      if (sock < 0 || ::ioctl(sock, SIOCGIFFLAGS, &request) != 0) ::_exit(3);
      if ((request.ifr_flags & IFF_UP) == 0) ::_exit(4);
      struct if_nameindex* names = ::if_nameindex();
      int count = 0;
      for (auto* n = names; n != nullptr && n->if_index != 0; ++n) ++count;
      ::_exit(count == 1 ? 0 : 5);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
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

}  // namespace
}  // namespace cutor::sandbox
