// Internal to src/sandbox: the identity and process attributes of the box's program.
#pragma once

#include <sys/types.h>

#include "model/limits.h"

namespace cutor::sandbox {

// Sets the program's rlimits: RLIMIT_FSIZE, a RLIMIT_CPU backstop (the whole tree is
// limited by the supervisor), RLIMIT_CORE 0, a bounded stack and RLIMIT_NPROC (the process
// limit where the pids cgroup is not usable; counted per uid, which is unique per box).
// Never raises a hard limit. Throws std::system_error naming the resource.
void apply_rlimits(const SandboxLimits& limits);

// Becomes `uid`/`gid` with no supplementary groups, no capabilities (bounding, ambient,
// permitted, effective, inheritable) and no_new_privs. Must run as root. Throws
// std::system_error naming the syscall; verifies the result before returning.
void drop_identity(uid_t uid, gid_t gid);

}  // namespace cutor::sandbox
