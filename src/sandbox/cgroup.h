// Internal to src/sandbox: one fresh cgroup per stage, below the server's own cgroup.
// cgroup v2 where controllers are there; on hybrid hosts the v1 memory, pids and
// cpuacct hierarchies. Never touches a hierarchy's root or processes it did not start.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/limits.h"

namespace cutor::sandbox {

class StageCgroup {
 public:
  virtual ~StageCgroup() = default;         // kills what is left, then removes the cgroup(s)
  virtual void add_process(pid_t pid) = 0;  // throws std::system_error with the file path
  // Sets the memory (swap 0) and pids limits (0: unlimited), at creation or again later
  // (a cgroup made ahead of its stage, with the limits its stage was expected to have).
  // Throws std::system_error.
  virtual void set_limits(const SandboxLimits& limits) = 0;
  virtual int64_t cpu_time_us() = 0;  // whole tree, since creation
  virtual int64_t memory_peak_bytes() = 0;
  virtual bool oom_killed() = 0;  // the memory limit killed something
  // True when cpu_time_us() comes from the kernel's per-cgroup accounting (it then counts
  // every process that ever ran in it); false for the /proc estimate of the fallback.
  virtual bool cpu_time_is_exact() = 0;
  virtual std::vector<pid_t> processes() = 0;  // now in it (thread group ids)
  virtual void kill_all() = 0;                 // SIGKILL every process in it
};

// Creates a fresh stage cgroup named `name` with memory (swap 0) and pids limits.
// Throws std::system_error naming the path on failure. `parent` empty: the server's own.
std::unique_ptr<StageCgroup> create_stage_cgroup(const std::string& parent, const std::string& name,
                                                 const SandboxLimits& limits);

// Recovery after a crash: removes the stage cgroups below `parent` (as for
// create_stage_cgroup) named stage-<pid>-<n> whose <pid> is not a running process, after
// killing anything still in them. Others (this process's, a live server's sharing the
// parent) are never touched. Assumes every server sharing `parent` shares our pid
// namespace. Best effort; returns how many were removed.
int remove_stale_stage_cgroups(const std::string& parent);

// "v2", "hybrid (v1 memory,pids,cpuacct)", or why not available, for doctor and /info.
std::string describe_cgroup_support();

}  // namespace cutor::sandbox
