// The box uid pool: a uid is exclusive across pools and processes sharing a lock directory,
// free again when its lease ends or its holder dies, and never one of the host's users.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "sandbox/uid_pool.h"

namespace cutor::sandbox {
namespace {

class SandboxUidPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/cutor-uidpool-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = std::string(dir) + "/locks";  // created by the pool
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(std::filesystem::path(dir_).parent_path(), ignored);
  }
  std::string dir_;
};

// Two pools on one lock directory stand for two servers: together they never hand out a
// uid twice, and the second runs out when the first holds everything.
TEST_F(SandboxUidPoolTest, PoolsSharingALockDirectoryNeverShareAUid) {
  UidPool first(dir_, 3000000, 4), second(dir_, 3000000, 4);
  std::vector<std::unique_ptr<UidLease>> held;
  std::set<uid_t> seen;
  held.push_back(first.acquire());
  held.push_back(second.acquire());
  held.push_back(first.acquire());
  held.push_back(second.acquire());
  for (const auto& lease : held) seen.insert(lease->uid());
  EXPECT_EQ(seen, (std::set<uid_t>{3000000, 3000001, 3000002, 3000003}));
  try {
    second.acquire();
    ADD_FAILURE() << "a fifth uid from a pool of four";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EAGAIN) << e.what();
  }
  const uid_t freed = held[0]->uid();
  held.erase(held.begin());
  EXPECT_EQ(second.acquire()->uid(), freed);
}

// Another process holding a uid keeps it from us until it exits (the kernel drops its lock).
TEST_F(SandboxUidPoolTest, AUidHeldByAnotherProcessIsSkippedUntilItDies) {
  int ready[2], done[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(done), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    UidPool pool(dir_, 3000010, 2);
    auto lease = pool.acquire();
    char c = lease->uid() == 3000010 ? 'y' : 'n';
    (void)!::write(ready[1], &c, 1);
    (void)!::read(done[0], &c, 1);  // hold until told (or the parent dies)
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(done[0]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  EXPECT_EQ(c, 'y');
  UidPool pool(dir_, 3000010, 2);
  {
    auto lease = pool.acquire();
    EXPECT_EQ(lease->uid(), 3000011u) << "the other process's uid was handed out";
    EXPECT_THROW(pool.acquire(), std::system_error);
  }
  ::kill(child, SIGKILL);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  auto first = pool.acquire();
  auto second = pool.acquire();
  EXPECT_EQ((std::set<uid_t>{first->uid(), second->uid()}), (std::set<uid_t>{3000010, 3000011}));
  ::close(ready[0]);
  ::close(done[1]);
}

// Ids of the host's users and groups are never box uids.
TEST_F(SandboxUidPoolTest, HostUsersAreSkipped) {
  UidPool pool(dir_, 0, 3);  // root and (on Debian) daemon, bin: all named in /etc/passwd
  EXPECT_THROW(pool.acquire(), std::system_error);
  UidPool host_range(dir_, 65533, 3);  // nobody (65534) is skipped
  for (int i = 0; i < 2; ++i) EXPECT_NE(host_range.acquire()->uid(), 65534u);
}

}  // namespace
}  // namespace cutor::sandbox
