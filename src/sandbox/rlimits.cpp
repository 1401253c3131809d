#include "sandbox/rlimits.h"

#include <sys/resource.h>

#include <cerrno>

namespace cutor::sandbox {

long cpu_backstop_seconds(const SandboxLimits& limits) {
  if (limits.cpu_time_ms <= 0) return 0;
  return static_cast<long>((limits.cpu_time_ms + 999) / 1000) + 1;
}

namespace {

int set_limit(int resource, rlim_t soft, rlim_t hard) {
  struct rlimit rl;
  rl.rlim_cur = soft;
  rl.rlim_max = hard;
  return setrlimit(resource, &rl) == 0 ? 0 : errno;
}

}  // namespace

int apply_stage_rlimits(const SandboxLimits& limits, const char** failed_resource) {
  const char* ignored = nullptr;
  if (failed_resource == nullptr) failed_resource = &ignored;
  if (limits.file_size_bytes > 0) {
    const auto bytes = static_cast<rlim_t>(limits.file_size_bytes);
    if (int err = set_limit(RLIMIT_FSIZE, bytes, bytes); err != 0) {
      *failed_resource = "RLIMIT_FSIZE";
      return err;
    }
  }
  if (long seconds = cpu_backstop_seconds(limits); seconds > 0) {
    const auto soft = static_cast<rlim_t>(seconds);
    if (int err = set_limit(RLIMIT_CPU, soft, soft + 1); err != 0) {
      *failed_resource = "RLIMIT_CPU";
      return err;
    }
  }
  if (int err = set_limit(RLIMIT_CORE, 0, 0); err != 0) {
    *failed_resource = "RLIMIT_CORE";
    return err;
  }
  return 0;
}

}  // namespace cutor::sandbox
