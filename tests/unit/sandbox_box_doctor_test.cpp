// `cutor doctor`'s report: one line per capability, and a verdict that matches what the box
// needs. Run as root on a host where the box works (the box tests prove that separately).
#include <gtest/gtest.h>
#include <unistd.h>

#include <sstream>
#include <string>

#include "sandbox/cgroup.h"
#include "sandbox/doctor.h"

namespace cutor::sandbox {
namespace {

TEST(DoctorTest, ReportsEveryCapabilityAndSaysTheBoxCanRun) {
  ASSERT_EQ(::geteuid(), 0u) << "doctor's namespace and mount probes need root";
  std::ostringstream out;
  int rc = run_doctor(out);
  std::string text = out.str();
  EXPECT_EQ(rc, 0) << text;
  for (const char* line :
       {"ok      root:", "ok      namespaces (mount, pid, net, ipc, uts, cgroup):",
        "ok      mounts (tmpfs, read-only bind, proc):", "ok      seccomp:", "ok      tmpfs:",
        "user namespaces:", "bubblewrap:", "sandbox: can run isolated"}) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing '" << line << "' in\n" << text;
  }
  EXPECT_NE(text.find("cgroups: " + describe_cgroup_support()), std::string::npos) << text;
  // Every report line starts with a verdict.
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("sandbox: ", 0) == 0) continue;
    EXPECT_TRUE(line.rfind("ok      ", 0) == 0 || line.rfind("missing ", 0) == 0) << line;
  }
}

TEST(DoctorTest, LeavesNoProbeDirectoryBehind) {
  std::ostringstream out;
  run_doctor(out);
  EXPECT_NE(::system("ls -d /tmp/cutor-doctor-* >/dev/null 2>&1"), 0) << "probe dir left in /tmp";
}

}  // namespace
}  // namespace cutor::sandbox
