// The small process runner the environment cache starts Nix with.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <system_error>
#include <thread>

#include "envcache/nix_process.h"

namespace cutor {
namespace {

NixProcessSpec shell(const std::string& script) {
  NixProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", script};
  spec.env = {"PATH=/usr/bin:/bin", "ONLY=this"};
  return spec;
}

TEST(NixProcess, CapturesOutputAndExitCode) {
  auto r = run_nix_process(shell("echo out; echo err >&2; exit 3"));
  EXPECT_EQ(r.stdout_data, "out\n");
  EXPECT_EQ(r.stderr_data, "err\n");
  ASSERT_TRUE(r.exit_code);
  EXPECT_EQ(*r.exit_code, 3);
  EXPECT_FALSE(r.signal);
  EXPECT_FALSE(r.ok());
}

TEST(NixProcess, SeesOnlyTheGivenEnvironmentAndNoStdin) {
  auto r = run_nix_process(shell("env | sort; cat"));
  EXPECT_NE(r.stdout_data.find("ONLY=this\n"), std::string::npos);
  EXPECT_EQ(r.stdout_data.find("HOME="), std::string::npos);
  EXPECT_TRUE(r.ok());
}

TEST(NixProcess, DoesNotLeakDescriptors) {
  int fd = ::open("/dev/null", O_RDONLY);  // deliberately without O_CLOEXEC
  ASSERT_GE(fd, 3);
  auto r = run_nix_process(
      shell("test -e /proc/self/fd/" + std::to_string(fd) + " && echo leaked || echo closed"));
  ::close(fd);
  EXPECT_EQ(r.stdout_data, "closed\n");
}

TEST(NixProcess, WallTimeoutSendsTermFirst) {
  auto spec = shell("trap 'echo got-term; exit 7' TERM; sleep 30 & wait");
  spec.wall_time_ms = 300;
  auto start = std::chrono::steady_clock::now();
  auto r = run_nix_process(spec);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.stdout_data, "got-term\n");
  ASSERT_TRUE(r.exit_code);
  EXPECT_EQ(*r.exit_code, 7);
  EXPECT_LT(took, std::chrono::seconds(3));
}

TEST(NixProcess, KillsAfterGraceWhenTermIsIgnored) {
  auto spec = shell("trap '' TERM; while :; do sleep 1; done");
  spec.wall_time_ms = 200;
  spec.kill_grace_ms = 300;
  auto start = std::chrono::steady_clock::now();
  auto r = run_nix_process(spec);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(r.timed_out);
  ASSERT_TRUE(r.signal);
  EXPECT_EQ(*r.signal, SIGKILL);
  EXPECT_LT(took, std::chrono::seconds(3));
}

TEST(NixProcess, CapsOutputButKeepsReading) {
  auto spec = shell("head -c 1000000 /dev/zero; head -c 500000 /dev/zero >&2");
  spec.stdout_cap_bytes = 1000;
  spec.stderr_cap_bytes = 10;
  auto r = run_nix_process(spec);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.stdout_data.size(), 1000u);
  EXPECT_EQ(r.stderr_data.size(), 10u);
  EXPECT_TRUE(r.stdout_truncated);
  EXPECT_TRUE(r.stderr_truncated);
}

TEST(NixProcess, CancelStopsIt) {
  std::stop_source stop;
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop.request_stop();
  });
  auto r = run_nix_process(shell("sleep 30"), stop.get_token());
  canceller.join();
  EXPECT_TRUE(r.cancelled);
  EXPECT_FALSE(r.ok());
  EXPECT_LT(r.wall_time_us, 3'000'000);
}

TEST(NixProcess, MemoryLimitApplies) {
  auto spec = shell("exec /usr/bin/python3 -c 'b = bytearray(512 << 20); print(len(b))'");
  spec.memory_bytes = 128ll << 20;
  auto r = run_nix_process(spec);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.stderr_data.find("MemoryError"), std::string::npos) << r.stderr_data;
}

TEST(NixProcess, UnstartableProgramThrowsWithContext) {
  NixProcessSpec spec;
  spec.argv = {"/nonexistent/nix"};
  try {
    run_nix_process(spec);
    FAIL() << "expected a system_error";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("execve for /nonexistent/nix"), std::string::npos)
        << e.what();
    EXPECT_EQ(e.code().value(), ENOENT);
  }
}

}  // namespace
}  // namespace cutor
