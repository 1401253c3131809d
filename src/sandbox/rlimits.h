// Internal to src/sandbox: the per-process resource limits a stage's program starts with.
//
// Limits that must cover the whole process tree (cpu time, memory, processes) are the
// supervisor's and the cgroup's job; these are backstops and per-process caps.
#pragma once

#include "model/limits.h"

namespace cutor::sandbox {

// Seconds of RLIMIT_CPU for a stage: the cpu limit rounded up, plus one. The supervisor
// stops the stage at the real limit first; this only catches a supervisor that fell behind.
long cpu_backstop_seconds(const SandboxLimits& limits);

// Sets in the calling process: RLIMIT_FSIZE = file_size_bytes (a larger write gets
// SIGXFSZ), RLIMIT_CPU = cpu_backstop_seconds (hard one second above the soft limit, so
// SIGXCPU comes first, then SIGKILL), RLIMIT_CORE = 0. A limit <= 0 leaves that resource
// alone. Async-signal-safe: meant for a forked child before exec. Returns 0, or the errno
// of the failing setrlimit with *failed_resource naming it ("RLIMIT_FSIZE").
int apply_stage_rlimits(const SandboxLimits& limits, const char** failed_resource);

}  // namespace cutor::sandbox
