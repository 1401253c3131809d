// Internal to src/sandbox: the box's filesystem, built by box init inside its fresh mount
// and pid namespaces (so the new /proc shows the box's own processes).
#pragma once

#include "sandbox/box.h"

namespace cutor::sandbox {

// Called once by the box spawner (spawner.h) before it forks any init: gives the spawner a
// private mount namespace holding a small tmpfs with the parts of a box's filesystem that
// are the same for every box, built once: /etc (the host files build_box_base would copy,
// with passwd and group as links to /.cutor/, where each box writes its own) and /dev
// (the device nodes and links). Each init cloned from the spawner gets a copy of that
// namespace and binds the two read-only instead of building them: about 60 syscalls and
// 180 kB of copying less per box. Nothing of it is visible on the host; it goes with the
// spawner. False (and boxes build their own) when any step fails.
//
// With the templates it also makes a mount namespace whose read-only root is what every
// box starts from, but one with read-only extras outside /nix/store (the host base system,
// /etc, /dev and the empty mount points; see enter_box_template). Without it (a step
// failed), boxes build their root from the templates as before.
bool prepare_box_templates();

// The template namespace's fd, which box init keeps open until enter_box_template; -1 when
// there is none (no spawner, or it failed).
int box_template_namespace_fd();

// In box init, before it unshares its own mount namespace: enters the template namespace
// when there is one and every read-only extra of `plan` is a path below /nix/store (taken
// from the host first: detached read-only bind mounts), so that the unshare copies it and
// build_box_base only mounts the box's own /tmp, /proc, /dev/shm, /.cutor and, with
// extras, a read-only /nix holding them. Closes the fd either way. Returns whether it
// entered; throws std::system_error.
bool enter_box_template(const BoxPlan& plan);

// Makes every mount private, assembles a new root on a tmpfs (read-only host base system,
// a minimal generated /etc, the plan's read-only extras, an empty /box, a fresh /tmp,
// /proc and a tiny /dev) and pivots into it. The root stays writable (no one else is in
// the box yet) until finish_box_filesystem. Throws std::system_error naming the step and
// path on failure.
void build_box_base(const BoxPlan& plan);

// After build_box_base: attaches `workspace_mount` (detach_workspace_mount) at /box, writes
// /etc/passwd and /etc/group (or, with the templates, /.cutor/passwd and group, which
// they link to) naming plan.uid/gid, and remounts the root read-only.
// Throws std::system_error naming the step.
void finish_box_filesystem(const BoxPlan& plan, int workspace_mount);

}  // namespace cutor::sandbox
