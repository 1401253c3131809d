// The executor: takes claimed submissions through their stages and writes each result
// back to the request store as it happens.
#pragma once

#include <memory>
#include <stop_token>
#include <string>
#include <vector>

#include "envcache/environment_cache.h"
#include "model/submission.h"
#include "sandbox/sandbox.h"
#include "store/submission_store.h"

namespace cutor {

struct ExecutorOptions {
  int workers = 1;
  // Parent directory of the per-submission workspaces.
  std::string work_dir;
  // Why there is no environment cache (said in the environment stage of each cutor.nix
  // submission, which ends INTERNAL_ERROR); empty: "no Nix environment cache".
  std::string no_environments_reason;
  // The default environment's variables (no cutor.nix). A Nix environment's variables
  // are added on top, then the submission's own `env`.
  std::vector<std::string> base_env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/box",
                                       "TMPDIR=/tmp", "LANG=C.UTF-8", "USER=cutor"};
  // On stop(): how long running submissions may take to finish before they are
  // interrupted and left for the next start to run again.
  int shutdown_grace_ms = 10'000;
};

class Executor {
 public:
  // `environments` may be null: then a submission with cutor.nix ends ENVIRONMENT_ERROR.
  Executor(SubmissionStore& store, Sandbox& sandbox, EnvironmentCache* environments,
           ExecutorOptions options);
  ~Executor();  // stop()s
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Removes workspaces a crashed server left behind, then starts `options.workers`
  // threads that claim and run submissions until stop(), and as many that record the
  // results (a worker hands its submission's last, fsynced write over and claims the next).
  void start();
  // Stops claiming; waits up to shutdown_grace_ms for running submissions, then
  // interrupts the rest without finishing them (they run again on the next start).
  void stop();

  // Runs one claimed submission to FINISHED on the calling thread (used by the
  // workers and by `cutor run`). Returns without finishing it only when `shutdown`
  // is requested.
  void execute(const Submission& submission, std::stop_token shutdown);

  // Prometheus text of the stage duration histograms and the running count.
  std::string metrics_text() const;

  int running_count() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace cutor
