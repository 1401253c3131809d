// Exited threads' cpu time from taskstats: a child that burns cpu and is reaped by nobody
// (SIGCHLD ignored) is still counted, for its uid only.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "sandbox/taskstats.h"

namespace cutor::sandbox {
namespace {

// Unique per test process, away from the box range.
const uid_t kUid = 2000000 + static_cast<uid_t>(::getpid()) * 2;  // and kUid + 1

double own_cpu_seconds() {
  struct timespec t;
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

TEST(SandboxTaskstatsTest, CountsAutoReapedChildrenOfTheTrackedUid) {
  ASSERT_EQ(::geteuid(), 0u);
  ExitedThreadCpu* exited = ExitedThreadCpu::host();
  ASSERT_NE(exited, nullptr) << "taskstats is not available on this host";
  exited->track(kUid);
  exited->track(kUid + 1);
  pid_t middle = ::fork();
  ASSERT_GE(middle, 0);
  if (middle == 0) {
    // As a box program would: its own uid, SIGCHLD ignored, the burner never waited for.
    if (::setresgid(kUid, kUid, kUid) != 0 || ::setresuid(kUid, kUid, kUid) != 0) ::_exit(2);
    ::signal(SIGCHLD, SIG_IGN);
    pid_t burner = ::fork();
    if (burner == 0) {
      volatile unsigned long spin = 0;
      while (own_cpu_seconds() < 0.3) spin = spin + 1;
      ::_exit(0);
    }
    while (::kill(burner, 0) == 0) ::usleep(1000);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(middle, &status, 0), middle);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  const int64_t counted = exited->cpu_time_us(kUid);
  EXPECT_GE(counted, 250000) << "the auto-reaped child's 300 ms were not seen";
  EXPECT_LT(counted, 2000000);
  EXPECT_EQ(exited->cpu_time_us(kUid + 1), 0) << "another uid's record was counted";
  exited->untrack(kUid);
  exited->untrack(kUid + 1);
  EXPECT_EQ(exited->cpu_time_us(kUid), 0);
}

TEST(SandboxTaskstatsTest, LiveThreadsOfAProcessAreMeasured) {
  int burnt[2];
  ASSERT_EQ(::pipe2(burnt, O_CLOEXEC), 0);
  pid_t busy = ::fork();
  ASSERT_GE(busy, 0);
  if (busy == 0) {
    // Says when it has used 200 ms of cpu (however long a busy host takes to give them),
    // then goes on burning.
    volatile unsigned long spin = 0;
    while (own_cpu_seconds() < 0.2) spin = spin + 1;
    (void)!::write(burnt[1], "x", 1);
    while (own_cpu_seconds() < 30) spin = spin + 1;
    ::_exit(0);
  }
  ::close(burnt[1]);
  char byte;
  EXPECT_EQ(::read(burnt[0], &byte, 1), 1);
  ::close(burnt[0]);
  const int64_t live = live_threads_cpu_time_us({busy});
  ::kill(busy, SIGKILL);
  ::waitpid(busy, nullptr, 0);
  EXPECT_GE(live, 200000);
  EXPECT_LT(live, 30000000);
  EXPECT_EQ(live_threads_cpu_time_us({busy}), 0) << "a reaped process still measured";
}

}  // namespace
}  // namespace cutor::sandbox
