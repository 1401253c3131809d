// make_sandbox and the Sandbox: prepares a stage (plain reaper or isolated box), hands it to
// the supervisor loop, and turns what happened into a StageResult.
#include "sandbox/sandbox.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <set>
#include <system_error>
#include <utility>

#include "sandbox/box.h"
#include "sandbox/box_pool.h"
#include "sandbox/cgroup.h"
#include "sandbox/fd.h"
#include "sandbox/net.h"
#include "sandbox/plain_stage.h"
#include "sandbox/seccomp.h"
#include "sandbox/spawner.h"
#include "sandbox/supervisor.h"
#include "sandbox/taskstats.h"
#include "sandbox/uid_pool.h"
#include "sandbox/workspace.h"

namespace cutor {

namespace {

using sandbox::BoxStatus;
using sandbox::make_pipe;
using sandbox::Pipe;
using sandbox::PlainReport;
using sandbox::StageChild;
using sandbox::StopReason;
using sandbox::SupervisedRun;
using sandbox::UniqueFd;

// Unprivileged identities for boxes come from the host-wide pool (uid_pool.h): one per
// live workspace (so every stage of a submission can write what the previous one left, and
// concurrent submissions, of this server or any other, never share a uid), or one per run
// for a workspace not made here.
using sandbox::UidLease;

std::unique_ptr<UidLease> lease_box_uid() {
  return sandbox::UidPool::host().acquire();
}

// A workspace that holds its box uid for as long as it exists.
class PooledWorkspace : public sandbox::HostWorkspace {
 public:
  PooledWorkspace(std::unique_ptr<UidLease> lease, std::unique_ptr<sandbox::HostWorkspace> inner)
      : lease_(std::move(lease)), inner_(std::move(inner)) {}
  const std::string& path() const override { return inner_->path(); }
  int dirfd() const override { return inner_->dirfd(); }
  void write_file(std::string_view relative_path, std::string_view content,
                  bool executable) override {
    inner_->write_file(relative_path, content, executable);
  }
  void copy_from(const Workspace& source) override { inner_->copy_from(source); }
  uid_t owner_uid() const override { return inner_->owner_uid(); }
  gid_t owner_gid() const override { return inner_->owner_gid(); }

 private:
  std::unique_ptr<UidLease> lease_;  // released after the directory is gone
  std::unique_ptr<sandbox::HostWorkspace> inner_;
};

// Reports on the status pipe are fixed-size records; a setup failure wins, otherwise the
// last record is the final word.
template <typename Record>
std::optional<Record> pick_report(const std::string& bytes) {
  std::optional<Record> last;
  for (size_t at = 0; at + sizeof(Record) <= bytes.size(); at += sizeof(Record)) {
    Record record;
    std::memcpy(&record, bytes.data() + at, sizeof record);
    record.message[sizeof record.message - 1] = '\0';
    if (record.setup_errno != 0) return record;
    last = record;
  }
  return last;
}

// What the mode-specific side knows after the stage, besides the supervisor's record.
struct Ending {
  std::optional<int> program_wait_status;
  std::string setup_error;  // non-empty: the stage could not be started
  int64_t cpu_time_us = 0;
  int64_t memory_bytes = 0;
  bool oom_killed = false;
};

void fill_code_and_signal(StageResult& result, int wait_status) {
  if (WIFEXITED(wait_status)) {
    result.code = WEXITSTATUS(wait_status);
  } else if (WIFSIGNALED(wait_status)) {
    result.signal = WTERMSIG(wait_status);
  }
}

StageResult make_result(SupervisedRun& run, const Ending& ending, const SandboxLimits& limits) {
  StageResult result;
  result.stdout_data = std::move(run.stdout_data);
  result.stderr_data = std::move(run.stderr_data);
  result.output = std::move(run.output);
  result.truncated = run.truncated;
  result.wall_time_us = run.wall_time_us;
  result.cpu_time_us = ending.cpu_time_us;
  result.memory_bytes = ending.memory_bytes;

  auto internal = [&](const std::string& why) {
    result.status = StageStatus::kInternalError;
    result.code.reset();
    result.signal.reset();
    result.stderr_data += "cutor: internal error: " + why + "\n";
    result.output += "cutor: internal error: " + why + "\n";
  };
  if (!run.internal_error.empty()) {
    internal(run.internal_error);
    return result;
  }
  if (!ending.setup_error.empty()) {
    internal(ending.setup_error);
    return result;
  }
  if (ending.program_wait_status) fill_code_and_signal(result, *ending.program_wait_status);
  const bool cpu_over = limits.cpu_time_ms > 0 && ending.cpu_time_us > limits.cpu_time_ms * 1000;

  if (ending.oom_killed || run.stop == StopReason::kMemory) {
    result.status = StageStatus::kMemoryLimitExceeded;
  } else if (run.stop == StopReason::kOutput) {
    result.status = StageStatus::kOutputLimitExceeded;
  } else if (run.stop == StopReason::kWallTime) {
    result.status = StageStatus::kWallTimeLimitExceeded;
  } else if (run.stop == StopReason::kCpuTime) {
    result.status = StageStatus::kTimeLimitExceeded;
  } else if (run.stop == StopReason::kCancelled) {
    result.status = StageStatus::kSignaled;
    result.code.reset();
    result.signal = SIGKILL;
  } else if (!ending.program_wait_status) {
    internal("the stage ended without reporting the program's exit status");
  } else if (result.signal == SIGXCPU || cpu_over) {
    result.status = StageStatus::kTimeLimitExceeded;  // the RLIMIT_CPU backstop or just over
  } else if (result.signal) {
    result.status = StageStatus::kSignaled;
  } else {
    result.status = *result.code == 0 ? StageStatus::kOk : StageStatus::kNonzeroExit;
  }
  if (result.status != StageStatus::kInternalError && !result.code && !result.signal) {
    result.signal = SIGKILL;  // killed at a limit before it could report: the box went down
  }
  return result;
}

StageResult internal_error_result(const std::string& why) {
  StageResult result;
  result.status = StageStatus::kInternalError;
  result.stderr_data = "cutor: internal error: " + why + "\n";
  result.output = result.stderr_data;
  return result;
}

// Stage 1: the reaper's tree, measured through /proc, stopped by closing the control pipe.
class PlainControl : public sandbox::StageControl {
 public:
  PlainControl(pid_t reaper, UniqueFd control) : reaper_(reaper), control_(std::move(control)) {}
  int64_t cpu_time_us() override { return sandbox::process_tree_cpu_time_us(reaper_); }
  void kill_all() override { control_.reset(); }

 private:
  pid_t reaper_;
  UniqueFd control_;
};

// Stage 2: the box, measured through its cgroup, stopped by killing the box's init (the
// rest of its pid namespace follows) and everything in the cgroup.
class BoxControl : public sandbox::StageControl {
 public:
  // `exited` (may be null) counts the threads of `uid` that exited, where the cgroup's cpu
  // time is only an estimate from the live processes.
  BoxControl(int init_pidfd, sandbox::StageCgroup& cgroup, sandbox::ExitedThreadCpu* exited,
             uid_t uid)
      : init_pidfd_(init_pidfd), cgroup_(cgroup), exited_(exited), uid_(uid) {}
  int64_t cpu_time_us() override {
    const int64_t estimate = cgroup_.cpu_time_us();
    if (exited_ == nullptr || cgroup_.cpu_time_is_exact()) return estimate;
    // Exited threads first: one that exits between the two reads is missed once (an
    // undercount), never counted twice. Never below the estimate, which has init's cutime.
    const int64_t gone = exited_->cpu_time_us(uid_);
    return std::max(estimate, gone + sandbox::live_threads_cpu_time_us(cgroup_.processes()));
  }
  bool memory_limit_hit() override { return cgroup_.oom_killed(); }
  void kill_all() override {
    ::syscall(SYS_pidfd_send_signal, init_pidfd_, SIGKILL, nullptr, 0);
    try {
      cgroup_.kill_all();
    } catch (const std::exception&) {
      // The pid namespace dies with its init anyway.
    }
  }

 private:
  int init_pidfd_;
  sandbox::StageCgroup& cgroup_;
  sandbox::ExitedThreadCpu* exited_;
  uid_t uid_;
};

// Counts the exited threads of a box uid for one stage (see taskstats.h).
class ExitedCpuTracking {
 public:
  ExitedCpuTracking(sandbox::ExitedThreadCpu* exited, uid_t uid) : exited_(exited), uid_(uid) {
    if (exited_ != nullptr) exited_->track(uid_);
  }
  ~ExitedCpuTracking() {
    if (exited_ != nullptr) exited_->untrack(uid_);
  }
  ExitedCpuTracking(const ExitedCpuTracking&) = delete;
  ExitedCpuTracking& operator=(const ExitedCpuTracking&) = delete;

 private:
  sandbox::ExitedThreadCpu* exited_;
  uid_t uid_;
};

std::string unique_stage_name() {
  static std::atomic<uint64_t> counter{0};
  return "stage-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

int nice_of_this_thread() {
  errno = 0;
  const int nice = ::getpriority(PRIO_PROCESS, 0);
  return errno == 0 ? nice : 0;
}

// A started box's init and stage cgroup, owned until the stage is over, then handed to the
// reaper: init is killed first unless it was reaped already (pid -1). It reported before
// (its namespace is empty) or it is being stopped: either way nothing of the user's is
// left to wait for, only our init's exit and the cgroup's removal.
struct StartedBox {
  explicit StartedBox(sandbox::BoxReaper& reaper) : reaper(reaper) {}
  ~StartedBox() {
    if (pid > 0) ::kill(pid, SIGKILL);
    if (pid > 0 || cgroup || net) reaper.adopt(pid, std::move(cgroup), std::move(net));
  }
  StartedBox(const StartedBox&) = delete;
  StartedBox& operator=(const StartedBox&) = delete;

  sandbox::BoxReaper& reaper;
  pid_t pid = -1;
  std::unique_ptr<sandbox::StageCgroup> cgroup;
  sandbox::LentNetNamespace net;
};

class SandboxImpl : public Sandbox {
 public:
  SandboxImpl(const SandboxOptions& options, std::unique_ptr<sandbox::Spawner> spawner)
      : spawner_(std::move(spawner)), stage_nice_(nice_of_this_thread()), options_(options) {
    if (options_.isolate && options_.prepared_boxes > 0) {
      sandbox::BoxPoolOptions pool;
      pool.size = static_cast<size_t>(options_.prepared_boxes);
      pool.idle_ms = options_.prepared_idle_ms;
      pool.cgroup_parent = options_.cgroup_parent;
      pool.tmp_bytes = options_.tmp_bytes;
      pool.spawner = spawner_.get();
      pool.next_cgroup_name = unique_stage_name;
      pool_ = std::make_unique<sandbox::BoxPool>(std::move(pool), reaper_);
    }
  }

  std::unique_ptr<Workspace> make_workspace(const std::string& parent_dir,
                                            const std::string& name) override {
    if (!options_.isolate) {
      // Stage 1: the program runs as the server's own uid; no owner change is needed.
      return sandbox::create_workspace(parent_dir, name, {});
    }
    std::unique_ptr<UidLease> lease = lease_box_uid();
    sandbox::WorkspaceOptions ws;
    ws.tmpfs_bytes = options_.workspace_bytes;
    ws.owner_uid = lease->uid();
    ws.owner_gid = lease->uid();
    auto inner = sandbox::create_workspace(parent_dir, name, ws);
    return std::make_unique<PooledWorkspace>(std::move(lease), std::move(inner));
  }

  void remove_stale_workspaces(const std::string& parent_dir) override {
    sandbox::remove_stale_workspaces(parent_dir);
  }

  StageResult run(const SandboxSpec& spec, std::stop_token cancel) override {
    if (spec.argv.empty()) return internal_error_result("run: empty argv");
    if (spec.workspace == nullptr) return internal_error_result("run: no workspace");
    try {
      return options_.isolate ? run_box(spec, std::move(cancel))
                              : run_plain(spec, std::move(cancel));
    } catch (const std::system_error& e) {
      return internal_error_result(std::string(e.what()) + " (errno " +
                                   std::to_string(e.code().value()) + ")");
    } catch (const std::exception& e) {
      return internal_error_result(e.what());
    }
  }

 private:
  StageResult run_plain(const SandboxSpec& spec, std::stop_token cancel) {
    sandbox::PlainPlan plan;
    plan.argv = spec.argv;
    plan.env = spec.env;
    plan.workdir = spec.workspace->path();
    plan.limits = spec.limits;
    plan.stdin_fd = spec.stdin_fd;
    plan.stdout_fd = spec.stdout_fd;
    UniqueFd control;
    StageChild child = sandbox::start_plain_stage(plan, control);
    if (spec.on_started) spec.on_started();
    PlainControl stage_control(child.pid, std::move(control));
    SupervisedRun run =
        sandbox::supervise(child, stage_control, spec.limits, spec.stdin_data, std::move(cancel));

    Ending ending;
    std::optional<PlainReport> report = pick_report<PlainReport>(run.status_bytes);
    if (report && report->setup_errno != 0) {
      ending.setup_error = report->message;
    } else if (report) {
      ending.program_wait_status = report->wait_status;
      ending.memory_bytes = report->max_rss_kib * 1024;
      ending.cpu_time_us = report->cpu_time_us;
    } else if (run.internal_error.empty() && run.stop == StopReason::kNone) {
      ending.setup_error = "the stage reaper exited without a report (wait status " +
                           std::to_string(run.child_wait_status) + ")";
    }
    ending.cpu_time_us = std::max(ending.cpu_time_us, run.cpu_time_us);
    return make_result(run, ending, spec.limits);
  }

  StageResult retry_on_demand(const SandboxSpec& spec, std::stop_token cancel) {
    return run_box(spec, std::move(cancel), /*on_demand=*/true);
  }

  // `on_demand`: never a prepared box.
  StageResult run_box(const SandboxSpec& spec, std::stop_token cancel, bool on_demand = false) {
    std::unique_ptr<UidLease> own_uid;
    uid_t uid;
    gid_t gid;
    auto* host_workspace = dynamic_cast<const sandbox::HostWorkspace*>(spec.workspace);
    if (host_workspace != nullptr && host_workspace->owner_uid() != static_cast<uid_t>(-1)) {
      uid = host_workspace->owner_uid();
      gid = host_workspace->owner_gid();
    } else {
      own_uid = lease_box_uid();
      uid = own_uid->uid();
      gid = own_uid->uid();
    }

    // A prepared box when one is ready and the run needs no extra mounts; else one built
    // now. From here on `box` owns init and the stage cgroup: however run_box ends, they go
    // to the reaper (init killed first unless it reported).
    StartedBox box(reaper_);
    std::optional<sandbox::PreparedBox> prepared;
    if (pool_ && spec.read_only.empty() && !on_demand) prepared = pool_->take(spec.limits);
    const bool taken_from_pool = prepared.has_value();
    int scheduling_error = 0;
    if (!prepared) {
      // Built now, the same way: a box waiting for its command, handed it at once.
      auto cgroup =
          sandbox::create_stage_cgroup(options_.cgroup_parent, unique_stage_name(), spec.limits);
      prepared = sandbox::start_prepared_box(
          spawner_.get(), std::move(cgroup), spec.limits, options_.tmp_bytes, spec.read_only,
          sandbox::take_prepared_net_namespace(), /*background=*/false);
    } else {
      // Built in the background; from now on a stage waits for it.
      scheduling_error =
          sandbox::set_scheduling(prepared->pid, sandbox::Scheduling::kStageWork, stage_nice_);
      if (scheduling_error == 0 && !(prepared->cgroup_limits == spec.limits))
        prepared->cgroup->set_limits(spec.limits);
    }
    box.pid = prepared->pid;
    box.cgroup = std::move(prepared->cgroup);
    box.net = std::move(prepared->net);
    // A box left at background priority would run its stage behind every busy program:
    // build one at the server's priority instead (this one goes to the reaper).
    if (scheduling_error != 0) return retry_on_demand(spec, std::move(cancel));
    sandbox::ExitedThreadCpu* exited =
        box.cgroup->cpu_time_is_exact() ? nullptr : sandbox::ExitedThreadCpu::host();
    ExitedCpuTracking tracking(exited, uid);

    Pipe in = make_pipe("stdin");
    Pipe out = make_pipe("stdout");
    Pipe err = make_pipe("stderr");
    UniqueFd workspace_mount = sandbox::detach_workspace_mount(spec.workspace->dirfd());

    sandbox::BoxPlan plan;
    plan.argv = spec.argv;
    plan.env = spec.env;
    plan.uid = uid;
    plan.gid = gid;
    plan.limits = spec.limits;
    plan.stdin_fd = spec.stdin_fd >= 0 ? spec.stdin_fd : in.read.get();
    plan.stdout_fd = spec.stdout_fd >= 0 ? spec.stdout_fd : out.write.get();
    plan.stderr_fd = err.write.get();
    plan.seccomp_program = &sandbox::seccomp_filter_program();

    StageChild child;
    std::string start_error;
    child.started_ns = sandbox::monotonic_ns();
    child.pid = prepared->pid;
    child.pidfd = std::move(prepared->pidfd);
    child.status_pipe = std::move(prepared->status);
    try {
      sandbox::send_box_command(prepared->command.get(), plan, workspace_mount.get());
    } catch (const std::exception& e) {
      start_error = std::string("handing the stage to its box: ") + e.what();
    }
    if (!start_error.empty() && taken_from_pool) {
      // The prepared box is gone (killed from outside): build one for this stage instead.
      return retry_on_demand(spec, std::move(cancel));
    }
    prepared->command.reset();  // init needs nothing more; EOF if it is still waiting
    in.read.reset();
    out.write.reset();
    err.write.reset();
    workspace_mount.reset();
    if (!start_error.empty()) return internal_error_result(start_error);
    if (spec.on_started) spec.on_started();
    // Given stdio fds are the box's alone: no data to feed, no stdout to capture.
    if (spec.stdin_fd < 0) child.stdin_pipe = std::move(in.write);
    if (spec.stdout_fd < 0) child.stdout_pipe = std::move(out.read);
    child.stderr_pipe = std::move(err.read);
    // Init reports only once its namespace is empty: the stage is over then.
    child.final_status_bytes = sizeof(BoxStatus);

    BoxControl stage_control(child.pidfd.get(), *box.cgroup, exited, uid);
    SupervisedRun run =
        sandbox::supervise(child, stage_control, spec.limits, spec.stdin_data, std::move(cancel));
    if (run.child_reaped) box.pid = -1;
    if (pool_) pool_->refill();
    sandbox::refill_prepared_net_namespaces();

    Ending ending;
    std::optional<BoxStatus> report = pick_report<BoxStatus>(run.status_bytes);
    if (report && report->setup_errno != 0) {
      ending.setup_error = report->message;
    } else if (report) {
      ending.program_wait_status = report->wait_status;
    } else if (run.child_reaped && WIFSIGNALED(run.child_wait_status)) {
      // Init was killed before it could report (a limit, kill_all, the OOM killer): that is
      // how the program's box ended.
      ending.program_wait_status = run.child_wait_status;
    }
    try {
      ending.oom_killed = box.cgroup->oom_killed();
      ending.cpu_time_us = box.cgroup->cpu_time_us();
      ending.memory_bytes = box.cgroup->memory_peak_bytes();
    } catch (const std::exception& e) {
      if (run.internal_error.empty()) run.internal_error = e.what();
    }
    // Where the cgroup cannot tell, what box init reaped is the best we have.
    if (report && ending.cpu_time_us < report->cpu_time_us)
      ending.cpu_time_us = report->cpu_time_us;
    if (report && ending.memory_bytes <= 0) ending.memory_bytes = report->max_rss_bytes;
    ending.cpu_time_us = std::max(ending.cpu_time_us, run.cpu_time_us);
    if (ending.cpu_time_us < 0) ending.cpu_time_us = 0;
    if (ending.memory_bytes < 0) ending.memory_bytes = 0;
    if (!report && run.stop == StopReason::kNone && !ending.oom_killed &&
        run.internal_error.empty()) {
      ending.setup_error = "the box exited without a report (wait status " +
                           std::to_string(run.child_wait_status) + ")";
    }
    return make_result(run, ending, spec.limits);
  }

  SandboxHealth health() const override {
    SandboxHealth h;
    if (!spawner_) return h;
    const sandbox::SpawnerHealth s = spawner_->health();
    h.ok = s.ok;
    h.spawner_restarts = s.restarts;
    h.problem = s.problem;
    return h;
  }

  // Declared in this order: the pool hands its leftovers to the reaper when it goes, and the
  // reaper waits for every init before the spawner goes.
  std::unique_ptr<sandbox::Spawner> spawner_;  // null: inits are forked by the caller
  int stage_nice_ = 0;                         // the server's nice value at make_sandbox
  sandbox::BoxReaper reaper_;
  std::unique_ptr<sandbox::BoxPool> pool_;
  SandboxOptions options_;
};

}  // namespace

std::unique_ptr<Sandbox> make_sandbox(const SandboxOptions& options) {
  // Leftovers of a server that died; best effort (a stage cgroup that could not be removed
  // now is tried again at the next start, and never collides with our new names).
  std::unique_ptr<sandbox::Spawner> spawner;
  if (options.isolate) {
    sandbox::remove_stale_stage_cgroups(options.cgroup_parent);
    // Forked before this call starts any thread of its own (the caller should not have
    // started any either): the spawner is a fork of a small, single-threaded process.
    spawner = sandbox::Spawner::start(options.spawner_exe);
    sandbox::start_preparing_net_namespaces();
  }
  return std::make_unique<SandboxImpl>(options, std::move(spawner));
}

}  // namespace cutor
