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

// Empties the capability bounding set (what can ever be gained through execve); the
// capabilities held now stay. Needs CAP_SETPCAP. Box init does it while its box is being
// built, off the stage's critical path: the program it starts inherits the empty set.
// Throws std::system_error naming the capability.
void drop_bounding_set();

// Whether drop_identity still has the bounding set to empty.
enum class BoundingSet { kDrop, kAlreadyEmpty };

// Becomes `uid`/`gid` with no supplementary groups, no capabilities (bounding, ambient,
// permitted, effective, inheritable) and no_new_privs. Must run as root. `bounding`:
// kAlreadyEmpty only in a process whose bounding set drop_bounding_set emptied (it stays
// empty in every child). Throws std::system_error naming the syscall; verifies the result
// before returning.
void drop_identity(uid_t uid, gid_t gid, BoundingSet bounding = BoundingSet::kDrop);

}  // namespace cutor::sandbox
