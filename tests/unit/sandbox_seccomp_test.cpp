// The box's seccomp program, run by a small classic-BPF interpreter on chosen syscalls and
// arguments: what it decides does not depend on which socket families or syscalls this
// host's kernel happens to have (AF_ALG, for one, is not loaded everywhere).
#include <errno.h>
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "sandbox/seccomp.h"

namespace cutor::sandbox {
namespace {

// Runs a seccomp program on one syscall the way the kernel does (seccomp_data as packet,
// 16 scratch words); only the instructions seccomp allows, anything else throws.
uint32_t run_filter(const std::vector<sock_filter>& program, const seccomp_data& data) {
  std::array<uint32_t, BPF_MEMWORDS> mem{};
  uint32_t a = 0, x = 0;
  for (size_t pc = 0; pc < program.size(); ++pc) {
    const sock_filter& in = program[pc];
    auto word_at = [&](uint32_t offset) {
      if (offset % 4 != 0 || offset + 4 > sizeof(data))
        throw std::runtime_error("load outside seccomp_data at " + std::to_string(pc));
      uint32_t value;
      std::memcpy(&value, reinterpret_cast<const char*>(&data) + offset, 4);
      return value;
    };
    switch (in.code) {
      case BPF_LD | BPF_W | BPF_ABS:
        a = word_at(in.k);
        break;
      case BPF_LD | BPF_IMM:
        a = in.k;
        break;
      case BPF_LDX | BPF_IMM:
        x = in.k;
        break;
      case BPF_LD | BPF_MEM:
        a = mem.at(in.k);
        break;
      case BPF_LDX | BPF_MEM:
        x = mem.at(in.k);
        break;
      case BPF_ST:
        mem.at(in.k) = a;
        break;
      case BPF_STX:
        mem.at(in.k) = x;
        break;
      case BPF_ALU | BPF_AND | BPF_K:
        a &= in.k;
        break;
      case BPF_ALU | BPF_OR | BPF_K:
        a |= in.k;
        break;
      case BPF_MISC | BPF_TAX:
        x = a;
        break;
      case BPF_MISC | BPF_TXA:
        a = x;
        break;
      case BPF_JMP | BPF_JA:
        pc += in.k;
        break;
      case BPF_JMP | BPF_JEQ | BPF_K:
        pc += (a == in.k) ? in.jt : in.jf;
        break;
      case BPF_JMP | BPF_JGT | BPF_K:
        pc += (a > in.k) ? in.jt : in.jf;
        break;
      case BPF_JMP | BPF_JGE | BPF_K:
        pc += (a >= in.k) ? in.jt : in.jf;
        break;
      case BPF_JMP | BPF_JSET | BPF_K:
        pc += (a & in.k) ? in.jt : in.jf;
        break;
      case BPF_JMP | BPF_JEQ | BPF_X:
        pc += (a == x) ? in.jt : in.jf;
        break;
      case BPF_JMP | BPF_JGT | BPF_X:
        pc += (a > x) ? in.jt : in.jf;
        break;
      case BPF_JMP | BPF_JGE | BPF_X:
        pc += (a >= x) ? in.jt : in.jf;
        break;
      case BPF_RET | BPF_K:
        return in.k;
      case BPF_RET | BPF_A:
        return a;
      default:
        throw std::runtime_error("unexpected BPF opcode " + std::to_string(in.code) + " at " +
                                 std::to_string(pc));
    }
  }
  throw std::runtime_error("program ran off its end");
}

uint32_t decide(long nr, std::array<uint64_t, 6> args = {}, uint32_t arch = AUDIT_ARCH_X86_64) {
  seccomp_data data{};
  data.nr = static_cast<int>(nr);
  data.arch = arch;
  for (size_t i = 0; i < args.size(); ++i) data.args[i] = args[i];
  return run_filter(seccomp_filter_program(), data);
}

constexpr uint32_t kAllow = SECCOMP_RET_ALLOW;
constexpr uint32_t errno_ret(int e) {
  return SECCOMP_RET_ERRNO | static_cast<uint32_t>(e);
}

TEST(SeccompFilterTest, FitsTheKernelsLimit) {
  EXPECT_LT(seccomp_filter_program().size(), static_cast<size_t>(BPF_MAXINSNS));
}

TEST(SeccompFilterTest, ListedSyscallsPassUnlistedOnesGetEnosys) {
  EXPECT_EQ(decide(SYS_read), kAllow);
  EXPECT_EQ(decide(SYS_execve), kAllow);
  EXPECT_EQ(decide(SYS_rt_sigreturn), kAllow);
  EXPECT_EQ(decide(SYS_wait4), kAllow);
  for (int nr : {SYS_io_setup, SYS_io_submit, SYS_adjtimex, SYS_get_robust_list, SYS_set_mempolicy,
                 SYS_move_pages, SYS_migrate_pages, SYS_sysfs, SYS_landlock_create_ruleset,
                 SYS_clone3, 1000})
    EXPECT_EQ(decide(nr), errno_ret(ENOSYS)) << "syscall " << nr;
}

TEST(SeccompFilterTest, RefusedSyscallsGetEperm) {
  for (long nr : {SYS_modify_ldt, SYS_mount, SYS_unshare, SYS_ptrace, SYS_bpf, SYS_keyctl,
                  SYS_io_uring_setup, SYS_perf_event_open})
    EXPECT_EQ(decide(nr), errno_ret(EPERM)) << "syscall " << nr;
}

TEST(SeccompFilterTest, OnlyUnixAndIpSocketFamilies) {
  for (long nr : {SYS_socket, SYS_socketpair}) {
    for (uint64_t high : {0ull, 1ull << 32, 0xffffffff00000000ull}) {
      for (uint64_t family : {AF_UNIX, AF_INET, AF_INET6})
        EXPECT_EQ(decide(nr, {high | family, SOCK_STREAM}), kAllow) << nr << " " << family;
      // Every other value of the 32 bits the kernel reads (a sample past 2^16).
      for (uint64_t family = 0; family < 70000; ++family) {
        if (family == AF_UNIX || family == AF_INET || family == AF_INET6) continue;
        ASSERT_EQ(decide(nr, {high | family, SOCK_STREAM}), errno_ret(EAFNOSUPPORT))
            << nr << " family " << family << " high " << high;
      }
      for (uint64_t family : {0x7fffffffull, 0x80000000ull, 0xfffffffeull, 0xffffffffull})
        EXPECT_EQ(decide(nr, {high | family}), errno_ret(EAFNOSUPPORT)) << family;
    }
    EXPECT_EQ(decide(nr, {AF_ALG, SOCK_SEQPACKET}), errno_ret(EAFNOSUPPORT));
  }
}

TEST(SeccompFilterTest, TerminalInjectionIoctlsRefusedOthersPass) {
  for (uint64_t high : {0ull, 1ull << 32}) {
    EXPECT_EQ(decide(SYS_ioctl, {0, high | TIOCSTI}), errno_ret(EPERM));
    EXPECT_EQ(decide(SYS_ioctl, {0, high | TIOCLINUX}), errno_ret(EPERM));
    for (uint64_t request = 0x5400; request < 0x5500; ++request) {
      if (request == TIOCSTI || request == TIOCLINUX) continue;
      ASSERT_EQ(decide(SYS_ioctl, {0, high | request}), kAllow) << request;
    }
    EXPECT_EQ(decide(SYS_ioctl, {0, high | FIONREAD}), kAllow);
    EXPECT_EQ(decide(SYS_ioctl, {0, high | 0xc0185879u}), kAllow);  // a _IOWR one
  }
}

TEST(SeccompFilterTest, CloneWithoutNamespaceFlagsOnly) {
  EXPECT_EQ(decide(SYS_clone, {SIGCHLD}), kAllow);
  EXPECT_EQ(decide(SYS_clone,
                   {CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                    CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID}),
            kAllow);
  for (uint64_t flag : {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
                        CLONE_NEWNET, CLONE_NEWCGROUP})
    EXPECT_EQ(decide(SYS_clone, {SIGCHLD | flag}), errno_ret(EPERM)) << flag;
}

TEST(SeccompFilterTest, PersonalityQueryAndLinuxOnly) {
  EXPECT_EQ(decide(SYS_personality, {0}), kAllow);
  EXPECT_EQ(decide(SYS_personality, {0xffffffff}), kAllow);
  for (uint64_t persona : {0x0040000ull, 1ull, 0xfffffffeull, 1ull << 32, 0xffffffffffffffffull})
    EXPECT_EQ(decide(SYS_personality, {persona}), errno_ret(EPERM)) << persona;
}

TEST(SeccompFilterTest, MknodNeverMakesDevices) {
  for (uint64_t type : {0, S_IFREG, S_IFIFO, S_IFSOCK}) {
    EXPECT_EQ(decide(SYS_mknod, {0, type | 0600}), kAllow) << type;
    EXPECT_EQ(decide(SYS_mknodat, {0, 0, type | 0600}), kAllow) << type;
  }
  for (uint64_t type : {S_IFCHR, S_IFBLK, S_IFDIR}) {
    EXPECT_EQ(decide(SYS_mknod, {0, type | 0600}), errno_ret(EPERM)) << type;
    EXPECT_EQ(decide(SYS_mknodat, {0, 0, type | 0600}), errno_ret(EPERM)) << type;
  }
}

TEST(SeccompFilterTest, OtherArchitecturesAndX32AreKilled) {
  EXPECT_EQ(decide(SYS_read, {}, AUDIT_ARCH_I386), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(decide(0x40000000 | SYS_read), SECCOMP_RET_KILL_PROCESS);
}

}  // namespace
}  // namespace cutor::sandbox
