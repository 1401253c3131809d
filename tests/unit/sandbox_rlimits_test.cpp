// The per-process limits a stage's program starts with.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/rlimits.h"

namespace cutor::sandbox {
namespace {

TEST(RlimitsTest, CpuBackstopRoundsUpAndAddsOneSecond) {
  SandboxLimits l;
  l.cpu_time_ms = 1;
  EXPECT_EQ(cpu_backstop_seconds(l), 2);
  l.cpu_time_ms = 1000;
  EXPECT_EQ(cpu_backstop_seconds(l), 2);
  l.cpu_time_ms = 1001;
  EXPECT_EQ(cpu_backstop_seconds(l), 3);
  l.cpu_time_ms = 0;
  EXPECT_EQ(cpu_backstop_seconds(l), 0);
}

// Applies the limits in a forked child (they are per process) and checks them there.
int check_in_child(const SandboxLimits& limits) {
  pid_t pid = ::fork();
  if (pid == 0) {
    const char* failed = nullptr;
    if (apply_stage_rlimits(limits, &failed) != 0) ::_exit(10);
    struct rlimit rl;
    ::getrlimit(RLIMIT_FSIZE, &rl);
    if (rl.rlim_cur != 4096 || rl.rlim_max != 4096) ::_exit(11);
    ::getrlimit(RLIMIT_CPU, &rl);
    if (rl.rlim_cur != 3 || rl.rlim_max != 4) ::_exit(12);
    ::getrlimit(RLIMIT_CORE, &rl);
    if (rl.rlim_cur != 0 || rl.rlim_max != 0) ::_exit(13);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(RlimitsTest, AppliesFileSizeCpuAndCore) {
  SandboxLimits l;
  l.file_size_bytes = 4096;
  l.cpu_time_ms = 1500;
  EXPECT_EQ(check_in_child(l), 0);
}

}  // namespace
}  // namespace cutor::sandbox
