// start_box with a hand-made BoxPlan: what the box's program can see and do.
// Needs root (namespaces, mounts, uid switch).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "sandbox/box.h"
#include "sandbox_test_util.h"

namespace cutor::sandbox {
namespace {

// Unique per test process (ctest -j runs tests of this file in parallel) and away from the
// server's own range, so rlimits per uid and "processes of this uid" checks stay exact.
const uid_t kBoxUid = 1000000 + static_cast<uid_t>(::getpid()) * 8;
const gid_t kBoxGid = kBoxUid;

std::string read_all(int fd) {
  std::string text;
  ::lseek(fd, 0, SEEK_SET);
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) text.append(buffer, n);
  return text;
}

int memfd_with(const std::string& content) {
  int fd = ::memfd_create("box-test", MFD_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  ::lseek(fd, 0, SEEK_SET);
  return fd;
}

// Processes on the host owned by `uid` (the box's leftovers would be).
int count_processes_of(uid_t uid) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    struct stat st;
    if (::stat(entry.path().c_str(), &st) == 0 && st.st_uid == uid) ++count;
  }
  return count;
}

// For a box that hangs: every process descended from `root` with its state, the kernel
// function it waits in and its kernel stack, so a failure says where it is stuck.
std::string describe_process_tree(pid_t root) {
  std::vector<pid_t> tree = {root};
  for (size_t grown = 1; grown != 0;) {
    grown = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      std::string name = entry.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      const pid_t pid = std::stoi(name);
      if (std::find(tree.begin(), tree.end(), pid) != tree.end()) continue;
      const std::string status = testing_util::read_file(entry.path().string() + "/status");
      const size_t at = status.find("\nPPid:\t");
      if (at == std::string::npos) continue;
      const pid_t parent = std::atoi(status.c_str() + at + 7);
      if (std::find(tree.begin(), tree.end(), parent) == tree.end()) continue;
      tree.push_back(pid);
      ++grown;
    }
  }
  std::string text;
  for (pid_t pid : tree) {
    const std::string dir = "/proc/" + std::to_string(pid);
    const std::string status = testing_util::read_file(dir + "/status");
    const size_t state = status.find("State:");
    if (state == std::string::npos) continue;  // gone meanwhile
    text += "pid " + std::to_string(pid) + " " + testing_util::read_file(dir + "/comm") +
            status.substr(state, status.find('\n', state) - state) + "\nwchan " +
            testing_util::read_file(dir + "/wchan") + "\nsyscall " +
            testing_util::read_file(dir + "/syscall") + testing_util::read_file(dir + "/stack") +
            "\n";
  }
  return text;
}

struct BoxRun {
  std::string out, err;
  BoxStatus status;
  bool got_status = false;
  double seconds = 0;
};

class BoxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "the box tests need root";
    char dir[] = "/tmp/cutor-box-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    workspace_ = dir;
    ASSERT_EQ(::chown(dir, kBoxUid, kBoxGid), 0);
    ASSERT_EQ(::chmod(dir, 0755), 0);
    plan_.env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/box", "LANG=C"};
    plan_.workspace_host_path = workspace_;
    plan_.tmp_bytes = 4 << 20;
    plan_.uid = kBoxUid;
    plan_.gid = kBoxGid;
    plan_.limits.cpu_time_ms = 10000;
    plan_.limits.wall_time_ms = 10000;
    plan_.limits.memory_bytes = 256 << 20;
    plan_.limits.processes = 64;
    plan_.limits.output_bytes = 1 << 20;
    plan_.limits.file_size_bytes = 8 << 20;
  }
  void TearDown() override {
    if (workspace_.empty()) return;
    // A box whose init was killed may still be tearing down its mount namespace (which
    // holds the workspace as a bind source) for a moment: retry briefly, then say so
    // rather than leave the directory behind silently.
    std::error_code ec;
    for (int i = 0; i < 100; ++i) {
      ec.clear();
      std::filesystem::remove_all(workspace_, ec);
      if (!ec) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "cannot remove " << workspace_ << ": " << ec.message();
  }

  BoxRun run(std::vector<std::string> argv, const std::string& stdin_data = "") {
    plan_.argv = std::move(argv);
    return run_plan(plan_, stdin_data);
  }

  // Runs one box to the end: forks, gives the go byte, collects output and status.
  // `kill_init_after_ms` > 0: SIGKILL the box's init then, as the supervisor does on a limit.
  static BoxRun run_plan(BoxPlan plan, const std::string& stdin_data, int kill_init_after_ms = 0) {
    StartedBox box = start_plan(std::move(plan), stdin_data);
    return finish_plan(box, kill_init_after_ms);
  }

  // A box forked and given its go byte, not yet waited for.
  struct StartedBox {
    pid_t init = -1;
    int in = -1, out = -1, err = -1, status_read = -1;
    std::chrono::steady_clock::time_point start;
  };

  static StartedBox start_plan(BoxPlan plan, const std::string& stdin_data) {
    StartedBox box;
    box.in = memfd_with(stdin_data);
    box.out = memfd_with("");
    box.err = memfd_with("");
    int sync[2], status[2];
    EXPECT_EQ(::pipe2(sync, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(status, O_CLOEXEC), 0);
    plan.stdin_fd = box.in;
    plan.stdout_fd = box.out;
    plan.stderr_fd = box.err;
    plan.sync_fd = sync[0];
    plan.status_fd = status[1];
    box.status_read = status[0];
    box.start = std::chrono::steady_clock::now();
    box.init = start_box(plan);  // the box's init, killed as the supervisor does
    ::close(sync[0]);
    ::close(status[1]);
    EXPECT_EQ(::write(sync[1], "g", 1), 1);
    ::close(sync[1]);
    return box;
  }

  // Waits for the box (30 s at most), then reads its status and output.
  static BoxRun finish_plan(const StartedBox& box, int kill_init_after_ms = 0) {
    BoxRun result;
    const pid_t init = box.init;
    const int in = box.in, out = box.out, err = box.err;
    const int status_read = box.status_read;
    const auto start = box.start;
    int wait_status = 0;
    for (int i = 0; i < 3000; ++i) {  // 30 s at most, then kill: never hang the suite
      if (::waitpid(init, &wait_status, WNOHANG) == init) break;
      if (kill_init_after_ms > 0 && i == kill_init_after_ms / 10) ::kill(init, SIGKILL);
      if (i == 2999) {
        const std::string where = describe_process_tree(init);
        ::kill(init, SIGKILL);
        ::waitpid(init, &wait_status, 0);
        ADD_FAILURE() << "box did not finish in 30 s; its processes:\n" << where;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    result.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // Read into bytes first: GCC 12 -O3 takes &result.status for its first int member and
    // warns (falsely) that the read overflows it.
    char bytes[sizeof(BoxStatus)];
    ssize_t n = ::read(status_read, bytes, sizeof(bytes));
    result.got_status = n == static_cast<ssize_t>(sizeof(bytes));
    if (result.got_status) std::memcpy(&result.status, bytes, sizeof(bytes));
    BoxStatus extra;
    EXPECT_EQ(::read(status_read, &extra, sizeof(extra)), 0) << "more than one BoxStatus";
    ::close(status_read);
    result.out = read_all(out);
    result.err = read_all(err);
    ::close(in);
    ::close(out);
    ::close(err);
    return result;
  }

  BoxRun sh(const std::string& script, const std::string& stdin_data = "") {
    return run({"/bin/sh", "-c", script}, stdin_data);
  }

  // Compiles a C program into the workspace (as /box/<name> inside).
  void compile(const std::string& name, const std::string& source) {
    std::string src = workspace_ + "/" + name + ".c";
    std::ofstream(src) << source;
    std::string command = "gcc -O0 -w -o " + workspace_ + "/" + name + " " + src;
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }

  static void expect_ok(const BoxRun& r) {
    ASSERT_TRUE(r.got_status);
    EXPECT_EQ(r.status.setup_errno, 0) << r.status.message;
    EXPECT_TRUE(WIFEXITED(r.status.wait_status)) << r.status.wait_status;
    EXPECT_EQ(WEXITSTATUS(r.status.wait_status), 0) << "stdout: " << r.out << "\nstderr: " << r.err;
  }

  std::string workspace_;
  BoxPlan plan_;
};

// The server runs several boxes at once; each sees only its own workspace. They are forked
// from one thread, as the spawner does (spawner.h: a fork of a multi-threaded process may
// find the allocator locked by another thread), and waited for from several.
TEST_F(BoxTest, ConcurrentBoxesAreIndependent) {
  constexpr int kBoxes = 4;
  std::vector<std::string> dirs(kBoxes);
  std::vector<BoxRun> runs(kBoxes);
  std::vector<StartedBox> started(kBoxes);
  std::vector<std::thread> threads;
  for (int i = 0; i < kBoxes; ++i) {
    char dir[] = "/tmp/cutor-box-par-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dirs[i] = dir;
    // A tmpfs, as the server's workspaces are: a box's first write does not wait for the
    // host disk's journal (busy with other tests' files).
    ASSERT_EQ(::mount("cutor-par", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755"), 0);
    ASSERT_EQ(::chown(dir, kBoxUid + 1 + i, kBoxGid + 1 + i), 0);
  }
  for (int i = 0; i < kBoxes; ++i) {
    BoxPlan plan = plan_;
    plan.workspace_host_path = dirs[i];
    plan.uid = kBoxUid + 1 + i;
    plan.gid = kBoxGid + 1 + i;
    plan.argv = {"/bin/sh", "-c",
                 "echo " + std::to_string(i) + " > /box/mine; sleep 0.2; ls /box; id -u"};
    started[i] = start_plan(plan, "");
  }
  for (int i = 0; i < kBoxes; ++i)
    threads.emplace_back([&runs, &started, i] { runs[i] = finish_plan(started[i]); });
  for (auto& t : threads) t.join();
  for (int i = 0; i < kBoxes; ++i) {
    expect_ok(runs[i]);
    EXPECT_EQ(runs[i].out, "mine\n" + std::to_string(kBoxUid + 1 + i) + "\n");
    std::ifstream mine(dirs[i] + "/mine");
    std::string content;
    mine >> content;
    EXPECT_EQ(content, std::to_string(i));
    EXPECT_EQ(::umount2(dirs[i].c_str(), MNT_DETACH), 0);
    std::filesystem::remove_all(dirs[i]);
  }
}

// start_box enters a new pid namespace on the calling thread only for the fork: the
// thread's later children (the server forks other tools from it) are born in its own.
TEST_F(BoxTest, StartBoxGivesTheThreadItsPidNamespaceBack) {
  auto ns = [](const char* path) { return std::filesystem::read_symlink(path).string(); };
  const std::string own = ns("/proc/thread-self/ns/pid");
  BoxRun r = sh("echo $$");
  expect_ok(r);
  EXPECT_EQ(r.out, "2\n") << "the program is the second process of a fresh pid namespace";
  EXPECT_EQ(ns("/proc/thread-self/ns/pid_for_children"), own);
  EXPECT_EQ(ns("/proc/thread-self/ns/pid"), own);
  pid_t child = ::fork();
  if (child == 0) ::_exit(::getpid() == 1 ? 1 : 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a later child became a PID 1";
}

TEST_F(BoxTest, HostnameIsCutor) {
  BoxRun r = sh("cat /proc/sys/kernel/hostname; uname -n; hostname");
  expect_ok(r);
  EXPECT_EQ(r.out, "cutor\ncutor\ncutor\n");
}

TEST_F(BoxTest, RunsAsThePlanUserWithoutPrivileges) {
  BoxRun r =
      sh("id -u; id -g; id -G; id -un; grep -E "
         "'^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status");
  expect_ok(r);
  const std::string id = std::to_string(kBoxUid) + "\n";
  EXPECT_EQ(
      r.out,
      id + id + id +
          "cutor\n"
          "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"
          "CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n");
}

TEST_F(BoxTest, OnlyLoopbackAndItWorks) {
  BoxRun r =
      sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; "
         "python3 -c \"import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); "
         "c=socket.create_connection(s.getsockname()); a,_=s.accept(); c.send(b'hi'); "
         "print(a.recv(2).decode())\"");
  expect_ok(r);
  EXPECT_EQ(r.out, "lo\nhi\n") << r.err;
}

// Netlink is refused by seccomp; libc's resolver must still find localhost via /etc/hosts.
TEST_F(BoxTest, LocalhostResolves) {
  BoxRun r =
      sh("getent hosts cutor; python3 -c \"import socket; "
         "print(sorted({a[4][0] for a in socket.getaddrinfo('localhost', 80, "
         "socket.AF_INET, 0, 0, socket.AI_ADDRCONFIG)}))\"");
  expect_ok(r);
  EXPECT_EQ(r.out, "127.0.0.1       localhost cutor\n['127.0.0.1']\n") << r.err;
}

TEST_F(BoxTest, RootAndSystemAreReadOnlyWorkspaceAndTmpWritable) {
  BoxRun r =
      sh("for f in /x /usr/x /etc/x /bin/x /dev/x /proc/x; do "
         "  if touch $f 2>/dev/null; then echo \"$f writable\"; else echo \"$f ro\"; fi; done; "
         "touch /box/file && echo box ok; echo hi > /tmp/t && cat /tmp/t; "
         "stat -c %a /tmp; grep -E ' / | /usr | /box | /tmp ' /proc/self/mounts | cut -d' ' -f2,4 "
         "| cut -d, -f1 | LC_ALL=C sort");
  expect_ok(r);
  EXPECT_EQ(r.out,
            "/x ro\n/usr/x ro\n/etc/x ro\n/bin/x ro\n/dev/x ro\n/proc/x ro\nbox ok\nhi\n1777\n"
            "/ ro\n/box rw\n/tmp rw\n/usr ro\n")
      << r.err;
  struct stat st;
  ASSERT_EQ(::stat((workspace_ + "/file").c_str(), &st), 0)
      << "the workspace write reached the host";
  EXPECT_EQ(st.st_uid, kBoxUid);
}

TEST_F(BoxTest, TmpIsSizeLimited) {
  plan_.tmp_bytes = 1 << 20;
  BoxRun r = sh("dd if=/dev/zero of=/tmp/big bs=1024 count=2048 2>&1; echo rc=$?");
  expect_ok(r);
  EXPECT_NE(r.out.find("No space left on device"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rc=1"), std::string::npos) << r.out;
}

TEST_F(BoxTest, ProcShowsOnlyTheBox) {
  BoxRun r =
      sh("ls /proc | grep -E '^[0-9]+$' | sort -n | head -1; ls /proc | grep -cE '^[0-9]+$'; "
         "echo $$; cat /proc/1/status | grep -E '^Uid:' | cut -f2");
  expect_ok(r);
  // PID 1 is box init (root), the shell is 2, and only a handful of processes exist.
  std::istringstream lines(r.out);
  std::string first, count, self, init_uid;
  lines >> first >> count >> self >> init_uid;
  EXPECT_EQ(first, "1");
  EXPECT_LE(std::stoi(count), 6) << r.out;
  EXPECT_EQ(self, "2");
  EXPECT_EQ(init_uid, "0");
}

TEST_F(BoxTest, InitIsOutOfReach) {
  BoxRun r =
      sh("ls /proc/1/fd >/dev/null 2>&1 || echo fd-hidden; "
         "cat /proc/1/environ >/dev/null 2>&1 || echo environ-hidden; "
         "kill -9 1 2>/dev/null || echo kill-refused; "
         "kill -STOP 1 2>/dev/null || echo stop-refused; echo done");
  expect_ok(r);
  EXPECT_EQ(r.out, "fd-hidden\nenviron-hidden\nkill-refused\nstop-refused\ndone\n");
}

TEST_F(BoxTest, ProcessLimitStopsAForkBomb) {
  plan_.limits.processes = 8;
  compile("bomb", R"(
#include <stdio.h>
#include <unistd.h>
int main() {
  int started = 0;
  for (int i = 0; i < 50; ++i) {
    pid_t pid = fork();
    if (pid == 0) { sleep(5); _exit(0); }
    if (pid > 0) ++started;
  }
  printf("%d\n", started);
  return 0;
}
)");
  BoxRun r = run({"/box/bomb"});
  expect_ok(r);
  // The program itself counts as one of the box uid's 8 processes.
  EXPECT_EQ(r.out, "7\n");
  EXPECT_LT(r.seconds, 5) << "leftover sleepers must die with the program";
}

TEST_F(BoxTest, EtcIsMinimal) {
  BoxRun r =
      sh("test -e /etc/shadow && echo shadow; test -e /etc/sudoers && echo sudoers; "
         "test -e /etc/ssh && echo ssh; test -e /sys/kernel && echo sys; "
         "grep '^cutor:' /etc/passwd | cut -d: -f3; grep cutor /etc/hosts; ls /dev | tr '\\n' ' '");
  expect_ok(r);
  EXPECT_EQ(r.out, std::to_string(kBoxUid) +
                       "\n127.0.0.1 localhost cutor\nfd full null random shm stderr stdin stdout "
                       "urandom zero ");
}

TEST_F(BoxTest, ExtraReadOnlyMountIsReadOnly) {
  char dir[] = "/tmp/cutor-box-ro-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::ofstream(std::string(dir) + "/data.txt") << "store\n";
  ::chmod(dir, 0755);
  plan_.read_only.push_back({dir, "/nix/store"});
  BoxRun r = sh("cat /nix/store/data.txt; echo x > /nix/store/new 2>/dev/null || echo refused");
  std::filesystem::remove_all(dir);
  expect_ok(r);
  EXPECT_EQ(r.out, "store\nrefused\n");
}

// A Nix store path can be a symlink to any host file: the box recreates the link (which
// then resolves inside the box, here to nothing) and never binds what it points to.
TEST_F(BoxTest, SymlinkedReadOnlySourceIsRecreatedNotFollowed) {
  char dir[] = "/tmp/cutor-box-ro-link-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string secret = std::string(dir) + "/host-secret";
  std::ofstream(secret) << "host secret\n";
  ::chmod(dir, 0755);
  ::chmod(secret.c_str(), 0644);
  const std::string link = std::string(dir) + "/store-path";
  ASSERT_EQ(::symlink(secret.c_str(), link.c_str()), 0);
  plan_.read_only.push_back({link, "/nix/store/abc-link"});
  plan_.read_only.push_back({dir, "/nix/store/dir"});  // a directory still binds
  BoxRun r =
      sh("readlink /nix/store/abc-link; cat /nix/store/abc-link 2>/dev/null || echo "
         "unreadable; test -L /nix/store/dir/store-path && echo inner-link-kept");
  std::filesystem::remove_all(dir);
  expect_ok(r);
  EXPECT_EQ(r.out, secret + "\nunreadable\ninner-link-kept\n");
}

// Box init is a fork of the server: its command line must not show the server's.
TEST_F(BoxTest, InitShowsNoServerCommandLine) {
  BoxRun r =
      sh("tr -d '\\0' < /proc/1/cmdline; echo; cat /proc/1/comm; "
         "wc -c < /proc/1/environ 2>/dev/null || echo environ-hidden; "
         "cat /proc/self/comm");
  expect_ok(r);
  EXPECT_EQ(r.out, "cutor-box-init\ncutor-box-init\nenviron-hidden\ncat\n") << r.err;
}

// The program took every permission away from its own workspace in an earlier stage: the
// next stage still starts (as a program that cannot read its files), it is no setup error.
TEST_F(BoxTest, WorkspaceLockedByTheProgramIsNoSetupError) {
  std::ofstream(workspace_ + "/run.sh") << "echo hi\n";
  ASSERT_EQ(::chmod(workspace_.c_str(), 0), 0);
  BoxRun r = run({"/bin/sh", "run.sh"});
  ASSERT_EQ(::chmod(workspace_.c_str(), 0755), 0);
  ASSERT_TRUE(r.got_status);
  EXPECT_EQ(r.status.setup_errno, 0) << r.status.message;
  ASSERT_TRUE(WIFEXITED(r.status.wait_status)) << r.status.wait_status;
  EXPECT_NE(WEXITSTATUS(r.status.wait_status), 0);
  EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST_F(BoxTest, StdinAndArgsReachTheProgram) {
  BoxRun r = run({"/bin/sh", "-c", "read line; echo \"$line:$1\"", "sh", "arg1"}, "hello\n");
  expect_ok(r);
  EXPECT_EQ(r.out, "hello:arg1\n");
}

TEST_F(BoxTest, MissingCommandExits127) {
  BoxRun r = run({"no-such-command-cutor"});
  ASSERT_TRUE(r.got_status);
  EXPECT_EQ(r.status.setup_errno, 0);
  ASSERT_TRUE(WIFEXITED(r.status.wait_status));
  EXPECT_EQ(WEXITSTATUS(r.status.wait_status), 127);
  EXPECT_EQ(r.err, "cutor: no-such-command-cutor: not found\n");
}

TEST_F(BoxTest, CommandIsFoundThroughThePlansPath) {
  compile("hello", "#include <stdio.h>\nint main(){puts(\"found\");return 3;}\n");
  plan_.env = {"PATH=/nowhere:/box"};
  BoxRun r = run({"hello"});
  ASSERT_TRUE(r.got_status);
  EXPECT_EQ(WEXITSTATUS(r.status.wait_status), 3);
  EXPECT_EQ(r.out, "found\n");
}

TEST_F(BoxTest, OnlyStdioFdsAreInherited) {
  int leaked = ::open("/etc/hostname", O_RDONLY);  // no O_CLOEXEC: would leak without close_range
  ASSERT_GE(leaked, 0);
  BoxRun r = sh("ls /proc/self/fd | tr '\\n' ' '");
  ::close(leaked);
  expect_ok(r);
  EXPECT_EQ(r.out, "0 1 2 3 ");  // 3 is ls's own directory fd
}

TEST_F(BoxTest, SignalDispositionsOfTheSupervisorDoNotLeak) {
  auto old_pipe = ::signal(SIGPIPE, SIG_IGN);
  sigset_t blocked, old_mask;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGXCPU);
  ::sigprocmask(SIG_BLOCK, &blocked, &old_mask);
  BoxRun r = sh("grep -E '^(SigBlk|SigIgn):' /proc/self/status");
  ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  ::signal(SIGPIPE, old_pipe);
  expect_ok(r);
  EXPECT_EQ(r.out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

TEST_F(BoxTest, RlimitsAreSet) {
  plan_.limits.file_size_bytes = 1 << 20;
  BoxRun r = sh(
      "ulimit -c; ulimit -f; grep 'Max processes' /proc/self/limits | tr -s ' ' | cut -d' ' -f3,4; "
      "ulimit -t; "
      "dd if=/dev/zero of=/box/big bs=1024 count=2048 2>/dev/null; echo rc=$?; "
      "stat -c %s /box/big");
  expect_ok(r);
  // ulimit -f is in 512-byte blocks; the cpu backstop is ceil(10 s) + 1. dd dies of SIGXFSZ.
  EXPECT_EQ(r.out, "0\n2048\n64 64\n11\nrc=153\n1048576\n");
}

TEST_F(BoxTest, KillMinusOneDoesNotTakeDownInit) {
  BoxRun r = sh("sleep 100 & kill -9 -1; echo alive");
  expect_ok(r);
  EXPECT_EQ(r.out, "alive\n");
  EXPECT_LT(r.seconds, 10);
}

TEST_F(BoxTest, LeftoversDieWithTheProgram) {
  BoxRun r = sh("(trap '' TERM HUP; exec sleep 1000) & sleep 0.2; echo started");
  expect_ok(r);
  EXPECT_EQ(r.out, "started\n");
  EXPECT_LT(r.seconds, 10);
  for (int i = 0; i < 100 && count_processes_of(kBoxUid) > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(count_processes_of(kBoxUid), 0) << "a box process survived its namespace";
}

// The supervisor stops a box by killing its init: everything in the namespace follows,
// including processes that left the session.
TEST_F(BoxTest, KillingInitEndsTheWholeBox) {
  plan_.argv = {"/bin/sh", "-c", "setsid sleep 100 & (trap '' TERM HUP; sleep 100) & sleep 100"};
  BoxRun r = run_plan(plan_, "", 300);
  EXPECT_LT(r.seconds, 5);
  EXPECT_FALSE(r.got_status) << "nobody was left to report";
  for (int i = 0; i < 200 && count_processes_of(kBoxUid) > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(count_processes_of(kBoxUid), 0) << "a box process survived its init";
}

TEST_F(BoxTest, ReportsCpuTimeOfTheWholeTree) {
  BoxRun r =
      sh("(i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done) & "
         "i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done; wait");
  expect_ok(r);
  EXPECT_GT(r.status.cpu_time_us, 100000) << "two busy shells must add up";
  EXPECT_GT(r.status.max_rss_bytes, 100000);
}

TEST_F(BoxTest, SetupFailureIsReportedWithContext) {
  plan_.workspace_host_path = "/nonexistent/cutor-workspace";
  BoxRun r = sh("echo should not run");
  ASSERT_TRUE(r.got_status);
  EXPECT_EQ(r.status.setup_errno, ENOENT);
  EXPECT_NE(std::string(r.status.message).find("/nonexistent/cutor-workspace"), std::string::npos)
      << r.status.message;
  EXPECT_NE(std::string(r.status.message).find("errno 2"), std::string::npos) << r.status.message;
  EXPECT_EQ(r.out, "");
}

TEST_F(BoxTest, UidZeroIsRefused) {
  plan_.uid = 0;
  BoxRun r = sh("echo should not run");
  ASSERT_TRUE(r.got_status);
  EXPECT_EQ(r.status.setup_errno, EINVAL) << r.status.message;
  EXPECT_EQ(r.out, "");
}

TEST_F(BoxTest, NamespaceEscapesAreRefused) {
  BoxRun r =
      sh("unshare -m true 2>/dev/null || echo m-refused; "
         "unshare -U -r true 2>/dev/null || echo u-refused; "
         "unshare -n true 2>/dev/null || echo n-refused");
  expect_ok(r);
  EXPECT_EQ(r.out, "m-refused\nu-refused\nn-refused\n");
}

// Raw syscalls a hostile program would try, each printing its result.
TEST_F(BoxTest, SeccompRefusesDangerousSyscalls) {
  compile("probe", R"(
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/sched.h>
static void show(const char* what, long rc) { printf("%s %ld %s\n", what, rc, rc < 0 ? strerrorname_np(errno) : "-"); }
int main() {
  show("mount", mount("none", "/tmp", "tmpfs", 0, 0));
  show("umount2", umount2("/tmp", MNT_DETACH));
  show("unshare-user", unshare(CLONE_NEWUSER));
  show("clone-newuser", syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
  show("clone-newnet", syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0));
  struct clone_args args; memset(&args, 0, sizeof(args)); args.exit_signal = SIGCHLD;
  show("clone3", syscall(SYS_clone3, &args, sizeof(args)));
  char c = 'x';
  show("tiocsti", ioctl(0, TIOCSTI, &c));
  show("tiocsti-high-bits", syscall(SYS_ioctl, 0, 0xdead000000000000UL | TIOCSTI, &c));
  show("netlink", socket(AF_NETLINK, SOCK_RAW, 0));
  show("packet", socket(AF_PACKET, SOCK_RAW, 0));
  show("personality-query", personality(0xffffffff) >= 0 ? 0 : -1);
  show("personality-norandom", personality(ADDR_NO_RANDOMIZE));
  show("personality-norandom-top-bit", personality(ADDR_NO_RANDOMIZE | 0x10000000));
  show("personality-exec-top-bit", personality(READ_IMPLIES_EXEC | 0x80000000));
  show("personality-high-half", syscall(SYS_personality, 0x100000000UL | ADDR_NO_RANDOMIZE));
  show("personality-linux", personality(PER_LINUX));
  show("personality-after", personality(0xffffffff));
  show("ptrace", syscall(SYS_ptrace, 0, 0, 0, 0));
  show("bpf", syscall(SYS_bpf, 0, 0, 0));
  show("io_uring_setup", syscall(SYS_io_uring_setup, 1, 0));
  show("keyctl", syscall(SYS_keyctl, 0, 0, 0));
  show("mknod-chr", mknod("/tmp/dev", S_IFCHR | 0600, makedev(1, 3)));
  show("fifo", mknod("/tmp/fifo", S_IFIFO | 0600, 0));
  pid_t child = fork();
  if (child == 0) _exit(7);
  int status; waitpid(child, &status, 0);
  show("fork", WEXITSTATUS(status));
  fflush(stdout);
  // x32 ABI: same arch token, a different syscall table. Must kill, not run getpid.
  long rc;
  __asm__ volatile("syscall" : "=a"(rc) : "0"(0x40000000L | SYS_getpid) : "rcx", "r11", "memory");
  printf("x32 survived %ld\n", rc);
  return 0;
}
)");
  BoxRun r = run({"/box/probe"});
  ASSERT_TRUE(r.got_status);
  EXPECT_EQ(r.out,
            "mount -1 EPERM\n"
            "umount2 -1 EPERM\n"
            "unshare-user -1 EPERM\n"
            "clone-newuser -1 EPERM\n"
            "clone-newnet -1 EPERM\n"
            "clone3 -1 ENOSYS\n"
            "tiocsti -1 EPERM\n"
            "tiocsti-high-bits -1 EPERM\n"
            "netlink -1 EAFNOSUPPORT\n"
            "packet -1 EAFNOSUPPORT\n"
            "personality-query 0 -\n"
            "personality-norandom -1 EPERM\n"
            "personality-norandom-top-bit -1 EPERM\n"
            "personality-exec-top-bit -1 EPERM\n"
            "personality-high-half -1 EPERM\n"
            "personality-linux 0 -\n"
            "personality-after 0 -\n"
            "ptrace -1 EPERM\n"
            "bpf -1 EPERM\n"
            "io_uring_setup -1 EPERM\n"
            "keyctl -1 EPERM\n"
            "mknod-chr -1 EPERM\n"
            "fifo 0 -\n"
            "fork 7 -\n");
  ASSERT_TRUE(WIFSIGNALED(r.status.wait_status)) << r.status.wait_status;
  EXPECT_EQ(WTERMSIG(r.status.wait_status), SIGSYS);
}

TEST_F(BoxTest, ThirtyTwoBitSyscallsKill) {
  compile("probe32", R"(
#include <stdio.h>
int main() {
  long rc;
  fflush(stdout);
  __asm__ volatile("int $0x80" : "=a"(rc) : "0"(20L) : "memory");  /* i386 getpid */
  printf("int80 survived %ld\n", rc);
  return 0;
}
)");
  // Where the host serves int 0x80 the filter must kill first (SIGSYS). Where the host
  // itself refuses it (some hypervisors' guests: SIGSEGV), which of the two comes first
  // depends on the guest's entry path; either way the call never runs.
  int host_signal = SIGSYS;
  pid_t probe = ::fork();
  ASSERT_GE(probe, 0);
  if (probe == 0) {
    ::signal(SIGSEGV, SIG_DFL);  // a sanitizer's handler would turn the signal into an exit
    long rc;
    __asm__ volatile("int $0x80" : "=a"(rc) : "0"(20L) : "memory");
    ::_exit(rc > 0 ? 0 : 1);
  }
  int probe_status = 0;
  ASSERT_EQ(::waitpid(probe, &probe_status, 0), probe);
  if (WIFSIGNALED(probe_status)) host_signal = WTERMSIG(probe_status);
  BoxRun r = run({"/box/probe32"});
  ASSERT_TRUE(r.got_status);
  EXPECT_EQ(r.out, "");
  ASSERT_TRUE(WIFSIGNALED(r.status.wait_status)) << r.status.wait_status;
  if (host_signal == SIGSYS)
    EXPECT_EQ(WTERMSIG(r.status.wait_status), SIGSYS);
  else
    EXPECT_TRUE(WTERMSIG(r.status.wait_status) == SIGSYS ||
                WTERMSIG(r.status.wait_status) == host_signal)
        << WTERMSIG(r.status.wait_status);
}

}  // namespace
}  // namespace cutor::sandbox
