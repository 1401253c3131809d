#include "executor/executor.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "executor/project_archive.h"
#include "executor/test_cases.h"

namespace cutor {
namespace {

using Clock = std::chrono::steady_clock;

// Upper bounds (seconds) of the stage duration histogram buckets.
constexpr std::array<double, 14> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                             0.25,  0.5,    1,     2.5,  5,     10,   60};

// A Prometheus histogram per stage; lock-free counters.
class StageHistograms {
 public:
  void observe(Stage s, double seconds) {
    auto& h = hist_[static_cast<int>(s)];
    for (size_t i = 0; i < kBuckets.size(); ++i)
      if (seconds <= kBuckets[i]) h.buckets[i].fetch_add(1, std::memory_order_relaxed);
    h.count.fetch_add(1, std::memory_order_relaxed);
    h.sum_us.fetch_add(static_cast<int64_t>(seconds * 1e6), std::memory_order_relaxed);
  }
  void write(std::ostringstream& out) const {
    out << "# HELP cutor_stage_duration_seconds Wall time of each executed stage.\n"
        << "# TYPE cutor_stage_duration_seconds histogram\n";
    for (Stage s : kAllStages) {
      const auto& h = hist_[static_cast<int>(s)];
      std::string label = "stage=\"" + std::string(stage_name(s)) + "\"";
      for (size_t i = 0; i < kBuckets.size(); ++i)
        out << "cutor_stage_duration_seconds_bucket{" << label << ",le=\"" << kBuckets[i] << "\"} "
            << h.buckets[i].load() << "\n";
      out << "cutor_stage_duration_seconds_bucket{" << label << ",le=\"+Inf\"} " << h.count.load()
          << "\n";
      out << "cutor_stage_duration_seconds_sum{" << label << "} " << h.sum_us.load() / 1e6 << "\n";
      out << "cutor_stage_duration_seconds_count{" << label << "} " << h.count.load() << "\n";
    }
  }

 private:
  struct Histogram {
    std::array<std::atomic<int64_t>, kBuckets.size()> buckets{};
    std::atomic<int64_t> count{0};
    std::atomic<int64_t> sum_us{0};
  };
  std::array<Histogram, 4> hist_;
};

bool is_ok(const StageResult& r) {
  return r.status == StageStatus::kOk;
}

// The submission's result when the run stage ended as `r`.
Result result_of_run(const StageResult& r) {
  switch (r.status) {
    case StageStatus::kOk:
      return Result::kOk;
    case StageStatus::kNonzeroExit:
    case StageStatus::kSignaled:
      return Result::kRuntimeError;
    case StageStatus::kTimeLimitExceeded:
    case StageStatus::kWallTimeLimitExceeded:
      return Result::kTimeLimitExceeded;
    case StageStatus::kMemoryLimitExceeded:
      return Result::kMemoryLimitExceeded;
    case StageStatus::kOutputLimitExceeded:
      return Result::kOutputLimitExceeded;
    default:
      return Result::kInternalError;
  }
}

StageResult internal_error(const std::string& why) {
  StageResult r;
  r.status = StageStatus::kInternalError;
  r.stderr_data = "cutor: internal error: " + why + "\n";
  r.output = r.stderr_data;
  return r;
}

// The result when a stage before run failed as `r`: the server's own failure is never
// blamed on the submission.
Result result_of_failed(const StageResult& r, Result user_error) {
  return r.status == StageStatus::kInternalError ? Result::kInternalError : user_error;
}

int64_t micros_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

}  // namespace

struct Executor::State {
  SubmissionStore& store;
  Sandbox& sandbox;
  EnvironmentCache* environments;
  ExecutorOptions options;
  StageHistograms histograms;
  std::atomic<int64_t> test_runs{0};  // boxes run for test cases and their checkers

  std::stop_source claiming_off;  // workers stop claiming new submissions
  std::stop_source shutdown;      // running submissions are interrupted, left unfinished
  std::vector<std::jthread> workers;
  int listener = -1;

  // A submission's last write is a durable commit (an fsync). The workers hand it to these
  // threads and claim their next submission meanwhile; concurrent finishes then share one
  // fsync (the store's group commit). A submission stays in `running` until finished.
  struct PendingFinish {
    std::string id;
    Result result;
    std::vector<SubmissionStore::StageWrite> last;
    std::unique_ptr<Workspace> workspace;  // removed once the result is recorded
  };
  std::mutex finish_mu;
  std::condition_variable finish_cv;
  std::deque<PendingFinish> to_finish;
  bool finishers_stop = false;
  std::vector<std::jthread> finishers;

  // Submissions running here, so a cancel (seen through the store) can kill them.
  mutable std::mutex mu;
  std::condition_variable idle_cv;
  std::map<std::string, std::stop_source> running;

  State(SubmissionStore& st, Sandbox& sb, EnvironmentCache* env, ExecutorOptions opt)
      : store(st), sandbox(sb), environments(env), options(std::move(opt)) {}

  void on_change(const std::string& id, SubmissionStatus status) {
    if (status != SubmissionStatus::kFinished) return;
    std::lock_guard lock(mu);
    auto it = running.find(id);
    if (it != running.end()) it->second.request_stop();  // cancelled while running
  }

  using StageWrite = SubmissionStore::StageWrite;

  static StageResult with_status(StageStatus status) {
    StageResult r;
    r.status = status;
    return r;
  }

  void observe(const std::vector<StageWrite>& writes) {
    for (const auto& w : writes)
      if (w.result.status != StageStatus::kPending && w.result.status != StageStatus::kRunning &&
          w.result.status != StageStatus::kSkipped)
        histograms.observe(w.stage, static_cast<double>(w.result.wall_time_us) / 1e6);
  }

  // Moves the submission forward: `status` (if set) and stage results, one store write.
  // Writes that happen at the same moment go together (a stage's result, the next status
  // and the next stage's RUNNING): each write is a transaction and a notification.
  // Returns false once the submission is FINISHED (cancelled).
  bool advance(const Submission& s, std::optional<SubmissionStatus> status,
               const std::vector<StageWrite>& writes) {
    observe(writes);
    if (!store.advance(s.id, status, writes)) return false;
    if (status) spdlog::debug("submission {} {}", s.id, status_name(*status));
    return true;
  }

  // The terminal write, with the last stage results in the same durable commit.
  void finish(const std::string& id, Result r, const std::vector<StageWrite>& last) {
    if (store.finish_with_stages(id, r, last))
      spdlog::info("submission {} FINISHED {}", id, result_name(r));
  }

  // Records the result, retrying while the store refuses the write (e.g. a full disk):
  // a submission must not stay leased and unfinished while this server lives. Gives up
  // only at shutdown; the next start then runs the submission again.
  void finish_with_retry(const std::string& id, Result r, const std::vector<StageWrite>& last,
                         std::stop_token shutdown_token) {
    observe(last);
    auto backoff = std::chrono::milliseconds(100);
    for (;;) {
      try {
        finish(id, r, last);
        return;
      } catch (const std::exception& e) {
        spdlog::error("submission {}: cannot record {} (retrying in {} ms): {}", id, result_name(r),
                      backoff.count(), e.what());
      }
      std::mutex m;
      std::unique_lock lock(m);
      std::condition_variable_any cv;
      if (cv.wait_for(lock, shutdown_token, backoff, [] { return false; })) return;
      if (shutdown_token.stop_requested()) return;
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
    }
  }

  std::vector<std::string> stage_env(const Submission& s, const PreparedEnvironment* env) const {
    // Later entries win: base, then the Nix environment (its PATH first), then the client's.
    std::map<std::string, std::string> vars;
    auto put = [&](const std::string& kv) {
      auto eq = kv.find('=');
      if (eq != std::string::npos) vars[kv.substr(0, eq)] = kv.substr(eq + 1);
    };
    for (const auto& kv : options.base_env) put(kv);
    if (env) {
      std::string base_path = vars["PATH"];
      for (const auto& kv : env->env) put(kv);
      if (!base_path.empty() && vars["PATH"] != base_path)
        vars["PATH"] = vars["PATH"] + ":" + base_path;  // Nix first, host base system after
    }
    for (const auto& [k, v] : s.request.env) vars[k] = v;
    std::vector<std::string> out;
    out.reserve(vars.size());
    for (const auto& [k, v] : vars) out.push_back(k + "=" + v);
    return out;
  }

  // Runs one script stage in a fresh sandbox; the caller records the result.
  StageResult run_script(const Submission& s, Stage stage, std::vector<std::string> argv,
                         std::string stdin_data, const Workspace& ws,
                         const PreparedEnvironment* env, std::stop_token cancel) {
    SandboxSpec spec;
    spec.argv = std::move(argv);
    spec.env = stage_env(s, env);
    spec.workspace = &ws;
    if (env)
      for (const auto& p : env->read_only_paths) spec.read_only.push_back({p, p});
    spec.stdin_data = std::move(stdin_data);
    spec.limits = s.request.limits_for(stage);
    return sandbox.run(spec, cancel);
  }

  // Test cases run in boxes like the run stage's, each on a workspace of its own.
  TestCaseHost test_case_host(const Submission& s, const PreparedEnvironment* env,
                              std::stop_token cancel) {
    TestCaseHost host;
    host.make_workspace = [this](const std::string& name) {
      return sandbox.make_workspace(options.work_dir, name);
    };
    host.run = [this, &s, env, cancel](SandboxSpec spec) {
      spec.env = stage_env(s, env);
      if (env)
        for (const auto& p : env->read_only_paths) spec.read_only.push_back({p, p});
      test_runs.fetch_add(1, std::memory_order_relaxed);
      return sandbox.run(spec, cancel);
    };
    return host;
  }

  // How run_stages() ended: the result and the stage results to record with it.
  // The workspace comes along so that it is removed after the result is recorded, not
  // before: unmounting its tmpfs waits for an RCU grace period (~0.3 ms) that no answer
  // needs to wait for.
  struct Outcome {
    Result result;
    std::vector<StageWrite> last;
    std::unique_ptr<Workspace> workspace;
  };

  // Runs `s` to its outcome, registered in `running` (the caller ends that with
  // forget()). Nothing when shutdown interrupted it: it is then left unfinished.
  std::optional<Outcome> run(const Submission& s, std::stop_token shutdown_token) {
    std::stop_source cancel;
    {
      std::lock_guard lock(mu);
      running[s.id] = cancel;
    }
    // Shutdown also interrupts the stage (the submission is then left unfinished).
    std::stop_callback on_shutdown(shutdown_token, [&] { cancel.request_stop(); });
    Stage current = Stage::kEnvironment;
    try {
      // A cancel between the claim and our registration above must still win: the store
      // has it FINISHED already, so run_stages' first write is refused and nothing runs.
      return run_stages(s, cancel.get_token(), shutdown_token, current);
    } catch (const std::exception& e) {
      // Typically the store refusing a write (disk full, read-only data dir). The stage it
      // happened in says why; the workspace, if any, was removed on the way out.
      spdlog::error("submission {}: {} stage: {}", s.id, stage_name(current), e.what());
      if (shutdown_token.stop_requested()) return std::nullopt;
      return Outcome{Result::kInternalError, {{current, internal_error(e.what())}}};
    }
  }

  void forget(const std::string& id) {
    std::lock_guard lock(mu);
    running.erase(id);
    idle_cv.notify_all();
  }

  // On the calling thread, to FINISHED (cutor run).
  void execute(const Submission& s, std::stop_token shutdown_token) {
    std::optional<Outcome> outcome = run(s, shutdown_token);
    if (outcome) {
      finish_with_retry(s.id, outcome->result, outcome->last, shutdown_token);
      outcome->workspace.reset();
    }
    forget(s.id);
  }

  // A worker's: the finish goes to the finishers.
  void execute_then_hand_off(const Submission& s) {
    std::optional<Outcome> outcome = run(s, shutdown.get_token());
    if (!outcome) {
      forget(s.id);
      return;
    }
    {
      std::lock_guard lock(finish_mu);
      to_finish.push_back(
          {s.id, outcome->result, std::move(outcome->last), std::move(outcome->workspace)});
    }
    finish_cv.notify_one();
  }

  // Until stopped and nothing is left to finish. After shutdown, each finish is tried once.
  void finisher_loop() {
    ::pthread_setname_np(::pthread_self(), "cutor-finisher");  // for top, perf, gdb
    std::unique_lock lock(finish_mu);
    for (;;) {
      finish_cv.wait(lock, [&] { return !to_finish.empty() || finishers_stop; });
      if (to_finish.empty()) return;
      PendingFinish next = std::move(to_finish.front());
      to_finish.pop_front();
      lock.unlock();
      finish_with_retry(next.id, next.result, next.last, shutdown.get_token());
      next.workspace.reset();
      forget(next.id);
      lock.lock();
    }
  }

  // Runs the stages and returns the submission's result with the stage results still to
  // record, or nothing when shutdown interrupted it. The environment is released before the
  // caller records the result, so a FINISHED submission never still holds its environment;
  // the workspace goes with the outcome, removed after the result is recorded. Every write
  // but the last goes with the status or stage RUNNING that follows it.
  // `current` follows the stage in progress, for the caller's report of an exception.
  std::optional<Outcome> run_stages(const Submission& s, std::stop_token cancel,
                                    std::stop_token shutdown_token, Stage& current) {
    const SubmissionRequest& req = s.request;
    auto abandoned = [&] { return shutdown_token.stop_requested(); };
    auto cancelled = [&] { return cancel.stop_requested(); };
    // A write refused because the submission is FINISHED: it was cancelled.
    auto already_finished = [] { return Outcome{Result::kCancelled, {}}; };

    // environment
    std::optional<PreparedEnvironment> env;
    struct Release {
      EnvironmentCache* cache = nullptr;
      std::string key;
      ~Release() {
        if (cache) cache->release(key);
      }
    } release;
    // What is recorded together with the build stage's RUNNING.
    std::vector<StageWrite> before_build;
    if (const SubmissionFile* nix = req.find_file("cutor.nix")) {
      if (!advance(s, SubmissionStatus::kSettingUpEnvironment,
                   {{Stage::kEnvironment, with_status(StageStatus::kRunning)}}))
        return already_finished();
      EnvironmentOutcome outcome;
      if (!environments) {
        outcome.stage = internal_error("this server has no Nix environment cache: " +
                                       (options.no_environments_reason.empty()
                                            ? std::string("see `cutor doctor`")
                                            : options.no_environments_reason));
      } else {
        outcome = environments->prepare(nix->content, req.limits_for(Stage::kEnvironment), cancel);
      }
      if (abandoned()) return std::nullopt;
      if (!is_ok(outcome.stage) || !outcome.environment) {
        Result r = cancelled() ? Result::kCancelled
                               : result_of_failed(outcome.stage, Result::kEnvironmentError);
        return Outcome{r, {{Stage::kEnvironment, std::move(outcome.stage)}}};
      }
      before_build.push_back({Stage::kEnvironment, std::move(outcome.stage)});
      env = std::move(outcome.environment);
      release.cache = environments;
      release.key = env->key;
    } else {
      before_build.push_back({Stage::kEnvironment, with_status(StageStatus::kSkipped)});
    }

    // build: a fresh workspace with the files written in it
    current = Stage::kBuild;
    before_build.push_back({Stage::kBuild, with_status(StageStatus::kRunning)});
    if (!advance(s, SubmissionStatus::kBuilding, before_build)) return already_finished();
    auto build_start = Clock::now();
    std::unique_ptr<Workspace> ws;
    StageResult build;
    try {
      ws = sandbox.make_workspace(options.work_dir, s.id);
      for (const auto& f : req.files) {
        bool script = f.name == "run.sh" || f.name == "compile.sh";
        ws->write_file(f.name, f.content, script);
      }
      build.status = StageStatus::kOk;
      build.code = 0;
    } catch (const std::exception& e) {
      // Validation has refused every name and size a workspace cannot take, so what fails
      // here is the host's: no box uid left, a refused tmpfs mount, a full disk.
      build = internal_error(std::string("cannot make the workspace: ") + e.what());
      spdlog::error("submission {}: {}", s.id, e.what());
    }
    build.wall_time_us = micros_since(build_start);
    // A project archive is unpacked in a box (untrusted input never meets the host's
    // tools) with the compile stage's limits; the build stage then shows that box's run.
    if (is_ok(build) && req.find_file(kProjectArchive) != nullptr) {
      SandboxSpec spec;
      spec.argv = unpack_argv();
      spec.env = stage_env(s, nullptr);
      spec.workspace = ws.get();
      spec.limits = req.limits_for(Stage::kCompile);
      build = sandbox.run(spec, cancel);
      if (cancelled())
        return Outcome{Result::kCancelled, {{Stage::kBuild, std::move(build)}}, std::move(ws)};
    }
    if (abandoned()) return std::nullopt;
    if (!is_ok(build))
      return Outcome{result_of_failed(build, Result::kBuildError),
                     {{Stage::kBuild, std::move(build)}},
                     std::move(ws)};

    // compile
    const PreparedEnvironment* penv = env ? &*env : nullptr;
    std::vector<StageWrite> before_run = {{Stage::kBuild, std::move(build)}};
    if (req.find_file("compile.sh")) {
      if (cancelled()) return Outcome{Result::kCancelled, std::move(before_run), std::move(ws)};
      current = Stage::kCompile;
      before_run.push_back({Stage::kCompile, with_status(StageStatus::kRunning)});
      if (!advance(s, SubmissionStatus::kCompiling, before_run)) return already_finished();
      StageResult r = run_script(s, Stage::kCompile, {"sh", "compile.sh"}, "", *ws, penv, cancel);
      if (abandoned()) return std::nullopt;
      if (!is_ok(r)) {
        return Outcome{
            cancelled() ? Result::kCancelled : result_of_failed(r, Result::kCompileError),
            {{Stage::kCompile, std::move(r)}},
            std::move(ws)};
      }
      before_run = {{Stage::kCompile, std::move(r)}};
    } else {
      before_run.push_back({Stage::kCompile, with_status(StageStatus::kSkipped)});
    }

    // run
    if (cancelled()) return Outcome{Result::kCancelled, std::move(before_run), std::move(ws)};
    current = Stage::kRun;
    before_run.push_back({Stage::kRun, with_status(StageStatus::kRunning)});
    if (!advance(s, SubmissionStatus::kRunning, before_run)) return already_finished();
    if (!req.tests.empty()) {
      TestCasesOutcome tests =
          run_test_cases(s, *ws, store, test_case_host(s, penv, cancel), cancel);
      if (abandoned()) return std::nullopt;
      const Result result = tests.cancelled || cancelled() ? Result::kCancelled : tests.result;
      return Outcome{result, {{Stage::kRun, std::move(tests.run)}}, std::move(ws)};
    }
    std::vector<std::string> argv = {"sh", "run.sh"};
    argv.insert(argv.end(), req.args.begin(), req.args.end());
    StageResult r = run_script(s, Stage::kRun, std::move(argv), req.stdin_data, *ws, penv, cancel);
    if (abandoned()) return std::nullopt;
    const Result result = cancelled() ? Result::kCancelled : result_of_run(r);
    return Outcome{result, {{Stage::kRun, std::move(r)}}, std::move(ws)};
  }

  void worker_loop(int index) {
    ::pthread_setname_np(::pthread_self(), "cutor-worker");
    spdlog::debug("worker {} started", index);
    auto token = claiming_off.get_token();
    while (!token.stop_requested()) {
      std::optional<Submission> s;
      try {
        s = store.claim_next(token);
      } catch (const std::exception& e) {
        spdlog::error("worker {}: claim failed: {}", index, e.what());
        std::unique_lock lock(mu);  // back off without spinning, wake on shutdown
        std::condition_variable_any cv;
        cv.wait_for(lock, token, std::chrono::seconds(1), [] { return false; });
        continue;
      }
      if (!s) continue;
      execute_then_hand_off(*s);
    }
  }
};

Executor::Executor(SubmissionStore& store, Sandbox& sandbox, EnvironmentCache* environments,
                   ExecutorOptions options)
    : state_(std::make_unique<State>(store, sandbox, environments, std::move(options))) {
  state_->listener =
      store.add_listener([st = state_.get()](const std::string& id, SubmissionStatus status) {
        st->on_change(id, status);
      });
}

Executor::~Executor() {
  stop();
  state_->store.remove_listener(state_->listener);
}

void Executor::start() {
  // Workspaces of a server that died (kill -9) are still on disk, their tmpfs mounted.
  try {
    state_->sandbox.remove_stale_workspaces(state_->options.work_dir);
  } catch (const std::exception& e) {
    spdlog::error("recovery: {}", e.what());
  }
  for (int i = 0; i < state_->options.workers; ++i) {
    state_->finishers.emplace_back([this] { state_->finisher_loop(); });
    state_->workers.emplace_back([this, i] { state_->worker_loop(i); });
  }
}

void Executor::stop() {
  if (state_->workers.empty()) return;
  // Stop claiming, give running submissions their grace, then interrupt the rest: they
  // stay unfinished in the store and run again on the next start.
  state_->claiming_off.request_stop();
  state_->store.wake_all();
  {
    auto deadline = Clock::now() + std::chrono::milliseconds(state_->options.shutdown_grace_ms);
    std::unique_lock lock(state_->mu);
    state_->idle_cv.wait_until(lock, deadline, [&] { return state_->running.empty(); });
  }
  state_->shutdown.request_stop();
  state_->workers.clear();  // joins
  // What the workers handed over is still recorded (once each, since shutdown is on).
  {
    std::lock_guard lock(state_->finish_mu);
    state_->finishers_stop = true;
  }
  state_->finish_cv.notify_all();
  state_->finishers.clear();  // joins once the queue is empty
}

void Executor::execute(const Submission& submission, std::stop_token shutdown) {
  state_->execute(submission, shutdown);
}

std::string Executor::metrics_text() const {
  std::ostringstream out;
  state_->histograms.write(out);
  out << "# HELP cutor_running_submissions Submissions being executed now.\n"
      << "# TYPE cutor_running_submissions gauge\n"
      << "cutor_running_submissions " << running_count() << "\n"
      << "# HELP cutor_test_case_runs_total Boxes run for test cases and script checkers.\n"
      << "# TYPE cutor_test_case_runs_total counter\n"
      << "cutor_test_case_runs_total " << state_->test_runs.load() << "\n";
  return out.str();
}

int Executor::running_count() const {
  std::lock_guard lock(state_->mu);
  return static_cast<int>(state_->running.size());
}

}  // namespace cutor
