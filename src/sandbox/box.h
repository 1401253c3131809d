// Internal to src/sandbox: the contract between the supervisor (host side, sandbox.cpp and
// box_pool.cpp) and the box (box_main.cpp, which uses mnt/net/user/seccomp .cpp).
//
// A box is started one of two ways:
//   on demand  start_box() with the whole plan; init builds the box and runs the program.
//   prepared   start_box() with a plan that has a command_fd and no program; init builds
//              everything but /box and waits. send_box_command() later hands it the
//              program, its identity, its stdio and the workspace as a detached mount.
// Either way init ends the same: once the program has exited it kills and reaps every
// process of its pid namespace, and only then writes the one BoxStatus.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "model/limits.h"
#include "sandbox/fd.h"
#include "sandbox/sandbox.h"

namespace cutor::sandbox {

// Everything the child needs to build the box, prepared by the supervisor before fork
// so the child allocates as little as possible.
struct BoxPlan {
  std::vector<std::string> argv;  // argv[0] looked up in the PATH of env when it has no '/'
  std::vector<std::string> env;   // "KEY=value", the whole environment
  // The workspace, attached read-write (nosuid, nodev) at kBoxWorkdir: a detached mount
  // from detach_workspace_mount(), or else (tests) the host path, cloned by init itself.
  int workspace_mount_fd = -1;
  std::string workspace_host_path;
  std::vector<BindMount> read_only;  // extra read-only mounts (e.g. /nix/store)
  int64_t tmp_bytes = 0;             // size of the box's /tmp tmpfs
  uid_t uid = 65534;  // unprivileged identity inside the box (distinct per concurrent stage)
  gid_t gid = 65534;
  SandboxLimits limits;  // rlimits set in the child: RLIMIT_FSIZE, RLIMIT_CPU backstop, CORE 0
  int stdin_fd = -1;     // become 0, 1, 2 of the program
  int stdout_fd = -1;
  int stderr_fd = -1;
  int sync_fd = -1;    // init reads one byte before building the box (cgroup placement first)
  int status_fd = -1;  // box init writes the program's wait status here (see start_box)
  // >= 0: a prepared box. Init builds the filesystem without /box, then waits for one
  // send_box_command() here (argv, env, uid, gid, limits, stdio and workspace come from
  // it; EOF: discarded, init exits quietly). The stdio fields above are unused.
  int command_fd = -1;
  // Scheduling (set_scheduling): a prepared box (`background`) is built as background work,
  // off the critical path (it must not take a cpu from running stages); the stage that
  // takes it gives init stage work's scheduling at once (set_scheduling on init's pid: a
  // box still building must not keep its stage waiting at low priority, and the program
  // inherits init's). Its forker sets it (init may be taken before it has run at all, so
  // init never sets its own until it has reported). On demand, init keeps what it was born
  // with. The program gets the kernel's default slice (Scheduling::kProgram). Init goes
  // back to the background once it has reported (its exit and the namespaces' teardown are
  // nobody's critical path).
  bool background = false;
  // A network namespace prepared ahead (take_prepared_net_namespace: new, or lent again
  // after a check that it is as new) for init to enter, closed by init; -1: init unshares
  // a new one itself.
  int net_ns_fd = -1;
  // The seccomp filter, compiled once in the supervisor (seccomp_filter_program()); null:
  // compiled in the box.
  const std::vector<sock_filter>* seccomp_program = nullptr;
};

// A detached clone of the workspace directory `workspace_dirfd` (open_tree(OPEN_TREE_CLONE),
// made nosuid and nodev with mount_setattr), for BoxPlan::workspace_mount_fd or
// send_box_command. Throws std::system_error naming the syscall.
UniqueFd detach_workspace_mount(int workspace_dirfd);

// Hands a prepared box (see command_fd) its run: plan.argv, env, uid, gid, limits and the
// stdio fds, plus `workspace_mount` (from detach_workspace_mount), over `command_socket` (a
// SOCK_STREAM socketpair end; the fds travel as SCM_RIGHTS). Throws std::system_error when
// the box is gone (EPIPE) or the send fails; then nothing of the run has started.
void send_box_command(int command_socket, const BoxPlan& plan, int workspace_mount);

// The nice value of box work no stage waits for (building prepared boxes, tearing down).
inline constexpr int kBackgroundNice = 19;

// The time slice of work a stage waits for: the shortest the kernel allows (100 us).
inline constexpr uint64_t kStageWorkSliceNs = 100'000;

enum class Scheduling {
  // Work no stage waits for: SCHED_OTHER at kBackgroundNice, the kernel's default slice.
  // Not SCHED_IDLE: idle-priority work that holds a kernel lock every box needs (the mount
  // namespace semaphore while a box's mounts are torn down, cgroup_mutex while a cgroup is
  // made or removed) hardly runs while programs keep the cpus busy, and every box being
  // set up waits behind it: with two busy loops on the 2-core VM, `echo hi` took up to
  // 1.8 s (bench/README.md, "busy host").
  kBackground,
  // Work a stage waits for in the box's processes (the spawner and its forks on demand,
  // the init of a taken box): SCHED_OTHER at the given nice, slice kStageWorkSliceNs. Its
  // share of the cpu is unchanged; a short slice only makes its wake-ups preempt a busy
  // program at once (EEVDF, Linux 6.12 and later; older kernels ignore the slice) rather
  // than after the program's slice, on each of a box's hand-offs. The server's own threads
  // keep the default slice: giving them the short one as well measured the same under
  // load and cost a few percent of throughput on an idle machine (bench/README.md).
  kStageWork,
  // A user's program: SCHED_OTHER at the given nice, the kernel's default slice, as any
  // process competing for the cpu (a short slice would only add context switches).
  kProgram,
};

// Sets the scheduling of thread `tid` (0: the calling thread) in one sched_setattr.
// Returns 0 or the errno. kBackground where sched_setattr is refused (a seccomp policy
// around the server): nice kBackgroundNice alone, which needs no privilege.
int set_scheduling(pid_t tid, Scheduling scheduling, int nice);

// Box init from its first instruction, in the child of a fork into a fresh pid namespace
// (start_box, or the spawner's clone). Never returns.
[[noreturn]] void box_init_main(const BoxPlan& plan);

// Overwrites the calling process's command line and environment strings in its own memory
// (what /proc/<pid>/cmdline and environ show) with `name` and zeros, and sets its comm to
// `name`: a fork of the server must not show the server's arguments. Throws
// std::system_error.
void hide_server_command_line(const char* name);

// Box init's side of send_box_command: fills plan's argv, env, uid, gid, limits and stdio
// fds (now owned by the caller, close-on-exec) and `workspace_mount`. False when the socket
// was closed before a command (the box was discarded). Throws std::system_error (EPROTO
// for a malformed message).
bool receive_box_command(int command_socket, BoxPlan& plan, UniqueFd& workspace_mount);

// Starts a box and returns the pid of its init, PID 1 of a fresh pid namespace, forked
// straight from the calling thread (the thread alone enters the new pid namespace for the
// fork and gets the process's own back before returning; other threads are unaffected).
// Init waits for one byte on sync_fd (the caller puts it into the stage cgroup first),
// enters fresh mount, net, ipc, uts and cgroup namespaces, builds the filesystem, (for a
// prepared box: waits for its command,) starts the program with its identity dropped and
// seccomp applied, waits for it, kills and reaps every other process of the namespace,
// writes one BoxStatus to status_fd and exits. So once the status is in, no process of
// the user's is left anywhere: the caller may end the stage then and leave reaping init
// (and the kernel's namespace teardown) to later. On a setup failure the BoxStatus has
// `setup_errno` and a message naming the step, syscall and errno. Init has
// PR_SET_PDEATHSIG(SIGKILL): it dies with the calling thread. Killed (a limit, the memory cgroup),
// it reports nothing: its wait status says how it ended. Throws std::system_error when the box
// cannot be started.
pid_t start_box(const BoxPlan& plan);

// What box init reports on status_fd (one write, fixed size).
struct BoxStatus {
  int wait_status = 0;  // as from waitpid() for the program
  int setup_errno = 0;  // non-zero: the box could not be built; `message` says where
  char message[240] = {};
  // Resources of every process box init reaped (RUSAGE_CHILDREN of init): a fallback for
  // hosts where the cpuacct/memory cgroup is not usable. Processes still running when the
  // program exits are killed and reaped first, so they count too.
  int64_t cpu_time_us = 0;    // user + system
  int64_t max_rss_bytes = 0;  // largest single process
};

}  // namespace cutor::sandbox
