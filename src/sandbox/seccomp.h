// Internal to src/sandbox: the box program's seccomp filter (libseccomp).
#pragma once

#include <linux/filter.h>

#include <vector>

namespace cutor::sandbox {

// Installs the filter on the calling thread: deny by default (ENOSYS for every syscall on
// no allow list, clone3 included: libc falls back to clone, whose flags can be checked),
// refuse with EPERM the syscalls that reach kernel attack surface or escape the namespaces
// (mount, unshare, setns, namespace flags of clone, ptrace, bpf, io_uring, keyrings,
// modules, modify_ldt, TIOCSTI...), EAFNOSUPPORT for every socket family but AF_UNIX,
// AF_INET and AF_INET6, and kill the process for any non-native architecture (x86 32-bit
// int 0x80, x32). docs/seccomp.md has the list and why. Requires no_new_privs (set by
// drop_identity). Throws std::system_error naming the rule.
void install_seccomp_filter();

// The same filter compiled to classic BPF, once per process: libseccomp's work (a few
// hundred microseconds) happens in the supervisor, not in every box. Thread-safe.
// Throws std::system_error naming the rule or step.
const std::vector<sock_filter>& seccomp_filter_program();

// Loads a program from seccomp_filter_program() on the calling thread (setting
// no_new_privs first); allocates nothing. Throws std::system_error on failure.
void load_seccomp_program(const std::vector<sock_filter>& program);

}  // namespace cutor::sandbox
