// Prepared boxes, the box spawner and the teardown off the critical path, through the
// public Sandbox: what a run sees is the same as with a box built on demand, nothing of a
// stage outlives run(), and nothing of the Sandbox outlives its destruction.
// Needs root (namespaces, mounts, cgroups).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sandbox/box_pool.h"
#include "sandbox/sandbox.h"
#include "sandbox/workspace.h"
#include "sandbox_test_util.h"

namespace cutor {
namespace {

namespace fs = std::filesystem;

using testing_util::read_file;

// Children of this process (any thread's), with their command lines.
std::vector<std::pair<pid_t, std::string>> children() {
  std::vector<std::pair<pid_t, std::string>> found;
  for (const auto& task : fs::directory_iterator("/proc/self/task")) {
    std::istringstream list(read_file(task.path().string() + "/children"));
    pid_t pid;
    while (list >> pid) {
      std::string cmdline = read_file("/proc/" + std::to_string(pid) + "/cmdline");
      std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
      found.emplace_back(pid, cmdline);
    }
  }
  return found;
}

int count_children_named(const std::string& name) {
  int n = 0;
  for (const auto& [pid, cmdline] : children())
    if (cmdline.rfind(name, 0) == 0) ++n;
  return n;
}

// "policy nice slice" of process `pid`: fields 41 and 19 of its stat, se.slice of its sched.
std::string scheduling_of(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::istringstream stat(read_file(proc + "/stat"));
  std::string field;
  std::getline(stat, field, ')');  // pid and (comm)
  std::vector<std::string> fields;
  while (stat >> field) fields.push_back(field);  // fields[0] is field 3, state
  if (fields.size() <= 38) return "no field 41 in " + stat.str();
  std::istringstream sched(read_file(proc + "/sched"));
  std::string line, slice = "no se.slice";
  while (std::getline(sched, line))
    if (line.rfind("se.slice", 0) == 0) slice = line.substr(line.find_last_of(" \t") + 1);
  return fields[38] + " " + fields[16] + " " + slice;
}

// The slice of a process nobody has set one for (this one's main thread).
std::string default_slice() {
  const std::string ours = scheduling_of(::getpid());
  return ours.substr(ours.rfind(' ') + 1);
}

// The slice of stage work: kStageWorkSliceNs where the kernel takes a slice from
// sched_setattr (Linux 6.12 on), the default elsewhere. Asked of a thread of our own.
std::string stage_work_slice() {
  std::string slice;
  std::thread([&slice] {
    if (sandbox::set_scheduling(0, sandbox::Scheduling::kStageWork, 0) != 0) return;
    const std::string ours = scheduling_of(static_cast<pid_t>(::gettid()));
    slice = ours.substr(ours.rfind(' ') + 1);
  }).join();
  return slice;
}

// Every directory below this process's cgroups (each hierarchy, skipping roots) named like
// a stage cgroup of ours.
std::vector<std::string> stage_cgroups() {
  std::vector<std::string> found;
  const std::string marker = "stage-" + std::to_string(::getpid()) + "-";
  std::istringstream lines(read_file("/proc/self/cgroup"));
  std::string line;
  while (std::getline(lines, line)) {
    auto first = line.find(':'), second = line.find(':', first + 1);
    std::string controllers = line.substr(first + 1, second - first - 1);
    std::string path = line.substr(second + 1);
    if (controllers.rfind("name=", 0) == 0 || path == "/" || path.empty()) continue;
    std::vector<std::string> mounts;
    if (controllers.empty()) {
      mounts.push_back("/sys/fs/cgroup/unified");
      mounts.push_back("/sys/fs/cgroup");
    }
    std::istringstream names(controllers);
    std::string c;
    while (std::getline(names, c, ',')) mounts.push_back("/sys/fs/cgroup/" + c);
    for (const std::string& mount : mounts) {
      std::error_code ec;
      const fs::path root = mount + path;
      if (!fs::is_directory(root, ec)) continue;
      for (auto it = fs::recursive_directory_iterator(root, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_directory(ec) && it->path().filename().string().rfind(marker, 0) == 0)
          found.push_back(it->path());
      }
    }
  }
  return found;
}

// Processes on the host whose uid is `uid`, as "pid (comm) state ppid" lines.
// Only those in a pid namespace other than ours count: a box's processes never leave its
// namespace, while a host process may run as a box uid for reasons of its own (the
// adversarial suite, run beside this test, keeps two as victims).
std::string processes_of(uid_t uid) {
  std::string found;
  std::error_code ec;
  const fs::path own_pid_ns = fs::read_symlink("/proc/self/ns/pid", ec);
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    struct stat st;
    if (::stat(entry.path().c_str(), &st) != 0 || st.st_uid != uid) continue;
    if (fs::read_symlink(entry.path() / "ns/pid", ec) == own_pid_ns && !ec) continue;
    const std::string stat = read_file(entry.path().string() + "/stat");
    found += stat.substr(0, stat.find(' ', stat.rfind(')') + 3)) + "\n";
  }
  return found;
}

// Mount points on the host that could be a box's: below /run/cutor (where boxes build their
// root) or below `root` (this test's workspaces). Other tests mount their own meanwhile.
std::set<std::string> host_mount_points(const std::string& root) {
  std::set<std::string> points;
  std::istringstream lines(read_file("/proc/self/mountinfo"));
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string field;
    for (int i = 0; i < 5 && fields >> field; ++i) {
    }
    if (field.rfind("/run/cutor", 0) == 0 || field.rfind(root, 0) == 0) points.insert(field);
  }
  return points;
}

// Waits up to `seconds` for `done` to hold.
template <typename Done>
bool eventually(Done done, double seconds = 5) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

class SandboxPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "the pool tests need root";
    char dir[] = "/tmp/cutor-pooltest-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    root_ = dir;
  }
  void TearDown() override {
    workspace_.reset();
    sandbox_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  void start(int prepared_boxes, int64_t idle_ms = 500, std::string spawner_exe = CUTOR_BINARY) {
    SandboxOptions options;
    options.prepared_boxes = prepared_boxes;
    options.prepared_idle_ms = idle_ms;
    options.spawner_exe = std::move(spawner_exe);
    options.workspace_bytes = 16 << 20;
    sandbox_ = make_sandbox(options);
    workspace_ = sandbox_->make_workspace(root_, "ws");
  }

  StageResult run(const std::string& script, SandboxLimits limits = default_limits(),
                  std::vector<BindMount> read_only = {}) {
    SandboxSpec spec;
    spec.argv = {"sh", "-c", script};
    spec.env = {"PATH=/usr/bin:/bin", "HOME=/box", "LC_ALL=C"};
    spec.workspace = workspace_.get();
    spec.limits = limits;
    spec.read_only = std::move(read_only);
    return sandbox_->run(spec, std::stop_token());
  }

  static SandboxLimits default_limits() {
    SandboxLimits l;
    l.cpu_time_ms = 5000;
    l.wall_time_ms = 10000;
    l.memory_bytes = 256ll << 20;
    l.processes = 64;
    l.output_bytes = 1 << 20;
    l.file_size_bytes = 16 << 20;
    return l;
  }

  uid_t box_uid() const {
    return dynamic_cast<const sandbox::HostWorkspace&>(*workspace_).owner_uid();
  }

  // Runs once and waits until the pool holds `n` ready boxes.
  void warm_up(int n) {
    StageResult r = run("true");
    ASSERT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
    ASSERT_TRUE(eventually([&] { return count_children_named("cutor-box-init") >= n; }))
        << "the pool did not fill";
  }

  std::string root_;
  std::unique_ptr<Sandbox> sandbox_;
  std::unique_ptr<Workspace> workspace_;
};

TEST_F(SandboxPoolTest, NothingOfAnyStageOutlivesTheSandbox) {
  const std::set<std::string> mounts_before = host_mount_points(root_);
  start(2);
  for (int i = 0; i < 20; ++i) {
    StageResult r = run("echo run " + std::to_string(i) + "; echo $(id -un) >> /box/log");
    ASSERT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
    EXPECT_EQ(r.stdout_data, "run " + std::to_string(i) + "\n");
  }
  EXPECT_EQ(read_file(workspace_->path() + "/log").size(), 20u * std::string("cutor\n").size())
      << "every run sees the same workspace";
  EXPECT_GE(count_children_named("cutor-spawner"), 1);
  sandbox_.reset();  // the workspace (and its uid lease) outlive it, as in the server
  EXPECT_EQ(children(), (std::vector<std::pair<pid_t, std::string>>{}));
  EXPECT_EQ(stage_cgroups(), std::vector<std::string>{});
  std::set<std::string> mounts_after = host_mount_points(root_);
  mounts_after.erase(workspace_->path());  // the workspace's own tmpfs, still in use
  EXPECT_EQ(mounts_after, mounts_before) << "a box's mount reached the host";
  EXPECT_EQ(processes_of(box_uid()), "");
}

TEST_F(SandboxPoolTest, ADaemonLeftBehindIsDeadWhenRunReturns) {
  start(2);
  warm_up(2);
  for (int i = 0; i < 3; ++i) {
    StageResult r =
        run("setsid sleep 100 </dev/null >/dev/null 2>&1 & "
            "(trap '' TERM HUP; sleep 100) </dev/null >/dev/null 2>&1 & echo started");
    ASSERT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
    EXPECT_EQ(r.stdout_data, "started\n");
    // No waiting: run() returns only once the box's namespace is empty.
    EXPECT_EQ(processes_of(box_uid()), "") << "a process of the stage outlived run()";
  }
}

// Boxes forked by the spawner bind its /etc and /dev templates read-only: the same files a
// box builds for itself, /etc/passwd naming this box's user through the link, devices that
// work, a writable /dev/shm of the box's own; and nothing a box does reaches the next.
TEST_F(SandboxPoolTest, SpawnedBoxesShareReadOnlyEtcAndDevTemplates) {
  start(2);
  warm_up(2);
  StageResult r =
      run("grep ' /etc \\| /dev ' /proc/self/mounts | cut -d' ' -f1,2,4 | cut -d, -f1; "
          "readlink /etc/passwd; grep -c \"^cutor:x:$(id -u):\" /etc/passwd; id -gn; "
          "cat /etc/hostname; test -s /etc/ld.so.cache && echo cache; "
          "for p in /etc/x /etc/passwd /dev/x /.cutor/passwd /.cutor/x; do "
          "(echo x >$p) 2>/dev/null && echo wrote $p; done; "
          "head -c 3 /dev/zero | od -An -c | tr -d ' '; echo x >/dev/null && echo null ok; "
          "echo shm >/dev/shm/mine && cat /dev/shm/mine; ls /dev | tr '\\n' ' '");
  ASSERT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  EXPECT_EQ(r.stdout_data,
            "cutor-templates /etc ro\ncutor-templates /dev ro\n/.cutor/passwd\n1\ncutor\n"
            "cutor\ncache\n\\0\\0\\0\nnull ok\nshm\n"
            "fd full null random shm stderr stdin stdout urandom zero ");
  warm_up(2);
  r = run("ls /dev/shm; cat /etc/passwd | head -1 | cut -d: -f1");
  ASSERT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "cutor\n") << "the last box's /dev/shm reached this one";
}

// A spawned box's mount namespace is a copy of the spawner's template: its root is the
// template's read-only tmpfs, and only /tmp, /proc, /dev/shm, /.cutor and /box are its own.
// Nothing else of the host is mounted.
TEST_F(SandboxPoolTest, SpawnedBoxesStartFromTheTemplateRoot) {
  start(2);
  warm_up(2);
  for (int i = 0; i < 2; ++i) {
    StageResult r =
        run("while read -r dev at type opts rest; do "
            "case $at in /|/tmp|/proc|/dev/shm|/.cutor|/box) echo $dev $at ${opts%%,*};; "
            "/usr|/etc|/etc/*|/dev) ;; *) echo unexpected $at;; esac; done </proc/self/mounts | "
            "LC_ALL=C sort; "
            "grep -c '^cutor:' /.cutor/passwd; (echo x >/.cutor/y) 2>/dev/null || echo refused");
    ASSERT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
    EXPECT_EQ(r.stdout_data,
              "cutor-root / ro\ncutor-shm /dev/shm rw\ncutor-tmp /tmp rw\ncutor-users /.cutor ro\n"
              "proc /proc rw\ntmpfs /box rw\n1\nrefused\n");
  }
}

// A box with store paths (a Nix environment's closure) starts from the template too: each
// path is bound read-only below a read-only /nix of its own, a store path that is a link is
// the same link, and nothing else of the host's store is there.
TEST_F(SandboxPoolTest, StorePathsAreBoundIntoTheTemplatesCopy) {
  const fs::path store = fs::path(root_) / "store";
  fs::create_directories(store / "aaa-dir");
  std::ofstream(store / "aaa-dir" / "hello") << "hi\n";
  std::ofstream(store / "bbb-file") << "file\n";
  std::ofstream(store / "zzz-not-in-the-closure") << "secret\n";
  fs::create_symlink("/nix/store/aaa-dir/hello", store / "ccc-link");
  std::vector<BindMount> closure;
  for (const char* name : {"aaa-dir", "bbb-file", "ccc-link"})
    closure.push_back({(store / name).string(), std::string("/nix/store/") + name});
  start(2);
  for (int i = 0; i < 2; ++i) {
    StageResult r =
        run("cat /nix/store/aaa-dir/hello /nix/store/bbb-file; readlink /nix/store/ccc-link; "
            "cat /nix/store/ccc-link; ls /nix/store | tr '\\n' ' '; echo; "
            "awk '$2 ~ /^\\/nix/ {split($4, o, \",\"); print $1 == \"cutor-nix\" ? $1 : \"bind\", "
            "$2, o[1]}' /proc/self/mounts | LC_ALL=C sort; "
            "(echo x >/nix/store/new) 2>/dev/null || echo nix ro; "
            "(echo x >/nix/store/aaa-dir/x) 2>/dev/null || echo store path ro",
            default_limits(), closure);
    ASSERT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
    EXPECT_EQ(r.stdout_data,
              "hi\nfile\n/nix/store/aaa-dir/hello\nhi\naaa-dir bbb-file ccc-link \n"
              "bind /nix/store/aaa-dir ro\nbind /nix/store/bbb-file ro\ncutor-nix /nix ro\n"
              "nix ro\nstore path ro\n");
  }
  StageResult r = run("ls -A /nix | wc -l");  // and a box without a closure: /nix is empty
  ASSERT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "0\n");
}

TEST_F(SandboxPoolTest, APreparedBoxGetsTheRunsIdentityLimitsAndAFreshRoot) {
  start(2);
  warm_up(2);
  StageResult r =
      run("tr -d '\\0' </proc/1/cmdline; echo; id -un; grep -c . /etc/passwd; touch /etc/x "
          "2>/dev/null || "
          "echo etc ro; grep ' /box ' /proc/self/mounts | grep -c nosuid; hostname; "
          "cut -d' ' -f19,41 /proc/self/stat /proc/1/stat; "
          "grep -h '^se.slice' /proc/self/sched /proc/1/sched | tr -s ' ' | cut -d' ' -f3");
  ASSERT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  // The box was built in the background (nice 19); its stage, init included, runs at our
  // nice as SCHED_OTHER (policy 0). Init has stage work's short slice, the program (here
  // grep) the default one.
  errno = 0;
  const int our_nice = ::getpriority(PRIO_PROCESS, 0);
  ASSERT_EQ(errno, 0);
  const std::string nice_policy = std::to_string(our_nice) + " 0\n";
  EXPECT_EQ(r.stdout_data, "cutor-box-init\ncutor\n3\netc ro\n1\ncutor\n" + nice_policy +
                               nice_policy + default_slice() + "\n" + stage_work_slice() + "\n");

  warm_up(2);
  SandboxLimits small = default_limits();
  small.memory_bytes = 32 << 20;
  r = run("python3 -c 'b = bytearray(256 << 20); print(len(b))'", small);
  EXPECT_EQ(r.status, StageStatus::kMemoryLimitExceeded) << r.stderr_data;

  warm_up(2);
  SandboxLimits few = default_limits();
  few.processes = 4;
  r =
      run("python3 -c 'import os, time\nn = 0\nfor i in range(8):\n  try:\n    pid = os.fork()\n"
          "  except OSError:\n    continue\n  if pid == 0:\n    time.sleep(1)\n    os._exit(0)\n"
          "  n += 1\nprint(n)'",
          few);
  EXPECT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  EXPECT_LE(std::atoi(r.stdout_data.c_str()), 3) << "forks beyond the process limit succeeded";
  // The memory limit of an earlier run did not stay with the boxes made after it.
  warm_up(2);
  r = run("python3 -c 'b = bytearray(64 << 20); print(len(b))'");
  EXPECT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, std::to_string(64 << 20) + "\n");
}

pid_t spawner_pid() {
  for (const auto& [pid, cmdline] : children())
    if (cmdline.rfind("cutor-spawner", 0) == 0) return pid;
  return -1;
}

void kill_and_wait_dead(pid_t pid) {
  ::kill(pid, SIGKILL);
  ASSERT_TRUE(eventually([pid] {
    const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    const auto paren = stat.rfind(')');
    return paren == std::string::npos || stat.compare(paren + 2, 1, "Z") == 0;
  }));
}

// Someone on the host kills the spawner or the prepared boxes: stages still run (the
// spawner is restarted from the cutor binary, the pool's boxes are made again).
TEST_F(SandboxPoolTest, KilledSpawnerAndPreparedBoxesAreNotFatal) {
  start(2);
  warm_up(2);
  std::vector<pid_t> killed;
  for (const auto& [pid, cmdline] : children()) {
    if (cmdline.rfind("cutor-box-init", 0) == 0 || cmdline.rfind("cutor-spawner", 0) == 0) {
      ::kill(pid, SIGKILL);
      killed.push_back(pid);
    }
  }
  ASSERT_GE(killed.size(), 3u);  // the spawner, two ready boxes (and a finished one)
  // Dead (zombies) before the next run: a box killed while a stage is being handed to it
  // is that stage's internal error, as when a box is killed mid-run.
  for (pid_t pid : killed) {
    EXPECT_TRUE(eventually([pid] {
      const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
      const auto paren = stat.rfind(')');
      return paren == std::string::npos || stat.compare(paren + 2, 1, "Z") == 0;
    }));
  }
  for (int i = 0; i < 5; ++i) {
    StageResult r = run("echo still " + std::to_string(i));
    ASSERT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
    EXPECT_EQ(r.stdout_data, "still " + std::to_string(i) + "\n");
  }
  const SandboxHealth health = sandbox_->health();
  EXPECT_TRUE(health.ok) << health.problem;
  EXPECT_EQ(health.spawner_restarts, 1);
  EXPECT_GT(spawner_pid(), 0) << "no spawner after the restart";
  sandbox_.reset();
  std::string left;
  for (const auto& [pid, cmdline] : children())
    left += read_file("/proc/" + std::to_string(pid) + "/stat") + "\n";
  EXPECT_EQ(left, "") << "children left after the sandbox (their stat lines)";
  EXPECT_EQ(stage_cgroups(), std::vector<std::string>{});
}

// A spawner that cannot be restarted fails stages closed (never a fork of this process)
// and says why in health(); a restart that works later brings it back.
TEST_F(SandboxPoolTest, SpawnerThatCannotBeRestartedFailsStagesClosed) {
  for (const std::string& exe : {std::string(), std::string("/bin/false")}) {
    SCOPED_TRACE("spawner_exe '" + exe + "'");
    start(0, 500, exe);
    ASSERT_EQ(run("echo before").status, StageStatus::kOk);
    const pid_t spawner = spawner_pid();
    ASSERT_GT(spawner, 0);
    kill_and_wait_dead(spawner);
    for (int i = 0; i < 2; ++i) {
      StageResult r = run("echo after");
      EXPECT_EQ(r.status, StageStatus::kInternalError);
      EXPECT_EQ(r.stdout_data, "");
      EXPECT_NE(r.stderr_data.find("box spawner"), std::string::npos) << r.stderr_data;
    }
    const SandboxHealth health = sandbox_->health();
    EXPECT_FALSE(health.ok);
    EXPECT_EQ(health.spawner_restarts, 0);
    EXPECT_NE(health.problem, "");
    EXPECT_EQ(count_children_named("cutor-box-init"), 0) << "a box was forked another way";
    sandbox_.reset();
    workspace_.reset();
    EXPECT_EQ(children(), (std::vector<std::pair<pid_t, std::string>>{}));
  }
}

TEST_F(SandboxPoolTest, PreparedBoxesAreDiscardedWhenIdle) {
  start(2, /*idle_ms=*/100);
  // One is enough to see discarded: on a busy host (boxes are built at background priority) the
  // first may be discarded before the second is ready.
  warm_up(1);
  EXPECT_TRUE(eventually([] { return count_children_named("cutor-box-init") == 0; }, 3))
      << "prepared boxes stayed after the idle time";
  EXPECT_TRUE(eventually([] { return stage_cgroups().empty(); }, 3));
  StageResult r = run("echo again");  // built on demand
  EXPECT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "again\n");
}

// A box that could not be made (here: its cgroup, twice) is tried again after a short
// wait, not given up for good: the pool serves prepared boxes again once making one works.
TEST_F(SandboxPoolTest, ThePoolRecoversFromFailedBoxes) {
  std::atomic<int> names = 0;
  sandbox::BoxReaper reaper;
  sandbox::BoxPoolOptions options;
  options.size = 1;
  options.idle_ms = 10000;
  options.next_cgroup_name = [&names] {
    ++names;  // the pool's thread only
    const std::string name =
        "stage-" + std::to_string(::getpid()) + "-recover-" + std::to_string(names);
    return names <= 2 ? "no-such-parent/" + name : name;  // mkdir fails: ENOENT
  };
  std::optional<sandbox::PreparedBox> box;
  {
    sandbox::BoxPool pool(options, reaper);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(eventually([&] { return (box = pool.take(default_limits())).has_value(); }))
        << "no prepared box after " << names.load() << " tries";
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300))
        << "tried again at once (100 ms, then 200 ms, are the waits)";
    EXPECT_EQ(names.load(), 3);
  }
  if (box) {
    ::syscall(SYS_pidfd_send_signal, box->pidfd.get(), SIGKILL, nullptr, 0);
    reaper.adopt(box->pid, std::move(box->cgroup), std::move(box->net));
  }
}

// A box may be taken the moment the pool has it, before its init has run an instruction of
// its own: the stage's switch of init to stage work (Sandbox::run, at the take) must stick
// whenever init gets to run. A busy thread per cpu starves the background init until then.
// Linux 6.12 and later take a task's slice from sched_setattr; there stage work has the
// shortest one (sandbox/box.h, Scheduling).
TEST_F(SandboxPoolTest, StageWorkHasTheShortestSliceWhereTheKernelTakesOne) {
  struct utsname host;
  ASSERT_EQ(::uname(&host), 0);
  int major = 0, minor = 0;
  ASSERT_EQ(std::sscanf(host.release, "%d.%d", &major, &minor), 2) << host.release;
  if (major > 6 || (major == 6 && minor >= 12))
    EXPECT_EQ(stage_work_slice(), std::to_string(sandbox::kStageWorkSliceNs));
  else
    EXPECT_EQ(stage_work_slice(), default_slice()) << "no custom slices before 6.12";
  EXPECT_NE(default_slice(), "no se.slice");
}

TEST_F(SandboxPoolTest, ABoxTakenBeforeItsInitRanKeepsTheStagesPriority) {
  sandbox::BoxReaper reaper;
  sandbox::BoxPoolOptions options;
  options.size = 1;
  options.idle_ms = 10000;
  std::atomic<int> names = 0;
  options.next_cgroup_name = [&names] {
    return "stage-" + std::to_string(::getpid()) + "-early-" + std::to_string(++names);
  };
  sandbox::BoxPool pool(options, reaper);
  const std::string background = "0 19 " + default_slice();
  const std::string stage_work = "0 0 " + stage_work_slice();
  for (int i = 0; i < 6; ++i) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> busy;
    for (unsigned c = 0; c < std::max(1u, std::thread::hardware_concurrency()); ++c)
      busy.emplace_back([&stop] {
        while (!stop.load(std::memory_order_relaxed)) {
        }
      });
    std::optional<sandbox::PreparedBox> box;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!(box = pool.take(default_limits())) && std::chrono::steady_clock::now() < deadline) {
    }
    // Built in the background from its birth: its forker set it.
    const std::string born = box ? scheduling_of(box->pid) : "";
    const int set_error =
        box ? sandbox::set_scheduling(box->pid, sandbox::Scheduling::kStageWork, 0) : 0;
    stop = true;
    for (std::thread& t : busy) t.join();
    ASSERT_TRUE(box.has_value()) << "the pool made no box in 10 s";
    EXPECT_EQ(set_error, 0) << std::strerror(set_error);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // init runs, then waits
    EXPECT_EQ(born, background) << "take " << i << ": init's policy, nice and slice when taken";
    EXPECT_EQ(scheduling_of(box->pid), stage_work)
        << "take " << i << ": init's policy, nice and slice once it ran";
    ::syscall(SYS_pidfd_send_signal, box->pidfd.get(), SIGKILL, nullptr, 0);
    reaper.adopt(box->pid, std::move(box->cgroup), std::move(box->net));
  }
}

TEST_F(SandboxPoolTest, WithoutPreparedBoxesNothingWaits) {
  start(0);
  for (int i = 0; i < 3; ++i) {
    StageResult r = run("echo on demand");
    ASSERT_EQ(r.status, StageStatus::kOk) << r.stderr_data;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(count_children_named("cutor-box-init"), 0);
}

}  // namespace
}  // namespace cutor
