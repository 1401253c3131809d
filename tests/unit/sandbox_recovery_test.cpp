// Recovery after a crash: what a server killed with SIGKILL leaves behind (workspaces, some
// with a tmpfs mounted; stage cgroups, maybe with processes still in them) is removed by
// the next server, and nothing else is: not a live server's cgroups, not what a workspace
// links to, not mounts outside the workspace directory. Needs root.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "sandbox/cgroup.h"
#include "sandbox/sandbox.h"
#include "sandbox/workspace.h"

namespace cutor::sandbox {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Mount points from /proc/self/mountinfo (test paths have no characters needing escapes).
bool is_mount_point(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    if (fields >> id >> parent >> dev >> root >> point && point == path) return true;
  }
  return false;
}

// A pid that was ours and is now dead (reaped).
pid_t dead_pid() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

class SandboxRecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "the recovery tests need root (tmpfs mounts, cgroups)";
    std::string templ = "/tmp/cutor-recovery-XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    root_ = fs::canonical(templ).string();
    work_ = root_ + "/work";
    outside_ = root_ + "/outside";
    fs::create_directories(work_);
    fs::create_directories(outside_ + "/dir");
    std::ofstream(outside_ + "/canary") << "alive";
    std::ofstream(outside_ + "/dir/canary") << "alive";
    // Orphans of the "crashed servers" below come back to us to be reaped.
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  }
  void TearDown() override {
    for (const std::string& mount : mounts_) ::umount2(mount.c_str(), MNT_DETACH);
    for (const auto& entry : fs::directory_iterator(work_, fs::directory_options::none, ignored_))
      for (int i = 0; i < 8 && is_mount_point(entry.path().string()); ++i)
        ::umount2(entry.path().c_str(), MNT_DETACH);
    fs::remove_all(root_, ignored_);
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
  }

  // A crashed server: makes workspaces in work_ through the real Sandbox, writes into them,
  // plants hostile links like a user program could, then dies by SIGKILL (no destructor).
  void crash_a_server_with_workspaces() {
    pid_t server = ::fork();
    ASSERT_GE(server, 0);
    if (server == 0) {
      try {
        auto sandbox = make_sandbox({});
        auto tmpfs_ws = sandbox->make_workspace(work_, "sub-tmpfs");
        tmpfs_ws->write_file("src/deep/main.c", "int main(){}", false);
        tmpfs_ws->write_file("run.sh", "echo", true);
        const std::string ws = tmpfs_ws->path();
        // What a program in the box could leave: links out of the workspace, a FIFO.
        if (::symlink((outside_ + "/canary").c_str(), (ws + "/link-file").c_str()) != 0 ||
            ::symlink((outside_ + "/dir").c_str(), (ws + "/link-dir").c_str()) != 0 ||
            ::symlink("/", (ws + "/src/root").c_str()) != 0 ||
            ::mkfifo((ws + "/fifo").c_str(), 0600) != 0)
          ::_exit(2);
        auto plain = create_workspace(work_, "sub-plain", {});
        plain->write_file("a/b/c/d/e", "x", false);
        if (::symlink(outside_.c_str(), (plain->path() + "/a/out").c_str()) != 0) ::_exit(3);
        ::kill(::getpid(), SIGKILL);
      } catch (...) {
      }
      ::_exit(4);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(server, &status, 0), server);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  }

  std::string root_, work_, outside_;
  std::vector<std::string> mounts_;
  std::error_code ignored_;
};

TEST_F(SandboxRecoveryTest, RemovesWorkspacesOfACrashedServerAndNothingElse) {
  crash_a_server_with_workspaces();
  ASSERT_TRUE(is_mount_point(work_ + "/sub-tmpfs")) << "the crash should leave the tmpfs";
  ASSERT_TRUE(fs::exists(work_ + "/sub-plain/a/b/c/d/e"));

  // Hostile neighbours that are not workspaces: a symlink to a mounted directory outside
  // (must not be unmounted or emptied through the link) and a plain file.
  const std::string outside_mount = outside_ + "/mnt";
  fs::create_directories(outside_mount);
  ASSERT_EQ(::mount("tmpfs", outside_mount.c_str(), "tmpfs", 0, "size=1m"), 0);
  mounts_.push_back(outside_mount);
  std::ofstream(outside_mount + "/kept") << "kept";
  fs::create_symlink(outside_mount, work_ + "/link-to-mount");
  std::ofstream(work_ + "/note") << "not a workspace";

  auto sandbox = make_sandbox({});
  sandbox->remove_stale_workspaces(work_);

  EXPECT_FALSE(fs::exists(work_ + "/sub-tmpfs"));
  EXPECT_FALSE(is_mount_point(work_ + "/sub-tmpfs"));
  EXPECT_FALSE(fs::exists(work_ + "/sub-plain"));
  EXPECT_EQ(read_file(outside_ + "/canary"), "alive");
  EXPECT_EQ(read_file(outside_ + "/dir/canary"), "alive");
  EXPECT_TRUE(is_mount_point(outside_mount));
  EXPECT_EQ(read_file(outside_mount + "/kept"), "kept");
  EXPECT_TRUE(fs::is_symlink(work_ + "/link-to-mount"));
  EXPECT_EQ(read_file(work_ + "/note"), "not a workspace");
  EXPECT_TRUE(fs::exists("/etc/passwd"));

  // A workspace made afterwards under the same name works, and a second sweep of a clean
  // directory (or a missing one) is a no-op.
  auto again = sandbox->make_workspace(work_, "sub-tmpfs");
  again->write_file("run.sh", "echo", true);
  again.reset();
  EXPECT_NO_THROW(sandbox->remove_stale_workspaces(work_));
  EXPECT_NO_THROW(sandbox->remove_stale_workspaces(root_ + "/missing"));
}

TEST_F(SandboxRecoveryTest, StackedTmpfsMountsAreAllDetached) {
  const std::string ws = work_ + "/stacked";
  fs::create_directories(ws);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(::mount("tmpfs", ws.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=1m"), 0);
    std::ofstream(ws + "/layer" + std::to_string(i)) << i;
  }
  EXPECT_EQ(remove_stale_workspaces(work_), 1);
  EXPECT_FALSE(is_mount_point(ws));
  EXPECT_FALSE(fs::exists(ws));
}

TEST_F(SandboxRecoveryTest, AMountInsideAWorkspaceIsReportedNotCrossed) {
  // Not something cutor makes: a mount below a workspace is not the sweep's to remove.
  const std::string ws = work_ + "/odd";
  const std::string inner = ws + "/inner";
  fs::create_directories(inner);
  ASSERT_EQ(::mount("tmpfs", inner.c_str(), "tmpfs", 0, "size=1m"), 0);
  mounts_.push_back(inner);
  std::ofstream(inner + "/kept") << "kept";
  fs::create_directories(work_ + "/clean/x");

  try {
    remove_stale_workspaces(work_);
    ADD_FAILURE() << "expected an error naming the workspace";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find(ws), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(work_ + "/clean")) << "the other workspaces are removed anyway";
  EXPECT_EQ(read_file(inner + "/kept"), "kept");
}

// --- stage cgroups ---

std::map<std::string, std::string> own_paths() {
  std::map<std::string, std::string> own;
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    auto a = line.find(':'), b = line.find(':', a + 1);
    std::stringstream list(line.substr(a + 1, b - a - 1));
    std::string c;
    while (std::getline(list, c, ',')) own[c] = line.substr(b + 1);
  }
  return own;
}

std::string mount_of(const std::string& controller) {
  std::ifstream in("/proc/self/mounts");
  std::string dev, dir, type, opts, rest;
  while (in >> dev >> dir >> type >> opts) {
    std::getline(in, rest);
    if (type == "cgroup" && ("," + opts + ",").find("," + controller + ",") != std::string::npos)
      return dir;
  }
  return "";
}

// The directories of `parent` in each usable v1 hierarchy (this host is hybrid).
std::vector<std::string> parent_dirs(const std::string& parent) {
  std::vector<std::string> dirs;
  auto own = own_paths();
  for (const char* controller : {"memory", "pids", "cpuacct"}) {
    std::string mount = mount_of(controller);
    if (own[controller].empty() || own[controller] == "/" || mount.empty()) continue;
    dirs.push_back(mount + own[controller] + "/" + parent);
  }
  return dirs;
}

TEST_F(SandboxRecoveryTest, StaleStageCgroupsOfDeadServersAreRemovedWithTheirProcesses) {
  if (describe_cgroup_support().rfind("hybrid", 0) != 0)
    GTEST_SKIP() << "this test reads v1 paths; host: " << describe_cgroup_support();
  const std::string parent = "cutor-recovery-" + std::to_string(::getpid());
  std::vector<std::string> dirs = parent_dirs(parent);
  ASSERT_FALSE(dirs.empty());

  // A crashed server: its stage cgroup still holds a process of its box.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t server = ::fork();
  ASSERT_GE(server, 0);
  if (server == 0) {
    ::close(ready[0]);
    try {
      auto cgroup = create_stage_cgroup(parent, "stage-" + std::to_string(::getpid()) + "-7",
                                        SandboxLimits{});
      pid_t leftover = ::fork();
      if (leftover == 0) {
        ::execl("/bin/sleep", "sleep", "600", static_cast<char*>(nullptr));
        ::_exit(127);
      }
      cgroup->add_process(leftover);
      if (::write(ready[1], &leftover, sizeof leftover) != sizeof leftover) ::_exit(2);
      ::kill(::getpid(), SIGKILL);  // no destructor: the cgroup and the sleeper stay
    } catch (...) {
    }
    ::_exit(3);
  }
  ::close(ready[1]);
  pid_t leftover = -1;
  ASSERT_EQ(::read(ready[0], &leftover, sizeof leftover), static_cast<ssize_t>(sizeof leftover));
  ::close(ready[0]);
  ASSERT_EQ(::waitpid(server, nullptr, 0), server);
  const std::string stale = "stage-" + std::to_string(server) + "-7";

  // Cgroups that must survive: this live process's, an unrelated name, and a dead pid's
  // name that only looks like a stage's (non-numeric counter).
  const std::string live = "stage-" + std::to_string(::getpid()) + "-99";
  const std::string other = "not-a-stage";
  const std::string odd = "stage-" + std::to_string(dead_pid()) + "-x";
  auto live_cgroup = create_stage_cgroup(parent, live, SandboxLimits{});
  for (const std::string& dir : dirs) {
    ASSERT_TRUE(fs::exists(dir + "/" + stale)) << dir;
    ASSERT_EQ(::mkdir((dir + "/" + other).c_str(), 0755), 0) << dir;
    ASSERT_EQ(::mkdir((dir + "/" + odd).c_str(), 0755), 0) << dir;
  }
  ASSERT_EQ(::kill(leftover, 0), 0) << "the crashed server's box process should still run";

  SandboxOptions options;
  options.cgroup_parent = parent;
  auto sandbox = make_sandbox(options);

  // The sweep killed the leftover: it is reaped here (bounded, so a miss fails, not hangs).
  int status = 0;
  pid_t reaped = 0;
  for (int i = 0; i < 500 && reaped == 0; ++i) {
    reaped = ::waitpid(leftover, &status, WNOHANG);
    if (reaped == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (reaped == 0) {
    ::kill(leftover, SIGKILL);
    ::waitpid(leftover, nullptr, 0);
  }
  EXPECT_EQ(reaped, leftover) << "the crashed server's leftover process was not killed";
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  for (const std::string& dir : dirs) {
    EXPECT_FALSE(fs::exists(dir + "/" + stale)) << dir;
    EXPECT_TRUE(fs::exists(dir + "/" + live)) << dir;
    EXPECT_TRUE(fs::exists(dir + "/" + other)) << dir;
    EXPECT_TRUE(fs::exists(dir + "/" + odd)) << dir;
  }
  EXPECT_EQ(remove_stale_stage_cgroups(parent), 0) << "nothing stale is left";

  live_cgroup.reset();
  for (const std::string& dir : dirs) {
    ::rmdir((dir + "/" + other).c_str());
    ::rmdir((dir + "/" + odd).c_str());
    ::rmdir(dir.c_str());
    EXPECT_FALSE(fs::exists(dir)) << dir;
  }
}

}  // namespace
}  // namespace cutor::sandbox
