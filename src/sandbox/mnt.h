// Internal to src/sandbox: the box's filesystem, built by box init inside its fresh mount
// and pid namespaces (so the new /proc shows the box's own processes).
#pragma once

#include "sandbox/box.h"

namespace cutor::sandbox {

// Makes every mount private, assembles a new root on a tmpfs (read-only host base system,
// a minimal generated /etc, the plan's read-only extras, the workspace at /box, a fresh
// /tmp, /proc and a tiny /dev), pivots into it and remounts the root read-only.
// Throws std::system_error naming the step and path on failure.
void build_box_filesystem(const BoxPlan& plan);

}  // namespace cutor::sandbox
