// Internal to src/sandbox: the box's filesystem, built by box init inside its fresh mount
// and pid namespaces (so the new /proc shows the box's own processes).
#pragma once

#include "sandbox/box.h"

namespace cutor::sandbox {

// Makes every mount private, assembles a new root on a tmpfs (read-only host base system,
// a minimal generated /etc, the plan's read-only extras, an empty /box, a fresh /tmp,
// /proc and a tiny /dev) and pivots into it. The root stays writable (no one else is in
// the box yet) until finish_box_filesystem. Throws std::system_error naming the step and
// path on failure.
void build_box_base(const BoxPlan& plan);

// After build_box_base: attaches `workspace_mount` (detach_workspace_mount) at /box, writes
// /etc/passwd and /etc/group naming plan.uid/gid, and remounts the root read-only.
// Throws std::system_error naming the step.
void finish_box_filesystem(const BoxPlan& plan, int workspace_mount);

}  // namespace cutor::sandbox
