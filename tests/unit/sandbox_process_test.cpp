// The sandbox end to end: run() with isolate=false (plain reaper) and isolate=true (box),
// and the workspace's refusal to follow planted links.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "sandbox/sandbox.h"
#include "sandbox/workspace.h"
#include "sandbox_test_util.h"

namespace cutor {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string make_temp_dir() {
  std::string templ = "/tmp/cutor-sbtest-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp");
  return templ;
}

SandboxLimits default_limits() {
  SandboxLimits l;
  l.cpu_time_ms = 5000;
  l.wall_time_ms = 10000;
  l.memory_bytes = 256ll << 20;
  l.processes = 64;
  l.output_bytes = 1 << 20;
  l.file_size_bytes = 16 << 20;
  return l;
}

using testing_util::read_file;

// True when some process on the host has `marker` in its command line.
bool process_with_marker_exists(const std::string& marker) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::string cmdline = read_file(entry.path().string() + "/cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(marker) != std::string::npos) return true;
  }
  return false;
}

std::string unique_marker() {
  std::random_device rd;
  return std::to_string(100000 + rd() % 800000);
}

class SandboxRunTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    root_ = make_temp_dir();
    SandboxOptions options;
    options.isolate = GetParam();
    options.workspace_bytes = 64ll << 20;
    sandbox_ = make_sandbox(options);
    workspace_ = sandbox_->make_workspace(root_ + "/ws", "sub");
  }
  void TearDown() override {
    workspace_.reset();
    fs::remove_all(root_);
  }

  SandboxSpec shell(const std::string& script) {
    SandboxSpec spec;
    spec.argv = {"sh", "-c", script};
    spec.env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "LC_ALL=C"};
    spec.workspace = workspace_.get();
    spec.limits = default_limits();
    return spec;
  }
  StageResult run(const SandboxSpec& spec) { return sandbox_->run(spec, std::stop_token()); }
  std::string box_cwd() const { return GetParam() ? std::string(kBoxWorkdir) : workspace_->path(); }

  std::string root_;
  std::unique_ptr<Sandbox> sandbox_;
  std::unique_ptr<Workspace> workspace_;
};

TEST_P(SandboxRunTest, InterleavesStdoutAndStderrInWriteOrder) {
  StageResult r = run(shell("echo a; sleep 0.05; echo b >&2; sleep 0.05; echo c"));
  EXPECT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  EXPECT_EQ(r.code, 0);
  EXPECT_FALSE(r.signal);
  EXPECT_EQ(r.stdout_data, "a\nc\n");
  EXPECT_EQ(r.stderr_data, "b\n");
  EXPECT_EQ(r.output, "a\nb\nc\n");
  EXPECT_GT(r.wall_time_us, 100000);
  EXPECT_GT(r.memory_bytes, 0);
}

TEST_P(SandboxRunTest, DeliversStdinByteExactIncludingNul) {
  SandboxSpec spec = shell("cat");
  std::string data(1 << 20, '\0');
  std::mt19937 gen(42);
  for (char& c : data) c = static_cast<char>(gen() & 0xff);
  data[0] = '\0';
  data[data.size() - 1] = '\0';
  spec.stdin_data = data;
  spec.limits.output_bytes = 2 << 20;
  StageResult r = run(spec);
  EXPECT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  EXPECT_TRUE(r.stdout_data == data) << "stdout differs, size " << r.stdout_data.size();
}

TEST_P(SandboxRunTest, NoDeadlockWhenProgramWritesMuchBeforeReading) {
  SandboxSpec spec = shell("head -c 10000000 /dev/zero | tr '\\0' x; wc -c");
  spec.stdin_data = std::string(10'000'000, 'i');
  spec.limits.output_bytes = 16 << 20;
  StageResult r = run(spec);
  EXPECT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  ASSERT_EQ(r.stdout_data.size(), 10'000'000u + std::string("10000000\n").size());
  EXPECT_EQ(r.stdout_data.substr(10'000'000), "10000000\n");
  EXPECT_EQ(r.stdout_data.find_first_not_of('x'), 10'000'000u);
}

TEST_P(SandboxRunTest, ProgramThatNeverReadsStdinEnds) {
  SandboxSpec spec = shell("echo done");
  spec.stdin_data = std::string(10'000'000, 'i');
  StageResult r = run(spec);
  EXPECT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "done\n");
}

TEST_P(SandboxRunTest, ReportsExitCode) {
  StageResult r = run(shell("echo out; exit 3"));
  EXPECT_EQ(r.status, StageStatus::kNonzeroExit) << r.stderr_data;
  EXPECT_EQ(r.code, 3);
  EXPECT_FALSE(r.signal);
  EXPECT_EQ(r.stdout_data, "out\n");
}

TEST_P(SandboxRunTest, ReportsSignal) {
  StageResult r = run(shell("kill -SEGV $$"));
  EXPECT_EQ(r.status, StageStatus::kSignaled) << r.stderr_data;
  EXPECT_EQ(r.signal, SIGSEGV);
  EXPECT_FALSE(r.code);
}

TEST_P(SandboxRunTest, WallTimeLimitKeepsEarlierOutput) {
  SandboxSpec spec = shell("echo before; sleep 10; echo after");
  spec.limits.wall_time_ms = 500;
  auto start = Clock::now();
  StageResult r = run(spec);
  auto elapsed = Clock::now() - start;
  EXPECT_EQ(r.status, StageStatus::kWallTimeLimitExceeded) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "before\n");
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_LT(elapsed, std::chrono::seconds(3));
  EXPECT_GE(r.wall_time_us, 500000);
}

TEST_P(SandboxRunTest, CpuTimeLimitStopsBusyLoop) {
  SandboxSpec spec = shell("while :; do :; done");
  spec.limits.cpu_time_ms = 300;
  auto start = Clock::now();
  StageResult r = run(spec);
  auto elapsed = Clock::now() - start;
  EXPECT_EQ(r.status, StageStatus::kTimeLimitExceeded) << r.stderr_data;
  EXPECT_GE(r.cpu_time_us, 300000);
  // Stopped by the supervisor's SIGKILL near the limit, not by the RLIMIT_CPU backstop (2 s).
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_LT(r.cpu_time_us, 1000000);
  EXPECT_LT(elapsed, std::chrono::seconds(10));
}

TEST_P(SandboxRunTest, CpuTimeCountsTheWholeTree) {
  // Each child uses less than the backstop; together they pass the limit.
  SandboxSpec spec = shell("for i in 1 2 3 4; do (while :; do :; done) & done; sleep 5");
  spec.limits.cpu_time_ms = 400;
  auto start = Clock::now();
  StageResult r = run(spec);
  EXPECT_EQ(r.status, StageStatus::kTimeLimitExceeded) << r.stderr_data;
  // Without counting the tree it would end OK after the 5 s sleep.
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(4));
}

TEST_P(SandboxRunTest, OutputLimitKeepsExactlyTheLimit) {
  SandboxSpec spec = shell("echo err >&2; yes");
  spec.limits.output_bytes = 1000;
  StageResult r = run(spec);
  EXPECT_EQ(r.status, StageStatus::kOutputLimitExceeded) << r.stderr_data;
  EXPECT_TRUE(r.truncated);
  ASSERT_EQ(r.stdout_data.size(), 1000u);
  EXPECT_EQ(r.stdout_data.substr(0, 4), "y\ny\n");
  EXPECT_EQ(r.stderr_data, "err\n");
  EXPECT_LE(r.output.size(), 2000u);
}

TEST_P(SandboxRunTest, FileSizeLimitRaisesSigxfsz) {
  SandboxSpec spec = shell("exec head -c 5000 /dev/zero > big");
  spec.limits.file_size_bytes = 1000;
  StageResult r = run(spec);
  EXPECT_EQ(r.status, StageStatus::kSignaled) << r.stderr_data;
  EXPECT_EQ(r.signal, SIGXFSZ);
}

TEST_P(SandboxRunTest, LeftoverProcessesAreGoneAfterRun) {
  const std::string marker = unique_marker();
  {
    // Positive control: the probe does see a live process by its marker.
    const std::string arg = "100." + marker + "9";
    pid_t probe = ::fork();
    if (probe == 0) {
      ::execl("/bin/sleep", "sleep", arg.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    bool seen = false;
    for (int i = 0; i < 100 && !seen; ++i) {
      seen = process_with_marker_exists(arg);
      if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(probe, SIGKILL);
    ::waitpid(probe, nullptr, 0);
    ASSERT_TRUE(seen);
  }
  // One daemon leaves the process group and session, one is orphaned inside it.
  SandboxSpec spec = shell("setsid sleep 100." + marker + "1 & (sleep 100." + marker +
                           "2 &) ; sleep 0.2; echo started");
  StageResult r = run(spec);
  EXPECT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "started\n");
  EXPECT_FALSE(process_with_marker_exists("100." + marker + "1"));
  EXPECT_FALSE(process_with_marker_exists("100." + marker + "2"));
}

TEST_P(SandboxRunTest, DaemonHoldingTheOutputPipeDoesNotHoldTheStage) {
  SandboxSpec spec = shell("(sleep 30; echo late) & echo early");
  auto start = Clock::now();
  StageResult r = run(spec);
  EXPECT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "early\n");
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
}

TEST_P(SandboxRunTest, CancelStopsQuickly) {
  SandboxSpec spec = shell("echo hi; sleep 100");
  std::stop_source stop;
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    stop.request_stop();
  });
  auto start = Clock::now();
  StageResult r = sandbox_->run(spec, stop.get_token());
  auto elapsed = Clock::now() - start;
  canceller.join();
  EXPECT_EQ(r.status, StageStatus::kSignaled) << r.stderr_data;
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_EQ(r.stdout_data, "hi\n");
  EXPECT_LT(elapsed, std::chrono::seconds(2));
}

TEST_P(SandboxRunTest, AlreadyCancelledTokenKillsAtOnce) {
  std::stop_source stop;
  stop.request_stop();
  auto start = Clock::now();
  StageResult r = sandbox_->run(shell("sleep 100"), stop.get_token());
  EXPECT_EQ(r.status, StageStatus::kSignaled) << r.stderr_data;
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
}

TEST_P(SandboxRunTest, CommandNotFoundIs127) {
  SandboxSpec spec = shell("");
  spec.argv = {"no-such-command-cutor"};
  StageResult r = run(spec);
  EXPECT_EQ(r.status, StageStatus::kNonzeroExit) << r.stderr_data;
  EXPECT_EQ(r.code, 127);
  EXPECT_NE(r.stderr_data.find("no-such-command-cutor"), std::string::npos) << r.stderr_data;
  EXPECT_NE(r.stderr_data.find("not found"), std::string::npos) << r.stderr_data;
}

TEST_P(SandboxRunTest, LooksUpCommandsInTheSpecPath) {
  // A PATH without /bin: `ls` is not found even though the server's PATH has it.
  SandboxSpec spec = shell("");
  spec.argv = {"ls"};
  spec.env = {"PATH=/nonexistent"};
  StageResult r = run(spec);
  EXPECT_EQ(r.code, 127);
}

TEST_P(SandboxRunTest, EnvironmentIsExactlySpecEnv) {
  SandboxSpec spec = shell("");
  spec.argv = {"env"};
  spec.env = {"PATH=/usr/bin:/bin", "KEY=value with spaces", "EMPTY="};
  StageResult r = run(spec);
  EXPECT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "PATH=/usr/bin:/bin\nKEY=value with spaces\nEMPTY=\n");
}

TEST_P(SandboxRunTest, WorkingDirectoryIsTheWorkspace) {
  workspace_->write_file("dir/hello.txt", "hello from host", false);
  SandboxSpec spec = shell("pwd; cat dir/hello.txt; echo; echo made > made.txt");
  StageResult r = run(spec);
  EXPECT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, box_cwd() + "\nhello from host\n");
  EXPECT_EQ(read_file(workspace_->path() + "/made.txt"), "made\n");
}

TEST_P(SandboxRunTest, ExecutableFilesRun) {
  workspace_->write_file("tool.sh", "#!/bin/sh\necho tool \"$@\"\n", true);
  workspace_->write_file("plain.sh", "echo x\n", false);
  SandboxSpec spec = shell("./tool.sh a b; ./plain.sh");
  StageResult r = run(spec);
  EXPECT_EQ(r.status, StageStatus::kNonzeroExit) << r.stderr_data;
  EXPECT_EQ(r.code, 126);  // plain.sh is not executable
  EXPECT_EQ(r.stdout_data, "tool a b\n");
}

TEST_P(SandboxRunTest, NoExtraFileDescriptorsLeak) {
  StageResult r = run(shell("ls /proc/self/fd"));
  EXPECT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "0\n1\n2\n3\n");  // 3 is ls's own directory fd
}

TEST_P(SandboxRunTest, ConsecutiveRunsShareTheWorkspace) {
  StageResult first = run(shell("echo 1 > state"));
  EXPECT_EQ(first.status, StageStatus::kOk) << first.stderr_data;
  StageResult r = run(shell("cat state; echo 2 >> state; cat state"));
  EXPECT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "1\n1\n2\n");
}

TEST_P(SandboxRunTest, DestroyingTheWorkspaceDoesNotFollowPlantedLinks) {
  const std::string outside = root_ + "/outside";
  fs::create_directories(outside + "/sub");
  { std::ofstream(outside + "/canary") << "alive"; }
  { std::ofstream(outside + "/sub/canary2") << "alive"; }
  // The untrusted program plants links to the outside and a deep tree.
  SandboxSpec spec = shell("ln -s " + outside + " evil; mkdir -p d/e; ln -s " + outside +
                           "/sub d/e/l; ln -s / root; ln -s " + outside +
                           "/canary file_link; i=0; while [ $i -lt 200 ]; do mkdir n; cd n; "
                           "i=$((i+1)); done; touch deep");
  StageResult r = run(spec);
  ASSERT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  const std::string path = workspace_->path();
  // Writing through a planted link is refused.
  EXPECT_THROW(workspace_->write_file("evil/x", "pwned", false), std::system_error);
  EXPECT_THROW(workspace_->write_file("file_link", "pwned", false), std::system_error);
  EXPECT_THROW(workspace_->write_file("d/e/l/y", "pwned", false), std::system_error);
  workspace_.reset();
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(read_file(outside + "/canary"), "alive");
  EXPECT_EQ(read_file(outside + "/sub/canary2"), "alive");
  EXPECT_FALSE(fs::exists(outside + "/x"));
  EXPECT_TRUE(fs::exists("/etc/passwd"));
}

// A workspace whose directory vanished: the stage cannot start, which is the host's fault.
class MissingWorkspace : public Workspace {
 public:
  const std::string& path() const override { return path_; }
  int dirfd() const override { return -1; }
  void write_file(std::string_view, std::string_view, bool) override {}
  void copy_from(const Workspace&) override {}

 private:
  std::string path_ = "/nonexistent/cutor-workspace";
};

TEST_P(SandboxRunTest, StartFailureIsInternalError) {
  MissingWorkspace missing;
  SandboxSpec spec = shell("echo should not run");
  spec.workspace = &missing;
  StageResult r = run(spec);
  EXPECT_EQ(r.status, StageStatus::kInternalError);
  EXPECT_EQ(r.stdout_data, "");
  EXPECT_NE(r.stderr_data.find("cutor: internal error"), std::string::npos) << r.stderr_data;
  EXPECT_NE(r.stderr_data.find("errno"), std::string::npos) << r.stderr_data;
}

TEST_P(SandboxRunTest, EmptyArgvIsInternalError) {
  SandboxSpec spec = shell("");
  spec.argv.clear();
  EXPECT_EQ(run(spec).status, StageStatus::kInternalError);
}

TEST_P(SandboxRunTest, ConcurrentRunsStayApart) {
  constexpr int kRuns = 4;
  std::vector<std::unique_ptr<Workspace>> workspaces;
  for (int i = 0; i < kRuns; ++i) {
    workspaces.push_back(sandbox_->make_workspace(root_ + "/many", "w" + std::to_string(i)));
  }
  std::vector<StageResult> results(kRuns);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRuns; ++i) {
    threads.emplace_back([&, i] {
      SandboxSpec spec = shell("echo " + std::to_string(i) + " > mine; sleep 0.3; ls; cat mine");
      spec.workspace = workspaces[i].get();
      spec.stdin_data = std::string(100000, 'a' + i);
      results[i] = sandbox_->run(spec, std::stop_token());
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kRuns; ++i) {
    EXPECT_EQ(results[i].status, StageStatus::kOk) << results[i].stderr_data;
    EXPECT_EQ(results[i].stdout_data, "mine\n" + std::to_string(i) + "\n");
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, SandboxRunTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Isolated" : "Plain";
                         });

class SandboxIsolatedOnlyTest : public SandboxRunTest {};

TEST_P(SandboxIsolatedOnlyTest, MemoryLimitIsReportedAsSuch) {
  SandboxSpec spec = shell("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived");
  spec.limits.memory_bytes = 32ll << 20;
  StageResult r = run(spec);
  EXPECT_EQ(r.status, StageStatus::kMemoryLimitExceeded) << r.stderr_data << r.stdout_data;
}

// The OOM killer takes one process; the box goes down with it at once (the program
// here would otherwise sleep on for 20 s), and the verdict is the memory limit.
TEST_P(SandboxIsolatedOnlyTest, OneOomKillEndsTheWholeBox) {
  SandboxSpec spec =
      shell("(x=$(head -c 200000000 /dev/zero | tr '\\0' a)) & sleep 20; echo survived");
  spec.limits.memory_bytes = 32ll << 20;
  spec.limits.wall_time_ms = 30000;
  spec.limits.cpu_time_ms = 30000;
  const auto start = Clock::now();
  StageResult r = run(spec);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(r.status, StageStatus::kMemoryLimitExceeded) << r.stderr_data << r.stdout_data;
  EXPECT_EQ(r.stdout_data, "");
  EXPECT_LT(seconds, 10) << "the box ran on after the OOM kill";
}

TEST_P(SandboxIsolatedOnlyTest, RunsAsUnprivilegedUserOwningTheWorkspace) {
  workspace_->write_file("f", "x", false);
  StageResult r = run(shell("id -u; echo more >> f; cat f"));
  EXPECT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  const std::string uid = r.stdout_data.substr(0, r.stdout_data.find('\n'));
  EXPECT_NE(uid, "0");
  EXPECT_EQ(r.stdout_data.substr(uid.size()), "\nxmore\n");
}

// Namespaces prepared ahead of time (the network one) or not, every stage gets its own
// fresh set. What outlives a stage's processes in its namespaces shows the difference: a
// TCP connection in TIME_WAIT (network) and a SysV shared memory segment (ipc). Each stage
// must see none of the previous one's, and loopback must work in each. (Namespace inode
// numbers cannot tell: the kernel recycles them once a namespace is freed.)
TEST_P(SandboxIsolatedOnlyTest, EveryStageGetsFreshNamespacesWithLoopback) {
  const char* kinds[] = {"net", "pid", "mnt", "ipc", "uts", "cgroup"};
  std::string script;
  for (const char* kind : kinds) script += std::string("readlink /proc/self/ns/") + kind + "; ";
  script +=
      "ipcs -m | grep -c '^0x' || true; python3 -c \"\n"
      "import socket\n"
      "print(sum(open(f).read().count(chr(10)) - 1 for f in ('/proc/net/tcp', '/proc/net/tcp6')))\n"
      "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
      "c = socket.create_connection(s.getsockname()); a, _ = s.accept(); a.close(); c.close()\n"
      "print('lo-up')\n"
      "\"; ipcmk -M 4096 >/dev/null && ipcs -m | grep -c '^0x'";
  std::set<std::string> host;
  for (const char* kind : kinds)
    host.insert(fs::read_symlink(std::string("/proc/self/ns/") + kind).string());
  for (int stage = 0; stage < 6; ++stage) {
    if (stage == 1) std::this_thread::sleep_for(std::chrono::milliseconds(200));  // pool fills
    StageResult r = run(shell(script));
    ASSERT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
    std::istringstream lines(r.stdout_data);
    std::string line;
    for (const char* kind : kinds) {
      ASSERT_TRUE(std::getline(lines, line));
      EXPECT_EQ(line.rfind(std::string(kind) + ":[", 0), 0u) << line;
      EXPECT_EQ(host.count(line), 0u) << "stage " << stage << " shares the host's " << line;
    }
    std::string rest;
    std::getline(lines, rest, '\0');
    EXPECT_EQ(rest, "0\n0\nlo-up\n1\n")
        << "stage " << stage << " (shm segments, tcp sockets, loopback, shm after ipcmk)\n"
        << r.stderr_data;
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, SandboxIsolatedOnlyTest, ::testing::Values(true),
                         [](const ::testing::TestParamInfo<bool>&) { return "Isolated"; });

}  // namespace
}  // namespace cutor
