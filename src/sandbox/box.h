// Internal to src/sandbox: the contract between the supervisor (host side, sandbox.cpp)
// and the box child (box_main.cpp, which uses mnt/net/user/seccomp .cpp).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "model/limits.h"
#include "sandbox/sandbox.h"

namespace cutor::sandbox {

// Everything the child needs to build the box, prepared by the supervisor before fork
// so the child allocates as little as possible.
struct BoxPlan {
  std::vector<std::string> argv;  // argv[0] looked up in the PATH of env when it has no '/'
  std::vector<std::string> env;  // "KEY=value", the whole environment
  std::string workspace_host_path;  // mounted read-write at kBoxWorkdir
  std::vector<BindMount> read_only;  // extra read-only mounts (e.g. /nix/store)
  int64_t tmp_bytes = 0;  // size of the box's /tmp tmpfs
  uid_t uid = 65534;  // unprivileged identity inside the box (distinct per concurrent stage)
  gid_t gid = 65534;
  SandboxLimits limits;  // rlimits set in the child: RLIMIT_FSIZE, RLIMIT_CPU backstop, CORE 0
  int stdin_fd = -1;  // become 0, 1, 2 of the program
  int stdout_fd = -1;
  int stderr_fd = -1;
  int sync_fd = -1;  // child reads one byte before building the box (cgroup placement first)
  int status_fd = -1;  // box init writes the program's wait status here (see box_main)
};

// Runs in the forked child. Enters fresh namespaces (mount, pid, net, ipc, uts, cgroup),
// builds the filesystem, becomes a small init (PID 1) that starts the program with its
// identity dropped and seccomp applied, reaps everything, writes a BoxStatus to status_fd
// and exits. Never returns. On a setup failure writes a BoxStatus with `setup_errno` and a
// message naming the step, syscall and errno.
[[noreturn]] void box_main(const BoxPlan& plan);

// What box init reports on status_fd (one write, fixed size).
struct BoxStatus {
  int wait_status = 0;  // as from waitpid() for the program
  int setup_errno = 0;  // non-zero: the box could not be built; `message` says where
  char message[240] = {};
  // Resources of every process box init reaped (RUSAGE_CHILDREN of init): a fallback for
  // hosts where the cpuacct/memory cgroup is not usable. Processes still running when the
  // program exits are killed with the namespace and not counted.
  int64_t cpu_time_us = 0;  // user + system
  int64_t max_rss_bytes = 0;  // largest single process
};

}  // namespace cutor::sandbox
