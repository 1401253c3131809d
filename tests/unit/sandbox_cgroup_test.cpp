// Stage cgroups below the test process's own cgroup. Needs root. What this host offers is
// derived here independently from /proc/self/cgroup and /proc/self/mounts.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "sandbox/cgroup.h"

namespace cutor::sandbox {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

// controller -> own path, and controller -> mount point, as the kernel reports them.
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

// Where a usable v1 controller puts stage `name` under `parent`; "" when the controller
// is not usable (not mounted, or the test's own cgroup is the hierarchy root).
std::string expected_dir(const std::string& controller, const std::string& parent,
                         const std::string& name = "") {
  std::string own = own_paths()[controller];
  std::string mount = mount_of(controller);
  if (own.empty() || own == "/" || mount.empty()) return "";
  return mount + own + "/" + parent + (name.empty() ? "" : "/" + name);
}

// Burns `cpu` of cpu time (not wall time: the host may be busy).
void spin_for(std::chrono::milliseconds cpu) {
  auto used = [] {
    struct timespec ts;
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
  };
  auto start = used();
  volatile uint64_t x = 0;
  while (used() - start < cpu) x = x + 1;
}

class CgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "the cgroup tests need root";
    parent_ = "cutor-test-" + std::to_string(::getpid());
    // Orphaned grandchildren come back to us, so every process started here is reaped here.
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    if (describe_cgroup_support().rfind("none", 0) == 0)
      GTEST_SKIP() << "no usable cgroup controller here: " << describe_cgroup_support();
  }
  void TearDown() override {
    for (pid_t pid : children_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
  }

  // A child blocked until `go` is written, then running `body`.
  template <typename Body>
  pid_t start_child(int& go_fd, Body body) {
    int go[2];
    EXPECT_EQ(::pipe(go), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(go[1]);
      char c;
      if (::read(go[0], &c, 1) != 1) ::_exit(99);
      body();
      ::_exit(0);
    }
    ::close(go[0]);
    go_fd = go[1];
    children_.push_back(pid);
    return pid;
  }

  int wait_child(pid_t pid) {
    int status = 0;
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
    std::erase(children_, pid);
    return status;
  }

  std::string parent_;
  std::vector<pid_t> children_;
};

TEST_F(CgroupTest, DescriptionMatchesThisHost) {
  std::string text = describe_cgroup_support();
  auto own = own_paths();
  for (const char* c : {"memory", "pids", "cpuacct"}) {
    if (own[c] == "/") {
      EXPECT_NE(text.find(std::string(c) + ": own cgroup is the hierarchy root"), std::string::npos)
          << text;
    }
  }
  if (own["memory"] != "/" && !mount_of("memory").empty() && text.rfind("v2", 0) != 0) {
    EXPECT_NE(text.find("v1 memory"), std::string::npos) << text;
  }
}

TEST_F(CgroupTest, RefusesNamesThatLeaveTheParent) {
  SandboxLimits limits;
  for (const char* bad : {"", "..", ".", "a/b", "x\ny"}) {
    try {
      create_stage_cgroup(parent_, bad, limits);
      ADD_FAILURE() << "accepted name '" << bad << "'";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code().value(), EINVAL);
    }
  }
  EXPECT_THROW(create_stage_cgroup("../escape", "stage", limits), std::system_error);
  EXPECT_THROW(create_stage_cgroup("/abs", "stage", limits), std::system_error);
}

TEST_F(CgroupTest, WritesLimitsAndRemovesEverything) {
  SandboxLimits limits;
  limits.memory_bytes = 64 << 20;
  limits.processes = 17;
  std::string memory = expected_dir("memory", parent_, "stage-a");
  std::string pids = expected_dir("pids", parent_, "stage-a");
  ASSERT_FALSE(memory.empty() && pids.empty()) << "no v1 controller to check on this host";
  {
    auto cgroup = create_stage_cgroup(parent_, "stage-a", limits);
    if (!memory.empty()) {
      ASSERT_TRUE(exists(memory)) << memory;
      EXPECT_EQ(read_file(memory + "/memory.limit_in_bytes"), "67108864\n");
      if (exists(memory + "/memory.memsw.limit_in_bytes")) {
        EXPECT_EQ(read_file(memory + "/memory.memsw.limit_in_bytes"), "67108864\n");
      }
      EXPECT_EQ(read_file(memory + "/cgroup.procs"), "");
    }
    if (!pids.empty()) {
      EXPECT_EQ(read_file(pids + "/pids.max"), "17\n");
    }
    EXPECT_FALSE(cgroup->oom_killed());
  }
  if (!memory.empty()) {
    EXPECT_FALSE(exists(memory));
    EXPECT_FALSE(exists(expected_dir("memory", parent_))) << "empty parent left behind";
  }
  if (!pids.empty()) {
    EXPECT_FALSE(exists(pids));
  }
}

TEST_F(CgroupTest, SharedParentStaysWhileAStageUsesIt) {
  SandboxLimits limits;
  limits.memory_bytes = 32 << 20;
  std::string parent_dir = expected_dir("memory", parent_);
  if (parent_dir.empty())
    GTEST_SKIP() << "memory controller not usable: " << describe_cgroup_support();
  auto first = create_stage_cgroup(parent_, "one", limits);
  auto second = create_stage_cgroup(parent_, "two", limits);
  first.reset();
  EXPECT_TRUE(exists(parent_dir + "/two"));
  second.reset();
  EXPECT_FALSE(exists(parent_dir));
}

TEST_F(CgroupTest, MeasuresCpuTimeOfTheWholeTree) {
  SandboxLimits limits;
  limits.memory_bytes = 128 << 20;
  auto cgroup = create_stage_cgroup(parent_, "cpu", limits);
  int done[2];
  ASSERT_EQ(::pipe(done), 0);
  int go = -1;
  pid_t child = start_child(go, [&] {
    // A grandchild's time reaches the cgroup total even after it was reaped.
    pid_t grandchild = ::fork();
    if (grandchild == 0) {
      spin_for(std::chrono::milliseconds(200));
      ::_exit(0);
    }
    ::waitpid(grandchild, nullptr, 0);
    spin_for(std::chrono::milliseconds(200));
    (void)!::write(done[1], "d", 1);
    ::pause();
  });
  ::close(done[1]);
  EXPECT_EQ(cgroup->cpu_time_us(), 0);
  cgroup->add_process(child);
  ASSERT_EQ(::write(go, "g", 1), 1);
  ::close(go);
  char c;
  ASSERT_EQ(::read(done[0], &c, 1), 1);
  ::close(done[0]);
  int64_t used = cgroup->cpu_time_us();
  EXPECT_GE(used, 330000) << "child 200 ms + reaped grandchild 200 ms";
  EXPECT_LT(used, 3000000);
  cgroup->kill_all();
  int status = wait_child(child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
}

TEST_F(CgroupTest, MemoryLimitKillsAndIsReported) {
  if (expected_dir("memory", parent_).empty())
    GTEST_SKIP() << "memory controller not usable: " << describe_cgroup_support();
  SandboxLimits limits;
  limits.memory_bytes = 32 << 20;
  auto cgroup = create_stage_cgroup(parent_, "oom", limits);
  int go = -1;
  pid_t child = start_child(go, [] {
    const size_t size = 128 << 20;
    char* p = static_cast<char*>(::malloc(size));
    for (size_t i = 0; i < size; i += 4096) p[i] = 1;  // touched: really used
    ::_exit(0);
  });
  cgroup->add_process(child);
  ASSERT_EQ(::write(go, "g", 1), 1);
  ::close(go);
  int status = wait_child(child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "a touched 4x allocation survived the memory limit";
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_TRUE(cgroup->oom_killed());
  EXPECT_GE(cgroup->memory_peak_bytes(), 16 << 20);
  EXPECT_LE(cgroup->memory_peak_bytes(), 34 << 20);
}

TEST_F(CgroupTest, UntouchedReservationIsNotAnOom) {
  if (expected_dir("memory", parent_).empty())
    GTEST_SKIP() << "memory controller not usable: " << describe_cgroup_support();
  SandboxLimits limits;
  limits.memory_bytes = 32 << 20;
  auto cgroup = create_stage_cgroup(parent_, "reserve", limits);
  int go = -1;
  pid_t child = start_child(go, [] {
    // Reserved, never touched. mmap, not malloc: ASan's allocator would write shadow
    // memory for a malloc'd block and so touch it.
    void* p = ::mmap(nullptr, size_t{8} << 30, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ::_exit(p != MAP_FAILED ? 0 : 3);
  });
  cgroup->add_process(child);
  ASSERT_EQ(::write(go, "g", 1), 1);
  ::close(go);
  int status = wait_child(child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(cgroup->oom_killed());
}

TEST_F(CgroupTest, KillAllAndDestructorLeaveNothing) {
  SandboxLimits limits;
  limits.memory_bytes = 64 << 20;
  std::string memory = expected_dir("memory", parent_, "kill");
  auto cgroup = create_stage_cgroup(parent_, "kill", limits);
  int go = -1;
  pid_t child = start_child(go, [] {
    ::signal(SIGTERM, SIG_IGN);
    for (int i = 0; i < 5; ++i)
      if (::fork() == 0) {
        ::setsid();  // out of the process group: only the cgroup still finds them
        for (;;) ::pause();
      }
    for (;;) ::pause();
  });
  cgroup->add_process(child);
  ASSERT_EQ(::write(go, "g", 1), 1);
  ::close(go);
  if (!memory.empty()) {
    for (int i = 0; i < 200; ++i) {
      std::stringstream procs(read_file(memory + "/cgroup.procs"));
      int count = 0;
      pid_t p;
      while (procs >> p) ++count;
      if (count == 6) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  cgroup.reset();  // kills, then removes
  int status = wait_child(child);
  EXPECT_TRUE(WIFSIGNALED(status));
  int reaped = 0;
  for (int i = 0; i < 200 && reaped < 5; ++i) {
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      EXPECT_TRUE(WIFSIGNALED(status));
      ++reaped;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  EXPECT_EQ(reaped, 5) << "grandchildren survived";
  if (!memory.empty()) {
    EXPECT_FALSE(exists(memory));
    EXPECT_FALSE(exists(expected_dir("memory", parent_)));
  }
}

}  // namespace
}  // namespace cutor::sandbox
