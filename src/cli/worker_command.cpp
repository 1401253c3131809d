// `cutor worker`: the executor of `serve` on a shared store, with no HTTP server. Claims,
// leases and cancels go through the store (see store/postgres_submission_store.h).
#include "cli/worker_command.h"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "cli/data_dir_lock.h"
#include "cli/nix_cache_open.h"
#include "envcache/nix_environment_cache.h"
#include "executor/executor.h"
#include "sandbox/sandbox.h"
#include "store/postgres_submission_store.h"

namespace cutor {

int run_worker_command(const WorkerCommandOptions& o) {
  if (!is_postgres_url(o.store.store))
    throw std::runtime_error(
        "cutor worker: --store must be a postgresql://... URL (a worker shares the store of"
        " a `cutor serve` on another process or host)");
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  namespace fs = std::filesystem;
  // Two workers on one --data would delete each other's live workspaces.
  DataDirLock data_lock = DataDirLock::acquire(o.store.data_dir, "worker");
  auto store = open_chosen_store(o.store);
  // Claims of a worker that died are put back once their lease expired.
  if (int64_t n = store->requeue_unfinished())
    spdlog::info("recovery: {} submissions of lost workers queued again", n);

  SandboxOptions sandbox_options;
  sandbox_options.spawner_exe = "/proc/self/exe";  // a dead spawner is restarted from it
  sandbox_options.isolate = !o.no_isolation;
  sandbox_options.prepared_boxes =
      o.prepared_boxes >= 0 ? o.prepared_boxes : std::min(o.workers, 8);
  // On the main thread before any other starts (see serve in main.cpp).
  auto sandbox = make_sandbox(sandbox_options);

  OpenedNixCache opened = open_nix_cache_or_say_why({.data_dir = o.store.data_dir,
                                                     .nix_path = o.nix_path,
                                                     .substituters = o.substituters,
                                                     .cache_budget_bytes = o.cache_budget});
  std::unique_ptr<NixEnvironmentCache> nix = std::move(opened.cache);

  ExecutorOptions exec_options;
  exec_options.workers = o.workers;
  exec_options.no_environments_reason = opened.problem;
  exec_options.work_dir = fs::absolute(o.store.data_dir + "/work").lexically_normal().string();
  Executor executor(*store, *sandbox, nix.get(), exec_options);
  executor.start();
  spdlog::info("cutor {} worker running {} at once, local state in {}", CUTOR_VERSION, o.workers,
               o.store.data_dir);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info(
      "{}: stopping (running submissions get a grace period; the others' leases expire"
      " and other workers take them)",
      sig == SIGTERM ? "SIGTERM" : "SIGINT");
  executor.stop();
  if (nix) nix->wait_idle();
  spdlog::info("stopped");
  return 0;
}

}  // namespace cutor
