// Runs one Nix command as a child process: its own environment, limits, a wall-clock
// timeout, cancellation, and size-capped capture of stdout and stderr.
//
// Nix reacts to SIGTERM by stopping its builders and cleaning up (a SIGKILL'd nix can
// leave its builder running), so a timeout or a cancel sends TERM to the child's
// process group first and KILL only after a grace period.
#pragma once

#include <cstdint>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

namespace cutor {

struct NixProcessSpec {
  std::vector<std::string> argv;          // argv[0] is an absolute path
  std::vector<std::string> env;           // the whole environment, "KEY=value"
  std::string working_dir;                // empty: inherit
  int64_t wall_time_ms = 0;               // 0: no timeout
  int64_t cpu_time_ms = 0;                // RLIMIT_CPU of the nix process (a backstop); 0: none
  int64_t memory_bytes = 0;               // RLIMIT_AS; 0: none
  int64_t file_size_bytes = 0;            // RLIMIT_FSIZE; 0: none
  int64_t stdout_cap_bytes = 64ll << 20;  // bytes kept; the rest is read and dropped
  int64_t stderr_cap_bytes = 1ll << 20;
  int64_t kill_grace_ms = 3000;  // TERM → KILL
};

struct NixProcessResult {
  std::optional<int> exit_code;  // set when the process exited
  std::optional<int> signal;     // set when a signal ended it
  bool timed_out = false;        // the wall-time limit stopped it
  bool cancelled = false;        // the stop token stopped it
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  std::string stdout_data;
  std::string stderr_data;
  int64_t wall_time_us = 0;
  int64_t cpu_time_us = 0;  // user + system of the child and its waited-for descendants
  int64_t max_rss_bytes = 0;

  bool ok() const { return exit_code && *exit_code == 0 && !timed_out && !cancelled; }
};

// Runs `spec` to completion. Throws std::system_error (naming the syscall) when the child
// cannot be started; what the child does is reported, never thrown.
NixProcessResult run_nix_process(const NixProcessSpec& spec, std::stop_token cancel = {});

}  // namespace cutor
