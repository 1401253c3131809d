// Internal to src/sandbox: the host-side event loop of one running stage.
//
// One thread per stage: it feeds stdin, collects stdout and stderr (separately and
// interleaved), watches the wall clock, the stage's cpu time and a cancel request, stops
// the stage at the first limit, and waits for the stage's direct child to exit. How the
// child was started (plain reaper or isolated box) is the caller's business.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <stop_token>
#include <string>
#include <string_view>

#include "model/limits.h"
#include "sandbox/fd.h"

namespace cutor::sandbox {

// The host's handles on a started stage. The supervisor closes the pipes as it is done
// with them and reaps `pid`.
struct StageChild {
  pid_t pid = -1;        // the direct child: the stage-1 reaper or the box init
  UniqueFd pidfd;        // pidfd_open(pid)
  UniqueFd stdin_pipe;   // write end of the program's stdin
  UniqueFd stdout_pipe;  // read ends of the program's stdout and stderr
  UniqueFd stderr_pipe;
  UniqueFd status_pipe;    // read end: the child's report, read until EOF
  int64_t started_ns = 0;  // CLOCK_MONOTONIC just before fork
  // > 0: the stage is over once this many status bytes are in and stdout and stderr are at
  // EOF, even though `pid` still runs (box init reports only after its namespace is empty).
  // `pid` is then left unreaped for the caller (SupervisedRun::child_reaped false), and
  // cpu_time_us is not measured once more at the end: the caller reads its final figures.
  size_t final_status_bytes = 0;
};

// How the supervisor measures and stops the stage's whole process tree.
class StageControl {
 public:
  virtual ~StageControl() = default;
  // Cpu time of the whole tree so far, or -1 when unknown. Called every ~10 ms.
  virtual int64_t cpu_time_us() = 0;
  // True once the memory limit killed a process of the stage (the OOM killer picks one
  // process; the rest would run on). Called with the cpu checks; the supervisor then stops
  // the stage (kMemory).
  virtual bool memory_limit_hit() { return false; }
  // Starts killing every process of the stage; the direct child exits soon after.
  // Called at a limit, on cancel, and once more after the direct child exited. Idempotent.
  virtual void kill_all() = 0;
};

enum class StopReason { kNone, kWallTime, kCpuTime, kOutput, kCancelled, kMemory };

struct SupervisedRun {
  StopReason stop = StopReason::kNone;  // the first reason the supervisor killed the stage
  std::string stdout_data;
  std::string stderr_data;
  std::string output;  // both streams in arrival order
  bool truncated = false;
  std::string status_bytes;        // everything the child wrote to status_pipe
  bool child_reaped = true;        // false: ended by final_status_bytes, `pid` still to reap
  int child_wait_status = 0;       // of StageChild::pid, when reaped
  struct rusage child_usage = {};  // of StageChild::pid, from wait4
  int64_t wall_time_us = 0;        // started_ns to reap
  int64_t cpu_time_us = -1;        // the largest value StageControl::cpu_time_us gave
  std::string internal_error;      // non-empty: the supervisor itself failed (syscall, errno)
};

// Runs the loop until the direct child exited (or reported, see final_status_bytes) and the
// output is drained. Each stream keeps
// at most limits.output_bytes; one more byte stops the stage (kOutput). Never throws.
SupervisedRun supervise(StageChild& child, StageControl& control, const SandboxLimits& limits,
                        std::string_view stdin_data, std::stop_token cancel);

// CLOCK_MONOTONIC in nanoseconds.
int64_t monotonic_ns();

}  // namespace cutor::sandbox
