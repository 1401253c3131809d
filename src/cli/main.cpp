// The `cutor` binary: serve, run, doctor, deps.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "api/http_server.h"
#include "api/runtime_api.h"
#include "cli/data_dir_lock.h"
#include "cli/dependency_adapter.h"
#include "cli/duration_option.h"
#include "cli/nix_cache_open.h"
#include "cli/run_command.h"
#include "cli/store_option.h"
#include "cli/worker_command.h"
#include "envcache/deps_cli.h"
#include "envcache/nix_environment_cache.h"
#include "executor/executor.h"
#include "sandbox/cgroup.h"
#include "sandbox/doctor.h"
#include "sandbox/sandbox.h"
#include "store/retention_sweeper.h"
#include "store/submission_store.h"

namespace cutor {
namespace {
namespace fs = std::filesystem;

struct ServeOptions {
  std::string listen = "127.0.0.1:8080";
  std::string data = "./cutor-data";
  std::string store;  // "": SQLite under data
  double lease_timeout_s = 30.0;
  int workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string nix_path;
  std::optional<std::string> substituters;
  std::string auth_token_file;
  int64_t max_queue = 100'000;
  int64_t cache_budget = 0;
  int max_builds = 0;
  int64_t max_wait_ms = 60'000;
  int64_t max_tests = 1000;
  int http_threads = 2;
  int64_t max_connections = 1024;
  std::string retention;  // "": keep everything
  std::string log_format = "text";
  std::string log_level = "info";
  bool no_isolation = false;
  int prepared_boxes = -1;  // -1: one per worker
  std::vector<std::string> runtimes = {CUTOR_DEFAULT_RUNTIMES_DIR};
};

void setup_logging(const std::string& format, const std::string& level) {
  if (format == "json")
    spdlog::set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","msg":"%v"})",
                        spdlog::pattern_time_type::utc);
  else
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(level));
}

// "127.0.0.1:8080", "[::1]:8080" → host, port.
std::pair<std::string, uint16_t> parse_listen(const std::string& s) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos)
    throw std::runtime_error("--listen " + s + ": expected HOST:PORT");
  std::string host = s.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  int port = 0;
  try {
    port = std::stoi(s.substr(colon + 1));
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 0 || port > 65535) throw std::runtime_error("--listen " + s + ": bad port");
  return {host, static_cast<uint16_t>(port)};
}

std::set<std::string> read_tokens(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("--auth-token-file " + path + ": cannot read");
  std::set<std::string> tokens;
  std::string line;
  while (std::getline(in, line)) {
    auto b = line.find_first_not_of(" \t\r");
    auto e = line.find_last_not_of(" \t\r");
    if (b == std::string::npos) continue;
    tokens.insert(line.substr(b, e - b + 1));
  }
  if (tokens.empty()) throw std::runtime_error("--auth-token-file " + path + ": no token in it");
  return tokens;
}

// `nix` in /api/v1/info: whether cutor.nix can be built, why not, and the configuration in
// force (the substituters a build may wait on: none on an offline host).
boost::json::object nix_features(const NixEnvironmentCache* nix, const std::string& problem) {
  boost::json::object f{{"available", nix != nullptr}};
  if (!nix) {
    f["problem"] = problem;
    return f;
  }
  const NixConfig& c = nix->readiness().config;
  boost::json::array subs;
  for (const auto& s : c.substituters) subs.emplace_back(s);
  f["substituters"] = std::move(subs);
  f["build_users_group"] = c.build_users_group;
  f["sandbox"] = c.sandbox;
  f["max_builds"] = nix->max_builds();
  return f;
}

int serve(const ServeOptions& o) {
  setup_logging(o.log_format, o.log_level);
  // Signals are taken by sigwait below; block them before any thread starts.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto [host, port] = parse_listen(o.listen);
  HttpServerConfig config;
  if (!o.auth_token_file.empty()) config.auth_tokens = read_tokens(o.auth_token_file);
  config.max_queue = o.max_queue;
  config.max_wait_ms = o.max_wait_ms;
  config.max_tests = o.max_tests;
  config.http_threads = o.http_threads;
  config.max_connections = o.max_connections;
  if (!o.retention.empty()) config.retention = parse_duration(o.retention);

  // Before anything touches the directory: a second server would re-queue this one's
  // running submissions and delete its live workspaces.
  DataDirLock data_lock = DataDirLock::acquire(o.data, "serve");
  auto store = open_chosen_store(
      {.store = o.store, .data_dir = o.data, .lease_timeout_s = o.lease_timeout_s});
  for (const std::string& dir : o.runtimes) {
    if (dir.empty()) continue;  // --runtimes '': no shipped runtimes
    const auto runtimes = load_runtime_folder(dir);
    put_runtimes(*store, runtimes);
    spdlog::info("runtimes: {} from {}", runtimes.size(), dir);
  }
  if (int64_t n = store->requeue_unfinished())
    spdlog::info("recovery: {} unfinished submissions queued again", n);
  std::optional<RetentionSweeper> retention;
  if (config.retention) {
    retention.emplace(*store, RetentionOptions{.retention = *config.retention});
    spdlog::info("retention: finished submissions are deleted {} after they finish", o.retention);
  }

  SandboxOptions sandbox_options;
  sandbox_options.spawner_exe = "/proc/self/exe";  // a dead spawner is restarted from it
  sandbox_options.isolate = !o.no_isolation;
  sandbox_options.prepared_boxes =
      o.prepared_boxes >= 0 ? o.prepared_boxes : std::min(o.workers, 8);
  // Here, on the main thread and before any other thread starts: the box spawner is forked
  // from this small single-threaded process, and boxes die with this thread. With
  // --workers 0 (the API of a fleet, `cutor worker`s run the submissions) there is none.
  std::unique_ptr<Sandbox> sandbox;
  if (o.workers > 0) sandbox = make_sandbox(sandbox_options);
  if (o.no_isolation)
    spdlog::warn(
        "--no-isolation: stages run as plain processes on the host; not for untrusted code");

  OpenedNixCache opened = open_nix_cache_or_say_why({.data_dir = o.data,
                                                     .nix_path = o.nix_path,
                                                     .substituters = o.substituters,
                                                     .cache_budget_bytes = o.cache_budget,
                                                     .max_builds = o.max_builds});
  std::unique_ptr<NixEnvironmentCache> nix = std::move(opened.cache);
  const std::string nix_problem = opened.problem;
  std::unique_ptr<NixDependencyService> deps;
  if (nix)
    deps = std::make_unique<NixDependencyService>(*nix,
                                                  config.limits.default_for(Stage::kEnvironment));

  ExecutorOptions exec_options;
  exec_options.no_environments_reason = nix_problem;
  exec_options.workers = o.workers;
  exec_options.work_dir = fs::absolute(o.data + "/work").lexically_normal().string();
  std::unique_ptr<Executor> executor;
  if (sandbox) executor = std::make_unique<Executor>(*store, *sandbox, nix.get(), exec_options);

  config.features["sandbox"] = {{"isolation", !o.no_isolation},
                                {"cgroups", sandbox::describe_cgroup_support()}};
  config.features["nix"] = nix_features(nix.get(), nix_problem);
  config.features["workers"] = o.workers;
  config.health_parts = [sandbox = sandbox.get()] {
    boost::json::object parts;
    if (!sandbox) return parts;
    const SandboxHealth h = sandbox->health();
    boost::json::object part{{"ok", h.ok}, {"spawner_restarts", h.spawner_restarts}};
    if (!h.ok) part["problem"] = h.problem;
    parts["sandbox"] = std::move(part);
    return parts;
  };
  config.extra_metrics_text = [executor = executor.get(), nix = nix.get(),
                               sandbox = sandbox.get()] {
    std::string text = executor ? executor->metrics_text() : std::string();
    if (sandbox)
      text +=
          "# HELP cutor_box_spawner_restarts_total Restarts of the box spawner after it died.\n"
          "# TYPE cutor_box_spawner_restarts_total counter\n"
          "cutor_box_spawner_restarts_total " +
          std::to_string(sandbox->health().spawner_restarts) + "\n";
    if (nix)
      text +=
          "# HELP cutor_nix_invocations_total Nix processes the environment cache started.\n"
          "# TYPE cutor_nix_invocations_total counter\n"
          "cutor_nix_invocations_total " +
          std::to_string(nix->nix_invocations()) + "\n";
    return text;
  };

  HttpServer server(host, port, *store, config, deps.get());
  server.start();
  if (executor) executor->start();
  spdlog::info("cutor {} serving on {}:{} with {} workers, data in {}", CUTOR_VERSION, host,
               server.port(), o.workers, o.data);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("{}: stopping (running submissions get a grace period, the rest run after restart)",
               sig == SIGTERM ? "SIGTERM" : "SIGINT");
  server.stop();
  if (executor) executor->stop();
  if (nix) nix->wait_idle();
  spdlog::info("stopped");
  return 0;
}

// The sandbox's report, then whether Nix can build here: the same line `serve` and `run`
// log when they refuse to use Nix.
int doctor(const std::optional<std::string>& substituters) {
  int rc = sandbox::run_doctor(std::cout);
  NixCacheOptions defaults;
  NixReadiness nix = check_nix_readiness(defaults.nix_bin_dir, substituters,
                                         {"PATH=" + defaults.nix_bin_dir + ":/usr/bin:/bin"});
  std::cout << (nix.ok() ? "ok      " : "missing ") << "nix: " << nix.summary() << "\n";
  return rc;
}

}  // namespace
}  // namespace cutor

int main(int argc, char** argv) {
  using namespace cutor;
  // A restarted box spawner (src/sandbox/spawner.h), executed by a running server.
  if (argc > 1 && std::string_view(argv[1]) == kBoxSpawnerArgument)
    return box_spawner_main(argc, argv);
  CLI::App app{"cutor: a remote code execution engine"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(CUTOR_VERSION));

  ServeOptions so;
  auto* serve_cmd = app.add_subcommand("serve", "Serve the HTTP API");
  serve_cmd->add_option("--listen", so.listen, "HOST:PORT to bind")->capture_default_str();
  serve_cmd->add_option("--data", so.data, "Directory for the store, workspaces and env cache")
      ->capture_default_str();
  serve_cmd
      ->add_option(
          "--prepared-boxes", so.prepared_boxes,
          "Sandboxes built ahead of time, off the request path (default: --workers, at most 8; 0: "
          "build each on demand)")
      ->check(CLI::Range(0, 64));
  serve_cmd
      ->add_option("--runtimes", so.runtimes,
                   "Folders of shipped runtimes (one directory each; '' for none)")
      ->capture_default_str();
  serve_cmd
      ->add_option("--workers", so.workers,
                   "Submissions run at once (0: serve the API only; `cutor worker`s run them)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  serve_cmd->add_option("--store", so.store,
                        "postgresql://... to share a store with `cutor worker`s (default: SQLite"
                        " in --data)");
  serve_cmd
      ->add_option("--lease-timeout", so.lease_timeout_s,
                   "Seconds without a heartbeat before a worker's claims are queued again"
                   " (PostgreSQL store)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 86400.0));
  serve_cmd->add_option("--nix-path", so.nix_path, "NIX_PATH for cutor.nix (default: $NIX_PATH)");
  serve_cmd->add_option("--substituters", so.substituters,
                        "Nix substituters ('' for none; default: Nix's own setting)");
  serve_cmd
      ->add_option("--auth-token-file", so.auth_token_file,
                   "Require Authorization: Bearer with a token from this file")
      ->check(CLI::ExistingFile);
  serve_cmd->add_option("--max-queue", so.max_queue, "Unfinished submissions before 503")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  serve_cmd
      ->add_option("--cache-budget", so.cache_budget,
                   "Bytes of Nix environments kept before LRU eviction (0: no budget)")
      ->capture_default_str();
  serve_cmd
      ->add_option("--max-builds", so.max_builds,
                   "Nix builds at once; more distinct cutor.nix wait (default: one per build "
                   "user)")
      ->check(CLI::Range(1, 1024));
  serve_cmd->add_option("--max-tests", so.max_tests, "Test cases allowed in one submission")
      ->check(CLI::Range(int64_t{1}, int64_t{100'000}));
  serve_cmd->add_option("--max-wait-ms", so.max_wait_ms, "Bound of ?wait=true")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}));
  serve_cmd->add_option("--http-threads", so.http_threads, "Threads serving HTTP")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  serve_cmd
      ->add_option("--max-connections", so.max_connections,
                   "Open HTTP connections at once; one more is answered 503 with Retry-After")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1'000'000}));
  serve_cmd
      ->add_option("--retention", so.retention,
                   "Delete finished submissions (and their outputs) this long after they "
                   "finish: 30m, 12h, 7d... (default: keep everything)")
      ->check(CLI::Validator(
          [](std::string& text) {
            try {
              parse_duration(text);
              return std::string();
            } catch (const std::invalid_argument& e) {
              return std::string(e.what());
            }
          },
          "DURATION"));
  serve_cmd->add_option("--log-format", so.log_format, "text or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  serve_cmd->add_option("--log-level", so.log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  serve_cmd->add_flag("--no-isolation", so.no_isolation,
                      "Run stages as plain limited processes (hosts without namespaces; unsafe)");

  RunCommandOptions ro;
  auto* run_cmd = app.add_subcommand("run", "Run a directory as one submission, here");
  run_cmd->add_option("dir", ro.dir, "Directory with run.sh (and compile.sh, cutor.nix, ...)")
      ->required();
  run_cmd->add_option("--stdin", ro.stdin_file, "File fed to run.sh's stdin")
      ->check(CLI::ExistingFile);
  run_cmd->add_option("--nix-path", ro.nix_path, "NIX_PATH for cutor.nix (default: $NIX_PATH)");
  run_cmd->add_option("--substituters", ro.substituters,
                      "Nix substituters ('' for none; default: Nix's own setting)");
  run_cmd->add_option("--data", ro.data_dir, "Environment cache dir (default: ~/.cache/cutor)");
  run_cmd->add_option("--env", ro.env, "KEY=VALUE set for compile and run");
  run_cmd->add_option("--limit", ro.limits, "STAGE.LIMIT=N, e.g. run.wall_time_ms=2000");
  run_cmd->add_flag("--base64", ro.base64, "Print stage output as base64 (exact bytes)");
  bool run_no_isolation = false;
  run_cmd->add_flag("--no-isolation", run_no_isolation, "Run as plain limited processes (unsafe)");
  run_cmd->footer("Arguments after -- are passed to run.sh.");

  WorkerCommandOptions wo;
  auto* worker_cmd =
      app.add_subcommand("worker", "Run submissions from a shared PostgreSQL store, no HTTP");
  worker_cmd->add_option("--store", wo.store.store, "postgresql://... (the serve's --store)")
      ->required();
  wo.store.data_dir = "./cutor-worker-data";
  worker_cmd->add_option("--data", wo.store.data_dir, "This worker's workspaces and env cache")
      ->capture_default_str();
  worker_cmd->add_option("--workers", wo.workers, "Submissions run at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  worker_cmd
      ->add_option("--lease-timeout", wo.store.lease_timeout_s,
                   "Seconds without a heartbeat before a worker's claims are queued again")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 86400.0));
  worker_cmd->add_option("--nix-path", wo.nix_path, "NIX_PATH for cutor.nix (default: $NIX_PATH)");
  worker_cmd->add_option("--substituters", wo.substituters, "Nix substituters ('' for none)");
  worker_cmd->add_option("--cache-budget", wo.cache_budget, "Bytes of Nix environments kept");
  worker_cmd->add_option("--prepared-boxes", wo.prepared_boxes, "Sandboxes built ahead of time")
      ->check(CLI::Range(0, 64));
  std::string worker_log_format = "text", worker_log_level = "info";
  worker_cmd->add_option("--log-format", worker_log_format, "text or json")
      ->check(CLI::IsMember({"text", "json"}));
  worker_cmd->add_option("--log-level", worker_log_level, "trace, debug, info, warn, error");
  worker_cmd->add_flag("--no-isolation", wo.no_isolation,
                       "Run stages as plain limited processes (unsafe)");

  auto* doctor_cmd = app.add_subcommand("doctor", "What isolation this host supports");
  std::optional<std::string> doctor_substituters;
  doctor_cmd->add_option("--substituters", doctor_substituters,
                         "Nix substituters to report as in force ('' for none)");

  auto* deps_cmd = app.add_subcommand("deps", "The Nix environment cache");
  std::vector<std::string> deps_args;
  NixCacheOptions deps_options;
  std::string deps_data = "./cutor-data";
  std::optional<std::string> deps_substituters;
  deps_cmd->add_option("--data", deps_data, "The server's data directory")->capture_default_str();
  deps_cmd->add_option("--nix-path", deps_options.nix_path, "NIX_PATH (default: $NIX_PATH)");
  deps_cmd->add_option("--substituters", deps_substituters, "Nix substituters ('' for none)");
  deps_cmd->add_option("--cache-budget", deps_options.cache_budget_bytes, "Bytes kept by gc");
  deps_cmd->add_option("command", deps_args, "list | build FILE | rm KEY | gc")->required();

  // `cutor run DIR [options] -- ARGS...`: everything after the first "--" goes to run.sh
  // untouched, so an argument may look like an option.
  std::vector<char*> own_args(argv, argv + argc);
  if (argc > 1 && std::string_view(argv[1]) == "run") {
    for (int i = 2; i < argc; ++i) {
      if (std::string_view(argv[i]) == "--") {
        ro.args.assign(argv + i + 1, argv + argc);
        own_args.resize(i);
        break;
      }
    }
  }
  try {
    app.parse(static_cast<int>(own_args.size()), own_args.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (serve_cmd->parsed()) return serve(so);
    if (worker_cmd->parsed()) {
      setup_logging(worker_log_format, worker_log_level);
      return run_worker_command(wo);
    }
    if (run_cmd->parsed()) {
      ro.isolate = !run_no_isolation;
      spdlog::set_level(spdlog::level::warn);
      return run_command(ro);
    }
    if (doctor_cmd->parsed()) return doctor(doctor_substituters);
    if (deps_cmd->parsed()) {
      std::optional<DataDirLock> data_lock;
      if (deps_args.front() != "list")  // a reader needs no lock; a writer must be alone
        data_lock.emplace(DataDirLock::acquire(deps_data, "deps " + deps_args.front()));
      deps_options.data_dir = deps_data;
      deps_options.substituters = deps_substituters;
      if (deps_options.nix_path.empty())
        if (const char* np = getenv("NIX_PATH")) deps_options.nix_path = np;
      return run_deps_command(deps_args, deps_options, std::cout, std::cerr);
    }
  } catch (const std::exception& e) {
    std::cerr << "cutor: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
