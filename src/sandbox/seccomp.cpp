#include "sandbox/seccomp.h"

#include <errno.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>
#include <span>
#include <string>
#include <system_error>

#include "sandbox/fd.h"

namespace cutor::sandbox {
namespace {

// Owns a libseccomp context.
class SeccompFilter {
 public:
  explicit SeccompFilter(uint32_t default_action) : ctx_(seccomp_init(default_action)) {
    if (ctx_ == nullptr) throw std::system_error(ENOMEM, std::generic_category(), "seccomp_init");
  }
  ~SeccompFilter() { seccomp_release(ctx_); }
  SeccompFilter(const SeccompFilter&) = delete;
  SeccompFilter& operator=(const SeccompFilter&) = delete;

  scmp_filter_ctx get() const { return ctx_; }

  // libseccomp returns -errno. A syscall this libseccomp/arch does not know is skipped
  // (it cannot be called either).
  void add(uint32_t action, const char* syscall_name, unsigned count = 0,
           const scmp_arg_cmp* args = nullptr) {
    int nr = seccomp_syscall_resolve_name(syscall_name);
    if (nr == __NR_SCMP_ERROR) return;
    int rc = seccomp_rule_add_array(ctx_, action, nr, count, args);
    if (rc < 0)
      throw std::system_error(-rc, std::generic_category(),
                              std::string("seccomp_rule_add ") + syscall_name);
  }

 private:
  scmp_filter_ctx ctx_;
};

// The allow list: what the programs of every language in the test channel call (C and C++
// programs, Python, the shells and coreutils, gcc's driver, cc1, cc1plus, as, ld/collect2,
// and the dynamic loader), grouped by what they are for. A syscall on no list below gets
// ENOSYS, the answer a kernel without it gives: libc and runtimes fall back or report
// "function not implemented" instead of dying, and a syscall newer than this list (glibc
// probes fchmodat2, map_shadow_stack... first) degrades the same way. docs/seccomp.md
// explains each group and what is left off.
constexpr const char* kAllowed[] = {
    // Files through descriptors: every program's reads and writes.
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "open",
    "openat",
    "openat2",
    "creat",
    "close",
    "close_range",
    "lseek",
    "dup",
    "dup2",
    "dup3",
    "fcntl",
    "flock",
    "fsync",
    "fdatasync",
    "sync",
    "syncfs",
    "sync_file_range",
    "ftruncate",
    "truncate",
    "fallocate",
    "fadvise64",
    "readahead",
    "sendfile",
    "splice",
    "tee",
    "vmsplice",
    "copy_file_range",
    "pipe",
    "pipe2",
    // Paths and metadata: the loader's and compilers' lookups, ls, cp, rm, mkdir, make.
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "statfs",
    "fstatfs",
    "access",
    "faccessat",
    "faccessat2",
    "getdents",
    "getdents64",
    "getcwd",
    "chdir",
    "fchdir",
    "rename",
    "renameat",
    "renameat2",
    "mkdir",
    "mkdirat",
    "rmdir",
    "link",
    "linkat",
    "unlink",
    "unlinkat",
    "symlink",
    "symlinkat",
    "readlink",
    "readlinkat",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "umask",
    "utime",
    "utimes",
    "futimesat",
    "utimensat",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
    // Memory: malloc, the loader's mappings, JITs' W^X flips, memfd (bounded by the cgroup).
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    "msync",
    "mincore",
    "mlock",
    "mlock2",
    "munlock",
    "mlockall",
    "munlockall",
    "memfd_create",
    "membarrier",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "get_mempolicy",  // libnuma (ps) probes it; read-only, own process
    // Processes and threads (clone is checked below): fork/exec/wait of shells and gcc's
    // driver, pthreads, the loader's TLS and rseq set-up.
    "fork",
    "vfork",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "wait4",
    "waitid",
    "getpid",
    "getppid",
    "gettid",
    "getpgid",
    "setpgid",
    "getpgrp",
    "getsid",
    "setsid",
    "set_tid_address",
    "set_robust_list",
    "futex",
    "futex_waitv",
    "rseq",
    "arch_prctl",
    "prctl",
    "restart_syscall",
    "sched_yield",
    "sched_getaffinity",
    "sched_setaffinity",
    "sched_getparam",
    "sched_setparam",
    "sched_getscheduler",
    "sched_setscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "sched_getattr",
    "sched_setattr",
    "getpriority",
    "setpriority",
    "ioprio_get",
    "ioprio_set",
    "getcpu",
    "kill",
    "tkill",
    "tgkill",
    "pidfd_open",
    "pidfd_send_signal",
    "getrlimit",
    "setrlimit",
    "prlimit64",
    "getrusage",
    "times",
    "sysinfo",
    "uname",
    "getrandom",
    "seccomp",
    // Identity: the getters, and the setters so that the kernel (no capabilities in the box)
    // answers EPERM as it would for any unprivileged user.
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "setgroups",
    "capget",
    "capset",
    // Signals and time: handlers, sleeps, timeouts; clocks mostly go through the vDSO.
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "pause",
    "alarm",
    "nanosleep",
    "clock_nanosleep",
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "getitimer",
    "setitimer",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    // Waiting on descriptors: select/poll/epoll loops, Python's selectors, asyncio.
    "select",
    "pselect6",
    "poll",
    "ppoll",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd",
    "eventfd2",
    // Sockets (socket and socketpair are checked below): the box's loopback network.
    "bind",
    "listen",
    "accept",
    "accept4",
    "connect",
    "getsockname",
    "getpeername",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "sendmmsg",
    "recvmmsg",
    "shutdown",
    "setsockopt",
    "getsockopt",
    // SysV and POSIX IPC: Python's multiprocessing; the box's IPC namespace is its own.
    "shmget",
    "shmat",
    "shmdt",
    "shmctl",
    "semget",
    "semop",
    "semtimedop",
    "semctl",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
};

// Refused with EPERM (not ENOSYS: the call exists, the box may not make it): kernel attack
// surface or a way out of the box's namespaces.
constexpr const char* kRefused[] = {
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "syslog",
    "iopl",
    "ioperm",
    "modify_ldt",  // 16-bit segments: the espfix/LDT bugs, and nothing 64-bit code needs
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "vhangup",
    "uselib",
    "nfsservctl",
    "fanotify_init",
    "sethostname",
    "setdomainname",
};

// The socket families a box may open: local sockets and IP over its own loopback. Every
// other family (netlink, packet, AF_ALG, vsock, XDP, TIPC, Bluetooth...) is kernel code
// no judged program needs.
constexpr uint32_t kSocketFamilies[] = {AF_UNIX, AF_INET, AF_INET6};

scmp_arg_cmp masked_eq(unsigned arg, uint64_t mask, uint64_t value) {
  return scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, mask, value};
}

// Adds `action` for every value of argument `arg`'s low 32 bits (the kernel reads it as an
// int) that is not in `except`. libseccomp has no "otherwise" per syscall and only one
// comparison per argument in a rule, so the complement is spelled as aligned blocks
// [lo, lo+size) holding none of `except`, one masked compare each (~32 per excluded value).
void add_for_values_except(SeccompFilter& filter, uint32_t action, const char* syscall_name,
                           unsigned arg, std::span<const uint32_t> except, uint64_t lo = 0,
                           uint64_t size = 1ull << 32) {
  bool holds_excluded = false;
  for (uint32_t value : except)
    holds_excluded = holds_excluded || (value >= lo && value - lo < size);
  if (!holds_excluded) {
    scmp_arg_cmp block = masked_eq(arg, 0xffffffffull & ~(size - 1), lo);
    filter.add(action, syscall_name, 1, &block);
    return;
  }
  if (size == 1) return;
  add_for_values_except(filter, action, syscall_name, arg, except, lo, size / 2);
  add_for_values_except(filter, action, syscall_name, arg, except, lo + size / 2, size / 2);
}

// Builds the whole rule set into `filter` (whose default action is ENOSYS).
void add_rules(SeccompFilter& filter) {
  // Only the native architecture: a 32-bit int 0x80 or an x32 syscall (a different table
  // where these rules do not apply) kills the process.
  int rc = seccomp_attr_set(filter.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc < 0)
    throw std::system_error(-rc, std::generic_category(), "seccomp SCMP_FLTATR_ACT_BADARCH");
  rc = seccomp_attr_set(filter.get(), SCMP_FLTATR_CTL_NNP, 1);
  if (rc < 0) throw std::system_error(-rc, std::generic_category(), "seccomp SCMP_FLTATR_CTL_NNP");
  // A binary tree of syscall numbers instead of a linear chain: loading the filter (the
  // kernel runs it for every syscall number to build its allow cache) costs each program
  // ~65 us instead of ~170 us here, and each syscall takes fewer comparisons.
  rc = seccomp_attr_set(filter.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (rc < 0)
    throw std::system_error(-rc, std::generic_category(), "seccomp SCMP_FLTATR_CTL_OPTIMIZE");

  const uint32_t allow = SCMP_ACT_ALLOW;
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  for (const char* name : kAllowed) filter.add(allow, name);
  for (const char* name : kRefused) filter.add(eperm, name);

  // The syscalls below are allowed only for some arguments. Each gets rules for both
  // outcomes: libseccomp lets an unconditional rule override conditional ones.

  // clone3 passes its flags in memory, out of the filter's reach: it is on no list, so
  // ENOSYS (the default) makes glibc fall back to clone, whose flags register is checked here.
  constexpr uint64_t kNamespaceFlags[] = {CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,   CLONE_NEWUSER,
                                          CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP};
  uint64_t any_namespace_flag = 0;
  for (uint64_t flag : kNamespaceFlags) {
    scmp_arg_cmp has_flag = SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag);
    filter.add(eperm, "clone", 1, &has_flag);
    any_namespace_flag |= flag;
  }
  scmp_arg_cmp no_namespace_flag = SCMP_A0(SCMP_CMP_MASKED_EQ, any_namespace_flag, 0);
  filter.add(allow, "clone", 1, &no_namespace_flag);

  // The terminal ioctls that inject input into (or take over) the controlling terminal.
  // The kernel reads the command as 32 bits: compare only those, so garbage in the upper
  // half cannot slip past.
  constexpr uint32_t kTerminalInjection[] = {TIOCSTI, TIOCLINUX};
  for (uint32_t request : kTerminalInjection) {
    scmp_arg_cmp is_request = masked_eq(1, 0xffffffffu, request);
    filter.add(eperm, "ioctl", 1, &is_request);
  }
  add_for_values_except(filter, allow, "ioctl", 1, kTerminalInjection);

  // Socket families (the kernel reads the family as an int): the three allowed, every other
  // value EAFNOSUPPORT, as a kernel built without that family answers.
  for (const char* name : {"socket", "socketpair"}) {
    for (uint32_t family : kSocketFamilies) {
      scmp_arg_cmp is_family = masked_eq(0, 0xffffffffu, family);
      filter.add(allow, name, 1, &is_family);
    }
    add_for_values_except(filter, SCMP_ACT_ERRNO(EAFNOSUPPORT), name, 0, kSocketFamilies);
  }

  // personality(): only the query (0xffffffff) and PER_LINUX (0) pass; anything else may
  // weaken the address space (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, MMAP_PAGE_ZERO...), and
  // the kernel stores whatever bits it is given, so no mask of "bad flags" is safe.
  // libseccomp takes one comparison per argument in a rule, so "neither 0 nor 0xffffffff"
  // is spelled as rules that each refuse one aligned block of values (full 64-bit masked
  // compares): everything above 32 bits, [2^k, 2^(k+1)-1] for k = 0..30 (1..0x7fffffff),
  // and "bits 31..k+1 set, bit k clear" for k = 0..30 (0x80000000..0xfffffffe).
  for (uint64_t persona : {0ull, 0xffffffffull}) {
    scmp_arg_cmp is_persona = SCMP_A0_64(SCMP_CMP_EQ, persona);
    filter.add(allow, "personality", 1, &is_persona);
  }
  scmp_arg_cmp above_32_bits = SCMP_A0_64(SCMP_CMP_GT, 0xffffffffull);
  filter.add(eperm, "personality", 1, &above_32_bits);
  for (int k = 0; k <= 30; ++k) {
    const uint64_t bits_k_and_up = ~((1ull << k) - 1);
    scmp_arg_cmp low_block = SCMP_A0_64(SCMP_CMP_MASKED_EQ, bits_k_and_up, 1ull << k);
    filter.add(eperm, "personality", 1, &low_block);
    const uint64_t ones_above_k = 0xffffffffull & ~((1ull << (k + 1)) - 1);
    scmp_arg_cmp high_block = SCMP_A0_64(SCMP_CMP_MASKED_EQ, bits_k_and_up, ones_above_k);
    filter.add(eperm, "personality", 1, &high_block);
  }

  // mknod: FIFOs, sockets and plain files (mkfifo, bind of a unix socket uses its own path),
  // never device nodes (the box has no CAP_MKNOD anyway; a belt to the braces). The file
  // type is a 4-bit field: every one of its 16 values gets a rule.
  for (uint64_t type = 0; type <= S_IFMT; type += S_IFMT & -S_IFMT) {
    const bool allowed = type == 0 || type == S_IFREG || type == S_IFIFO || type == S_IFSOCK;
    scmp_arg_cmp mknod_mode = SCMP_A1(SCMP_CMP_MASKED_EQ, S_IFMT, type);
    filter.add(allowed ? allow : eperm, "mknod", 1, &mknod_mode);
    scmp_arg_cmp mknodat_mode = SCMP_A2(SCMP_CMP_MASKED_EQ, S_IFMT, type);
    filter.add(allowed ? allow : eperm, "mknodat", 1, &mknodat_mode);
  }
}

std::vector<sock_filter> compile_program() {
  SeccompFilter filter(SCMP_ACT_ERRNO(ENOSYS));
  add_rules(filter);
  // libseccomp 2.5 exports only to an fd: a memfd, read back.
  UniqueFd memfd(static_cast<int>(::syscall(SYS_memfd_create, "cutor-seccomp", MFD_CLOEXEC)));
  if (!memfd) throw std::system_error(errno, std::generic_category(), "memfd_create for seccomp");
  int rc = seccomp_export_bpf(filter.get(), memfd.get());
  if (rc < 0) throw std::system_error(-rc, std::generic_category(), "seccomp_export_bpf");
  off_t size = ::lseek(memfd.get(), 0, SEEK_END);
  if (size <= 0 || size % sizeof(sock_filter) != 0 ||
      size > static_cast<off_t>(BPF_MAXINSNS * sizeof(sock_filter)))
    throw std::system_error(EINVAL, std::generic_category(),
                            "seccomp_export_bpf: odd program size " + std::to_string(size));
  std::vector<sock_filter> program(static_cast<size_t>(size) / sizeof(sock_filter));
  if (::pread(memfd.get(), program.data(), static_cast<size_t>(size), 0) != size)
    throw std::system_error(errno, std::generic_category(), "read back the seccomp program");
  return program;
}

}  // namespace

const std::vector<sock_filter>& seccomp_filter_program() {
  static std::once_flag once;
  static std::vector<sock_filter> program;
  // call_once runs again after an exception, so a failure is retried by the next caller.
  std::call_once(once, [] { program = compile_program(); });
  return program;
}

void load_seccomp_program(const std::vector<sock_filter>& program) {
  // Normally set already by drop_identity; the kernel requires it (we keep CAP_SYS_ADMIN
  // out of the box) and it can only be turned on.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    throw std::system_error(errno, std::generic_category(), "prctl PR_SET_NO_NEW_PRIVS");
  struct sock_fprog fprog;
  fprog.len = static_cast<unsigned short>(program.size());
  fprog.filter = const_cast<sock_filter*>(program.data());
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0)
    throw std::system_error(errno, std::generic_category(), "seccomp(SECCOMP_SET_MODE_FILTER)");
}

void install_seccomp_filter() {
  load_seccomp_program(seccomp_filter_program());
}

}  // namespace cutor::sandbox
