// Internal to src/sandbox: cpu time of a box's exited threads where no cgroup counts it.
//
// On hosts where neither cgroup v2 cpu.stat nor a v1 cpuacct cgroup below our own is usable,
// the live processes' /proc times miss children that were never waited for (SIGCHLD set to
// SIG_IGN: the kernel reaps them, nobody's cutime gets their time). The kernel's taskstats
// interface (generic netlink, TASKSTATS_CMD_ATTR_REGISTER_CPUMASK) sends a record for every
// thread that exits on the host, with its uid and its own user and system time. Box uids are
// exclusive on the host (uid_pool.h), so the records of a box's uid are the box's.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

namespace cutor::sandbox {

class ExitedThreadCpu {
 public:
  // The process-wide listener, or null when taskstats is not available here (no
  // CONFIG_TASKSTATS, no CAP_NET_ADMIN...). Opened once.
  static ExitedThreadCpu* host();

  virtual ~ExitedThreadCpu() = default;
  // Starts counting `uid` from zero; records already queued for it are discarded.
  virtual void track(uid_t uid) = 0;
  virtual void untrack(uid_t uid) = 0;
  // Cpu time of every thread of `uid` that exited since track(), in microseconds.
  virtual int64_t cpu_time_us(uid_t uid) = 0;
};

// Cpu time of the live (not zombie) threads of `processes`, from /proc/<pid>/task/<tid>/
// (schedstat's exact runtime, else stat's utime+stime), in microseconds. Exited threads
// are not included, neither through their process nor through a parent's cutime.
int64_t live_threads_cpu_time_us(const std::vector<pid_t>& processes);

}  // namespace cutor::sandbox
