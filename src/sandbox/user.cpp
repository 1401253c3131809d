#include "sandbox/user.h"

#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

#include "sandbox/rlimits.h"

namespace cutor::sandbox {
namespace {

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// Lowers (never raises: the host may lack CAP_SYS_RESOURCE) both limits of `resource`.
void lower_rlimit(int resource, const char* name, rlim_t soft, rlim_t hard) {
  struct rlimit current;
  if (::getrlimit(resource, &current) != 0) throw_errno(std::string("getrlimit ") + name);
  if (current.rlim_max != RLIM_INFINITY && hard > current.rlim_max) hard = current.rlim_max;
  if (soft > hard) soft = hard;
  struct rlimit wanted = {soft, hard};
  if (::setrlimit(resource, &wanted) != 0) throw_errno(std::string("setrlimit ") + name);
}

}  // namespace

void apply_rlimits(const SandboxLimits& limits) {
  if (limits.file_size_bytes > 0) {
    auto bytes = static_cast<rlim_t>(limits.file_size_bytes);
    lower_rlimit(RLIMIT_FSIZE, "RLIMIT_FSIZE", bytes, bytes);
  }
  if (limits.cpu_time_ms > 0) {
    // A per-process backstop only: the supervisor limits the whole tree. SIGXCPU at the
    // soft limit, SIGKILL one second later at the hard one.
    auto seconds = static_cast<rlim_t>(cpu_backstop_seconds(limits));
    lower_rlimit(RLIMIT_CPU, "RLIMIT_CPU", seconds, seconds + 1);
  }
  lower_rlimit(RLIMIT_CORE, "RLIMIT_CORE", 0, 0);
  // Big enough for deep recursion in judged programs, bounded so the mmap layout stays the
  // normal top-down one (an unlimited stack switches to the legacy layout).
  constexpr rlim_t kStackBytes = 64ull << 20;
  lower_rlimit(RLIMIT_STACK, "RLIMIT_STACK", kStackBytes, kStackBytes);
  if (limits.processes > 0) {
    // Counted per real uid across the host; each concurrent box has its own uid, so this
    // is the box's process+thread limit where the pids cgroup is not usable.
    auto count = static_cast<rlim_t>(limits.processes);
    lower_rlimit(RLIMIT_NPROC, "RLIMIT_NPROC", count, count);
  }
}

void drop_bounding_set() {
  // EINVAL marks the end of the capabilities this kernel knows.
  for (int cap = 0; cap <= 63; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
      throw_errno("prctl PR_CAPBSET_DROP " + std::to_string(cap));
  }
}

void drop_identity(uid_t uid, gid_t gid, BoundingSet bounding) {
  if (uid == 0 || gid == 0) {
    errno = EINVAL;
    throw_errno("drop_identity: refusing uid/gid 0");
  }
  // The bounding set can only be shrunk while we still hold CAP_SETPCAP, i.e. before
  // setresuid.
  if (bounding == BoundingSet::kDrop) drop_bounding_set();
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    throw_errno("prctl PR_CAP_AMBIENT_CLEAR_ALL");
  if (::setgroups(0, nullptr) != 0) throw_errno("setgroups(0)");
  if (::setresgid(gid, gid, gid) != 0) throw_errno("setresgid " + std::to_string(gid));
  if (::setresuid(uid, uid, uid) != 0) throw_errno("setresuid " + std::to_string(uid));
  // Leaving uid 0 already cleared permitted and effective (no SECBIT_KEEP_CAPS); clear
  // the inheritable set too and check that nothing is left.
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capset, &header, data) != 0) throw_errno("capset(empty)");
  if (::syscall(SYS_capget, &header, data) != 0) throw_errno("capget");
  for (const auto& word : data) {
    if (word.effective != 0 || word.permitted != 0 || word.inheritable != 0) {
      errno = EPERM;
      throw_errno("capabilities still held after drop");
    }
  }
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw_errno("prctl PR_SET_NO_NEW_PRIVS");
  uid_t ruid, euid, suid;
  gid_t rgid, egid, sgid;
  if (::getresuid(&ruid, &euid, &suid) != 0 || ::getresgid(&rgid, &egid, &sgid) != 0)
    throw_errno("getresuid/getresgid");
  if (ruid != uid || euid != uid || suid != uid || rgid != gid || egid != gid || sgid != gid) {
    errno = EPERM;
    throw_errno("identity did not change to " + std::to_string(uid));
  }
}

}  // namespace cutor::sandbox
