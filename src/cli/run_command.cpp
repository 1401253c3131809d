#include "cli/run_command.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "api/json_text.h"
#include "api/submission_json.h"
#include "envcache/nix_environment_cache.h"
#include "executor/executor.h"
#include "sandbox/sandbox.h"
#include "store/submission_store.h"

namespace cutor {
namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string default_cache_dir() {
  if (const char* x = getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/cutor";
  if (const char* h = getenv("HOME"); h && *h) return std::string(h) + "/.cache/cutor";
  return "./cutor-data";
}

void apply_limit(SubmissionRequest& req, const LimitTable& table, const std::string& spec) {
  // stage.limit=N
  auto dot = spec.find('.');
  auto eq = spec.find('=');
  if (dot == std::string::npos || eq == std::string::npos || eq < dot)
    throw std::runtime_error("--limit " + spec + ": expected STAGE.LIMIT=N");
  auto stage = parse_stage(spec.substr(0, dot));
  if (!stage || *stage == Stage::kBuild)
    throw std::runtime_error("--limit " + spec + ": unknown stage");
  int64_t* field =
      limit_field(req.limits[static_cast<int>(*stage)], spec.substr(dot + 1, eq - dot - 1));
  if (!field) throw std::runtime_error("--limit " + spec + ": unknown limit");
  int64_t value = 0;
  try {
    size_t used = 0;
    value = std::stoll(spec.substr(eq + 1), &used);
    if (used != spec.size() - eq - 1) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    throw std::runtime_error("--limit " + spec + ": not an integer");
  }
  const int64_t* max = limit_field(table.max_for(*stage), spec.substr(dot + 1, eq - dot - 1));
  if (value <= 0 || value > *max)
    throw std::runtime_error("--limit " + spec + ": must be 1.." + std::to_string(*max));
  *field = value;
}

}  // namespace

SubmissionRequest load_directory(const std::string& dir) {
  SubmissionRequest req;
  fs::path root(dir);
  if (!fs::is_directory(root)) throw std::runtime_error(dir + ": not a directory");
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    const auto& entry = *it;
    auto rel = fs::relative(entry.path(), root).generic_string();
    if (entry.is_symlink()) throw std::runtime_error(rel + ": symbolic links are not supported");
    if (entry.is_directory()) continue;
    if (!entry.is_regular_file()) throw std::runtime_error(rel + ": not a regular file");
    req.files.push_back({rel, read_file(entry.path())});
  }
  std::sort(req.files.begin(), req.files.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  if (!req.find_file("run.sh")) throw std::runtime_error(dir + ": no run.sh");
  LimitTable table = LimitTable::builtin();
  for (Stage s : kLimitedStages) req.limits[static_cast<int>(s)] = table.default_for(s);
  return req;
}

int exit_code_for(const Submission& s) {
  const StageResult& run = s.stage(Stage::kRun);
  switch (run.status) {
    case StageStatus::kPending:
    case StageStatus::kRunning:
    case StageStatus::kSkipped:
    case StageStatus::kInternalError:
      return 125;
    default:
      break;
  }
  if (run.code) return *run.code;
  if (run.signal) return 128 + *run.signal;
  return 128 + 9;  // a limit's kill
}

int run_command(const RunCommandOptions& options) {
  LimitTable table = LimitTable::builtin();
  Submission s;
  try {
    s.request = load_directory(options.dir);
    for (const auto& l : options.limits) apply_limit(s.request, table, l);
    for (const auto& kv : options.env) {
      auto eq = kv.find('=');
      if (eq == 0 || eq == std::string::npos)
        throw std::runtime_error("--env " + kv + ": expected KEY=VALUE");
      s.request.env.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    }
    s.request.args = options.args;
    if (!options.stdin_file.empty()) s.request.stdin_data = read_file(options.stdin_file);
  } catch (const std::exception& e) {
    std::cerr << "cutor run: " << e.what() << "\n";
    return 125;
  }

  std::string work = (fs::temp_directory_path() / ("cutor-run-" + new_uuid())).string();
  auto store = open_sqlite_store({.path = ":memory:", .synchronous_full = false});
  SandboxOptions sandbox_options;
  sandbox_options.spawner_exe = "/proc/self/exe";  // a dead spawner is restarted from it
  sandbox_options.isolate = options.isolate;
  // One submission and exit: boxes built ahead would never be used.
  sandbox_options.prepared_boxes = 0;
  auto sandbox = make_sandbox(sandbox_options);

  std::unique_ptr<NixEnvironmentCache> nix;
  std::string nix_problem;
  if (s.request.find_file("cutor.nix")) {
    NixCacheOptions nix_options;
    nix_options.data_dir = options.data_dir.empty() ? default_cache_dir() : options.data_dir;
    nix_options.nix_path = options.nix_path;
    nix_options.substituters = options.substituters;
    if (nix_options.nix_path.empty())
      if (const char* np = getenv("NIX_PATH")) nix_options.nix_path = np;
    try {
      nix = open_nix_environment_cache(nix_options);
    } catch (const std::exception& e) {
      nix_problem = e.what();
      std::cerr << "cutor run: no Nix environment cache: " << nix_problem << "\n";
    }
  }

  ExecutorOptions exec_options;
  exec_options.work_dir = work;
  exec_options.no_environments_reason = nix_problem;
  Executor executor(*store, *sandbox, nix.get(), exec_options);

  s.id = new_uuid();
  s.created_at_ms = now_unix_ms();
  store->insert(s, 0);
  auto claimed = store->claim_next(std::stop_token{});
  std::stop_source never;
  executor.execute(*claimed, never.get_token());
  std::error_code ec;
  fs::remove(work, ec);  // empty by now: each workspace removes itself

  auto done = store->get(s.id);
  std::cout << to_json_text(submission_to_json(*done, options.base64)) << "\n";
  return exit_code_for(*done);
}

}  // namespace cutor
