// Internal to src/sandbox: stage 1 (SandboxOptions.isolate == false), the command as a
// plain child process, no namespaces.
//
// The forked child is a small reaper: it starts a new session, becomes a child subreaper
// (PR_SET_CHILD_SUBREAPER), forks the program, and when the program exits (or the host
// closes the control pipe) kills every process left below it, including daemons that
// called setsid() and left the process group, reaps them all and writes a PlainReport on
// the status pipe. Only then does it exit, so "the reaper exited" means "the stage is gone".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/limits.h"
#include "sandbox/fd.h"
#include "sandbox/supervisor.h"

namespace cutor::sandbox {

struct PlainPlan {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=value", the whole environment
  std::string workdir;           // absolute host path
  SandboxLimits limits;
  int stdin_fd = -1;  // >= 0: the program's stdin / stdout instead of a pipe of the stage
  int stdout_fd = -1;
};

// One fixed-size record on the status pipe. The program's child writes one with
// setup_errno set when it cannot start (before exec); the reaper always writes one last.
struct PlainReport {
  int32_t wait_status = 0;  // of the program
  int32_t setup_errno = 0;  // non-zero: the program could not be started; see message
  int64_t cpu_time_us = 0;  // user + system of every reaped process of the stage
  int64_t max_rss_kib = 0;  // the largest of them
  char message[232] = {};
};

// Starts the stage. `control` receives the write end of the control pipe: closing it tells
// the reaper to kill everything. Throws std::system_error (with the syscall) on failure.
StageChild start_plain_stage(const PlainPlan& plan, UniqueFd& control);

// Cpu time in microseconds of the live process tree rooted at `root` (its own and its
// reaped children's), from /proc. -1 when `root` is gone.
int64_t process_tree_cpu_time_us(pid_t root);

}  // namespace cutor::sandbox
