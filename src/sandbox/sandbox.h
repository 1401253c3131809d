// The sandbox: runs one stage's command isolated and limited, and reports how it ended.
//
// The executor asks for a Workspace per submission (a size-limited directory the host
// writes the submission's files into without following links), then calls run() once
// per stage. Each run() gets a fresh sandbox around the same workspace: usually one built
// ahead of time (SandboxOptions::prepared_boxes), used once and never again.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "model/limits.h"
#include "model/submission.h"

namespace cutor {

// Where the workspace appears inside the box; the stage's working directory.
inline constexpr std::string_view kBoxWorkdir = "/box";

// A submission's working directory on the host. Removing it (destructor) never follows
// a link the untrusted program planted.
class Workspace {
 public:
  virtual ~Workspace() = default;
  // Absolute host path of the directory.
  virtual const std::string& path() const = 0;
  // An O_PATH|O_DIRECTORY fd of it, valid for the Workspace's lifetime.
  virtual int dirfd() const = 0;
  // Writes one file at `relative_path` (validated like a submission file name),
  // creating parent directories as needed, exclusively and without following links
  // (openat + O_NOFOLLOW + O_EXCL). Throws std::system_error naming the path on failure.
  virtual void write_file(std::string_view relative_path, std::string_view content,
                          bool executable) = 0;
  // Copies everything in `source` (another workspace, e.g. a compiled one) into this empty
  // one as this workspace's owner: directories, regular files (permission bits without
  // set-id) and symlinks (as links, never followed); FIFOs, sockets, devices and other
  // filesystems mounted inside are left out. Throws std::system_error naming the path.
  virtual void copy_from(const Workspace& source) = 0;
};

struct BindMount {
  std::string host_path;  // absolute
  std::string box_path;   // absolute, inside the box (often the same)
};

// One command to run in a fresh sandbox.
struct SandboxSpec {
  // argv[0] without a '/' is looked up in the PATH of `env` (inside the box).
  std::vector<std::string> argv;
  // The whole environment, "KEY=value". Nothing of the server's leaks in.
  std::vector<std::string> env;
  // The workspace, mounted read-write at kBoxWorkdir; the working directory.
  const Workspace* workspace = nullptr;
  // Extra read-only mounts, e.g. /nix/store for a Nix environment.
  std::vector<BindMount> read_only;
  std::string stdin_data;
  SandboxLimits limits;
  // >= 0: the program's stdin / stdout is this fd (a pipe to another box, for interactive
  // tests) instead of stdin_data / the captured stdout. The caller keeps it: it may close
  // its copy once `on_started` has run (the box holds its own then).
  int stdin_fd = -1;
  int stdout_fd = -1;
  // Called once, on run()'s thread, when the program's box has its stdio (not called when
  // the stage could not start).
  std::function<void()> on_started;
};

struct SandboxOptions {
  // Parent of the per-stage cgroups: the server's own cgroup unless set (tests).
  std::string cgroup_parent;
  // Size limits of the workspace and of the box's /tmp.
  int64_t workspace_bytes = 256ll << 20;
  int64_t tmp_bytes = 64ll << 20;
  // Use namespaces/cgroups/seccomp. False: a plain child process with rlimits and a
  // process group (for hosts that can't, and as the fallback until the real one runs).
  bool isolate = true;
  // Isolated boxes kept built ahead of their stage (init forked, in its stage cgroup and
  // namespaces, filesystem built, waiting for a command) while stages are being run; each
  // is used once. 0: every box is built when its stage starts. Runs with `read_only`
  // mounts (Nix closures) always build theirs on demand.
  int prepared_boxes = 2;
  // Prepared boxes are discarded this long after the last run took one, so an idle server
  // holds no box processes, mounts or cgroups.
  int64_t prepared_idle_ms = 500;
  // What a restart of a dead box spawner executes: the cutor binary, which runs the
  // spawner for argv[1] == "__box-spawner" (cli). Empty: a dead spawner is not restarted
  // and every isolated stage fails as an internal error from then on.
  std::string spawner_exe;
};

// Whether the sandbox can run isolated stages (GET /api/v1/health).
struct SandboxHealth {
  bool ok = true;
  int64_t spawner_restarts = 0;
  std::string problem;  // why not ok
};

class Sandbox {
 public:
  virtual ~Sandbox() = default;

  // A new, empty workspace directory `parent_dir/name`, size-limited where the host
  // allows. Throws std::system_error with context on failure.
  virtual std::unique_ptr<Workspace> make_workspace(const std::string& parent_dir,
                                                    const std::string& name) = 0;

  // Recovery after a crash: removes every workspace directory a server that died left in
  // `parent_dir` (detaching a workspace tmpfs first, removing without following links).
  // Call once at startup, before any make_workspace() in `parent_dir`; entries that are not
  // directories are left alone. Throws std::system_error naming the first workspace that
  // could not be removed (the others are removed anyway).
  virtual void remove_stale_workspaces(const std::string& parent_dir) = 0;

  // Runs `spec` to completion, or until a limit or `cancel` stops it (then every process
  // it started is killed and the output so far kept). When it returns no process of the
  // stage is left; the box's own init, its mounts and its cgroup go moments later, off the
  // caller's time (destroying the Sandbox waits for them). Never throws for what the program
  // did; an internal failure is StageStatus::kInternalError with the reason in stderr.
  virtual StageResult run(const SandboxSpec& spec, std::stop_token cancel) = 0;

  // Thread-safe and cheap (no syscall): for health checks.
  virtual SandboxHealth health() const = 0;
};

// Call it from the server's main thread before any other thread starts: with isolate=true
// it forks the box spawner (a small single-threaded helper that forks every box, see
// src/sandbox/spawner.h), which is best forked while the process is small and has one
// thread; it stays for the Sandbox's lifetime, as a child process of the caller, and the
// calling thread must outlive the Sandbox (boxes die with it, PR_SET_PDEATHSIG). Throws
// std::system_error when the spawner cannot be started (boxes are never forked otherwise).
// With isolate=true this also removes stage cgroups left below the cgroup parent by a
// server that died (named stage-<pid>-<n> with <pid> no longer running, prepared boxes'
// included), killing what still ran in them. Destroying the Sandbox discards its prepared
// boxes and waits until every box it started has exited and its cgroup is removed.
std::unique_ptr<Sandbox> make_sandbox(const SandboxOptions& options);

// argv[1] of cutor when a server executes it as a restarted box spawner (spawner_exe).
inline constexpr std::string_view kBoxSpawnerArgument = "__box-spawner";
// That spawner's main, called first thing by cutor's main: argv is {exe,
// kBoxSpawnerArgument, server pid}, fd 3 its socket, fd 4 the memfd of the shared pid
// page. Returns (1) only on a bad invocation.
int box_spawner_main(int argc, char** argv);

}  // namespace cutor
