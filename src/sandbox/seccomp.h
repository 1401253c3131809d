// Internal to src/sandbox: the box program's seccomp filter (libseccomp).
#pragma once

namespace cutor::sandbox {

// Installs the filter on the calling thread: allow by default, refuse with EPERM the
// syscalls that reach kernel attack surface or escape the namespaces (mount, unshare,
// setns, namespace flags of clone, ptrace, bpf, io_uring, keyrings, modules, TIOCSTI...),
// ENOSYS for clone3 (libc falls back to clone, whose flags can be checked), and kill the
// process for any non-native architecture (x86 32-bit int 0x80, x32). Requires
// no_new_privs (set by drop_identity). Throws std::system_error naming the rule.
void install_seccomp_filter();

}  // namespace cutor::sandbox
