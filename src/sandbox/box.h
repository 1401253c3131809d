// Internal to src/sandbox: the contract between the supervisor (host side, sandbox.cpp)
// and the box (box_main.cpp, which uses mnt/net/user/seccomp .cpp).
#pragma once

#include <linux/filter.h>
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
  std::vector<std::string> argv;     // argv[0] looked up in the PATH of env when it has no '/'
  std::vector<std::string> env;      // "KEY=value", the whole environment
  std::string workspace_host_path;   // mounted read-write at kBoxWorkdir
  std::vector<BindMount> read_only;  // extra read-only mounts (e.g. /nix/store)
  int64_t tmp_bytes = 0;             // size of the box's /tmp tmpfs
  uid_t uid = 65534;  // unprivileged identity inside the box (distinct per concurrent stage)
  gid_t gid = 65534;
  SandboxLimits limits;  // rlimits set in the child: RLIMIT_FSIZE, RLIMIT_CPU backstop, CORE 0
  int stdin_fd = -1;     // become 0, 1, 2 of the program
  int stdout_fd = -1;
  int stderr_fd = -1;
  int sync_fd = -1;    // init reads one byte before building the box (cgroup placement first)
  int status_fd = -1;  // box init writes the program's wait status here (see start_box)
  // A fresh network namespace prepared ahead (take_prepared_net_namespace) for init to
  // enter, closed by init; -1: init unshares a new one itself.
  int net_ns_fd = -1;
  // The seccomp filter, compiled once in the supervisor (seccomp_filter_program()); null:
  // compiled in the box.
  const std::vector<sock_filter>* seccomp_program = nullptr;
};

// Starts a box and returns the pid of its init, PID 1 of a fresh pid namespace, forked
// straight from the calling thread (the thread alone enters the new pid namespace for the
// fork and gets the process's own back before returning; other threads are unaffected).
// Init waits for one byte on sync_fd (the caller puts it into the stage cgroup first),
// enters fresh mount, net, ipc, uts and cgroup namespaces, builds the filesystem, starts
// the program with its identity dropped and seccomp applied, reaps everything, writes one
// BoxStatus to status_fd and exits, taking every leftover process of the namespace with
// it. On a setup failure the BoxStatus has `setup_errno` and a message naming the step,
// syscall and errno. Init has PR_SET_PDEATHSIG(SIGKILL): it dies with the calling thread.
// Killed (a limit, the memory cgroup), it reports nothing: its wait status says how it
// ended. Throws std::system_error when the box cannot be started.
pid_t start_box(const BoxPlan& plan);

// What box init reports on status_fd (one write, fixed size).
struct BoxStatus {
  int wait_status = 0;  // as from waitpid() for the program
  int setup_errno = 0;  // non-zero: the box could not be built; `message` says where
  char message[240] = {};
  // Resources of every process box init reaped (RUSAGE_CHILDREN of init): a fallback for
  // hosts where the cpuacct/memory cgroup is not usable. Processes still running when the
  // program exits are killed with the namespace and not counted.
  int64_t cpu_time_us = 0;    // user + system
  int64_t max_rss_bytes = 0;  // largest single process
};

}  // namespace cutor::sandbox
