// NixEnvironmentCache; see nix_environment_cache.h for the flow and the layout.
#include "envcache/nix_environment_cache.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>

#include "envcache/nix_process.h"

namespace cutor {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

using Clock = std::chrono::steady_clock;

// Variables print-dev-env reports that belong to the Nix build that captured them, not to
// the environment: the sandbox sets its own HOME/TMPDIR/PWD, and the rest would point at
// a build directory that no longer exists or leak the builder's settings.
const std::set<std::string> kBuildOnlyVariables = {"HOME",
                                                   "NIX_BUILD_TOP",
                                                   "NIX_BUILD_CORES",
                                                   "NIX_LOG_FD",
                                                   "NIX_STORE",
                                                   "TMP",
                                                   "TMPDIR",
                                                   "TEMP",
                                                   "TEMPDIR",
                                                   "TERM",
                                                   "TZ",
                                                   "UID",
                                                   "EUID",
                                                   "PPID",
                                                   "out",
                                                   "outputs",
                                                   "builder",
                                                   "SHELL",
                                                   "PWD",
                                                   "OLDPWD",
                                                   "SHLVL",
                                                   "shellHook",
                                                   "stdenv",
                                                   "dontAddDisableDepTrack",
                                                   "NIX_ATTRS_JSON_FILE",
                                                   "NIX_ATTRS_SH_FILE"};

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("EVP_Digest(sha256) failed");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// An exclusive flock on a file, released on destruction.
class FileLock {
 public:
  FileLock() = default;
  FileLock(FileLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  FileLock& operator=(FileLock&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);  // closing drops the flock
  }
  bool held() const { return fd_ >= 0; }

  // Waits for the lock until `deadline` (none: forever) or `stop`. Throws on I/O errors.
  static FileLock acquire(const fs::path& path, std::optional<Clock::time_point> deadline,
                          std::stop_token stop) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
      throw std::system_error(errno, std::generic_category(), "open lock " + path.string());
    FileLock lock;
    for (;;) {
      if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
        lock.fd_ = fd;
        return lock;
      }
      if (errno != EWOULDBLOCK && errno != EINTR) {
        int e = errno;
        ::close(fd);
        throw std::system_error(e, std::generic_category(), "flock " + path.string());
      }
      if (stop.stop_requested() || (deadline && Clock::now() >= *deadline)) {
        ::close(fd);
        return lock;  // not held
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

 private:
  int fd_ = -1;
};

// One build in progress; every prepare() of its key waits on it.
struct Flight {
  std::mutex mu;
  std::condition_variable_any done_cv;
  bool done = false;
  EnvironmentOutcome outcome;
};

// Splits "pname-version" the way Nix's DrvName does: the version starts at the first dash
// followed by something that is not a letter. Only a fallback: such names are ambiguous.
std::pair<std::string, std::string> split_name_version(const std::string& name) {
  for (size_t i = 0; i + 1 < name.size(); ++i) {
    if (name[i] == '-' && !std::isalpha(static_cast<unsigned char>(name[i + 1])))
      return {name.substr(0, i), name.substr(i + 1)};
  }
  return {name, ""};
}

std::string store_path_name(const std::string& path) {
  std::string base = fs::path(path).filename().string();
  auto dash = base.find('-');
  return dash == std::string::npos ? base : base.substr(dash + 1);
}

StageResult failed_stage(StageStatus status, std::string message) {
  StageResult s;
  s.status = status;
  if (!message.empty() && message.back() != '\n') message += '\n';
  s.stderr_data = message;
  s.output = message;
  return s;
}

}  // namespace

struct NixEnvironmentCache::Impl {
  NixCacheOptions options;
  fs::path root_dir;  // <data>/envcache
  std::unique_ptr<EnvironmentRecords> records;
  std::vector<std::string> include_paths;  // resolved -I entries
  std::string nix_version;
  std::string system;
  NixReadiness readiness;
  std::atomic<int64_t> nix_invocations{0};
  std::atomic<int64_t> builds{0};
  std::stop_source shutdown;

  // At most max_builds builds at once in this process (Nix gives each a build user);
  // the others wait for a slot within their own wall time.
  int max_builds = 1;
  std::mutex slots_mu;
  std::condition_variable_any slots_cv;
  int builds_running = 0;
  std::set<std::string> waiting_for_slot;  // keys whose build waits (or gave up waiting) for a slot
  bool is_waiting_for_slot(const std::string& key) {
    std::lock_guard lock(slots_mu);
    return waiting_for_slot.count(key) > 0;
  }
  std::string slot_wait_message(const SandboxLimits& limits) const {
    return "environment: wall time limit of " + std::to_string(limits.wall_time_ms) +
           " ms exceeded waiting for one of the " + std::to_string(max_builds) +
           " build slots (--max-builds)";
  }
  class BuildSlot {
   public:
    static BuildSlot take(Impl& impl, const std::string& key,
                          std::optional<Clock::time_point> deadline) {
      std::unique_lock lock(impl.slots_mu);
      auto free = [&] { return impl.builds_running < impl.max_builds; };
      impl.waiting_for_slot.insert(key);
      bool got = deadline
                     ? impl.slots_cv.wait_until(lock, impl.shutdown.get_token(), *deadline, free)
                     : impl.slots_cv.wait(lock, impl.shutdown.get_token(), free);
      // A build that gave up stays marked until its flight ends, so a waiter timing out at
      // the same moment still says why.
      if (!got) return BuildSlot(nullptr);
      impl.waiting_for_slot.erase(key);
      ++impl.builds_running;
      return BuildSlot(&impl);
    }
    BuildSlot(BuildSlot&& o) noexcept : impl_(std::exchange(o.impl_, nullptr)) {}
    ~BuildSlot() {
      if (!impl_) return;
      {
        std::lock_guard lock(impl_->slots_mu);
        --impl_->builds_running;
      }
      impl_->slots_cv.notify_one();
    }
    bool held() const { return impl_ != nullptr; }

   private:
    explicit BuildSlot(Impl* impl) : impl_(impl) {}
    Impl* impl_;
  };

  std::mutex mu;  // guards everything below
  std::condition_variable idle_cv;
  std::map<std::string, std::shared_ptr<Flight>> flights;
  std::map<std::string, int> in_use;  // prepared and not released, or waiting
  std::set<std::string> evicting;
  struct BuildThread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> finished;
  };
  std::list<BuildThread> threads;

  fs::path eval_dir(const std::string& key) const { return root_dir / "eval" / key; }
  fs::path root_link(const std::string& key) const { return root_dir / "roots" / key; }
  fs::path lock_path(const std::string& key) const { return root_dir / "locks" / (key + ".lock"); }

  std::vector<std::string> nix_env() const {
    std::string nix_path;
    for (const auto& p : include_paths) nix_path += (nix_path.empty() ? "" : ":") + p;
    return {"PATH=" + options.nix_bin_dir + ":/usr/bin:/bin",
            "HOME=" + (root_dir / "home").string(),
            "XDG_CACHE_HOME=" + (root_dir / "home" / ".cache").string(),
            "TMPDIR=" + (root_dir / "tmp").string(), "NIX_PATH=" + nix_path};
  }

  NixProcessResult run_nix(std::vector<std::string> argv, NixProcessSpec spec = {}) {
    spec.argv = std::move(argv);
    spec.env = nix_env();
    spec.kill_grace_ms = options.kill_grace_ms;
    ++nix_invocations;
    return run_nix_process(spec, shutdown.get_token());
  }

  std::string nix_bin(const char* tool) const { return options.nix_bin_dir + "/" + tool; }

  // Whether the GC root of `entry` still points at its store path.
  bool root_is_valid(const EnvironmentEntry& entry) const {
    if (entry.state != EnvironmentState::kReady || !entry.store_path) return false;
    std::error_code ec;
    fs::path target = fs::canonical(root_link(entry.key), ec);
    return !ec && target == *entry.store_path && fs::exists(target, ec);
  }

  // The store paths a box of `e` sees, each mounted read-only at itself: the environment's
  // closure as recorded when it was built (what its variables point at, by Nix's reference
  // scan), never the whole store, which holds every other submission's environment and
  // derivations. A bind mount follows a symlink on the host, so a store path that is a
  // symlink is kept only when it resolves into the closure (its builder chose the target).
  static std::vector<std::string> closure_mounts(const EnvironmentEntry& e) {
    std::set<std::string> closure;
    for (const auto& p : e.packages) closure.insert(p.path);
    if (e.store_path) closure.insert(*e.store_path);
    auto inside_closure = [&](const std::string& target) {
      for (const auto& p : closure)
        if (target == p || target.starts_with(p + "/")) return true;
      return false;
    };
    std::vector<std::string> mounts;
    for (const auto& path : closure) {
      std::error_code ec;
      if (fs::is_symlink(fs::symlink_status(path, ec))) {
        fs::path target = fs::canonical(path, ec);
        if (ec || !inside_closure(target.string())) {
          spdlog::warn("envcache: {} links outside its environment; not shown to the box", path);
          continue;
        }
      }
      mounts.push_back(path);  // a vanished path stays: the sandbox then says which one
    }
    return mounts;
  }

  PreparedEnvironment prepared_from(const EnvironmentEntry& e) const {
    return PreparedEnvironment{e.key, e.store_path.value_or(""), e.env, closure_mounts(e)};
  }

  EnvironmentOutcome ok_outcome(const EnvironmentEntry& e, StageResult stage) const {
    stage.status = StageStatus::kOk;
    stage.code = 0;
    return EnvironmentOutcome{std::move(stage), prepared_from(e)};
  }

  // Joins the background threads that have finished. Called with `mu` held.
  void reap_threads() {
    for (auto it = threads.begin(); it != threads.end();) {
      if (it->finished->load()) {
        it->thread.join();
        it = threads.erase(it);
      } else {
        ++it;
      }
    }
  }

  std::shared_ptr<Flight> start_flight(const std::string& key, std::string nix,
                                       const SandboxLimits& limits) {
    std::lock_guard lock(mu);
    if (auto it = flights.find(key); it != flights.end()) return it->second;
    reap_threads();
    auto flight = std::make_shared<Flight>();
    flights[key] = flight;
    auto finished = std::make_shared<std::atomic<bool>>(false);
    threads.push_back({std::thread([this, key, nix = std::move(nix), limits, flight, finished] {
                         EnvironmentOutcome outcome;
                         try {
                           outcome = build(key, nix, limits);
                           // Past the budget: evict least recently used ones, never this one.
                           if (outcome.stage.status == StageStatus::kOk) collect(key);
                         } catch (const std::exception& e) {
                           outcome.stage =
                               failed_stage(StageStatus::kInternalError,
                                            std::string("environment cache: ") + e.what());
                           fail_record(key, outcome.stage.stderr_data);
                         }
                         {
                           std::lock_guard l(slots_mu);
                           waiting_for_slot.erase(key);
                         }
                         // Leave the map before waking the waiters: once a caller has
                         // its outcome, the key must no longer look busy to evict().
                         {
                           std::lock_guard l(mu);
                           flights.erase(key);
                         }
                         idle_cv.notify_all();
                         {
                           std::lock_guard fl(flight->mu);
                           flight->outcome = std::move(outcome);
                           flight->done = true;
                         }
                         flight->done_cv.notify_all();
                         finished->store(true);
                       }),
                       finished});
    return flight;
  }

  void fail_record(const std::string& key, const std::string& error) {
    try {
      EnvironmentEntry e = records->get(key).value_or(EnvironmentEntry{});
      e.key = key;
      e.state = EnvironmentState::kFailed;
      e.store_path.reset();
      e.size_bytes.reset();
      e.packages.clear();
      e.env.clear();
      e.error = trim(error);
      if (e.created_at_ms == 0) e.created_at_ms = now_unix_ms();
      records->put(e);
    } catch (const std::exception& ex) {
      spdlog::error("envcache: recording failure of {}: {}", key, ex.what());
    }
  }

  // Options of every Nix call that evaluates or builds the submitter's file.
  std::vector<std::string> hardened_options(const SandboxLimits& limits) const {
    std::vector<std::string> argv;
    auto option = [&](const std::string& name, const std::string& value) {
      argv.insert(argv.end(), {"--option", name, value});
    };
    option("restrict-eval", "true");
    option("allowed-uris", "");
    option("allow-import-from-derivation", "false");
    option("sandbox", options.nix_sandbox ? "true" : "false");
    option("sandbox-fallback", "false");
    std::string sandbox_paths;
    for (const auto& p : options.extra_sandbox_paths) {
      std::error_code ec;
      if (fs::exists(p, ec)) sandbox_paths += (sandbox_paths.empty() ? "" : " ") + p;
    }
    if (!sandbox_paths.empty()) option("extra-sandbox-paths", sandbox_paths);
    if (options.substituters) option("substituters", *options.substituters);
    if (limits.output_bytes > 0) option("max-build-log-size", std::to_string(limits.output_bytes));
    return argv;
  }

  // The steps of one build share the environment stage's limits: one wall-clock deadline
  // and one cpu budget; each step gets what the earlier ones left.
  struct BuildBudget {
    SandboxLimits limits;
    std::optional<Clock::time_point> deadline;
    int64_t cpu_used_us = 0;
    int64_t max_rss_bytes = 0;

    NixProcessSpec spec(const fs::path& working_dir) const {
      NixProcessSpec s;
      s.working_dir = working_dir.string();
      if (deadline) {
        s.wall_time_ms = std::max<int64_t>(
            1, std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now())
                   .count());
      }
      if (limits.cpu_time_ms > 0)
        s.cpu_time_ms = std::max<int64_t>(1, limits.cpu_time_ms - cpu_used_us / 1000);
      s.memory_bytes = limits.memory_bytes;
      if (limits.output_bytes > 0) s.stderr_cap_bytes = limits.output_bytes;
      return s;
    }
    void account(const NixProcessResult& r) {
      cpu_used_us += r.cpu_time_us;
      max_rss_bytes = std::max(max_rss_bytes, r.max_rss_bytes);
    }
  };

  // The stage of a build step that ran and failed: Nix's message, and why it stopped.
  EnvironmentOutcome failed_step(const std::string& key, const NixProcessResult& r,
                                 const BuildBudget& budget, const char* what) {
    StageResult stage;
    stage.stderr_data = r.stderr_data;
    stage.truncated = r.stderr_truncated;
    stage.code = r.exit_code;
    stage.signal = r.signal;
    stage.cpu_time_us = budget.cpu_used_us;
    stage.memory_bytes = budget.max_rss_bytes;
    if (r.timed_out) {
      stage.status = StageStatus::kWallTimeLimitExceeded;
      stage.stderr_data += "environment: wall time limit of " +
                           std::to_string(budget.limits.wall_time_ms) + " ms exceeded\n";
    } else if (r.cancelled) {
      stage.status = StageStatus::kInternalError;
      stage.stderr_data += "environment: the cache shut down during the build\n";
    } else if (r.signal == SIGXCPU) {
      stage.status = StageStatus::kTimeLimitExceeded;
    } else if (r.signal) {
      stage.status = StageStatus::kSignaled;
    } else if (r.stderr_data.find("out of memory") != std::string::npos) {
      stage.status = StageStatus::kMemoryLimitExceeded;
    } else {
      stage.status = StageStatus::kNonzeroExit;
    }
    if (r.signal || r.timed_out || r.cancelled) stage.code.reset();
    stage.output = stage.stderr_data;
    fail_record(key, stage.stderr_data.empty() ? std::string(what) + " failed" : stage.stderr_data);
    return {stage, std::nullopt};
  }

  // A build refused by cutor itself (not by Nix): `message` says why.
  EnvironmentOutcome refused(const std::string& key, StageStatus status, std::string message,
                             const BuildBudget& budget) {
    StageResult stage = failed_stage(status, std::move(message));
    if (status == StageStatus::kNonzeroExit) stage.code = 1;
    stage.cpu_time_us = budget.cpu_used_us;
    stage.memory_bytes = budget.max_rss_bytes;
    fail_record(key, stage.stderr_data);
    return {stage, std::nullopt};
  }

  // Removes the GC roots `nix-instantiate --add-root <key>.drv` made (<key>.drv, and
  // <key>.drv-N when the file gave several derivations).
  void remove_drv_roots(const std::string& key) noexcept {
    std::error_code ec;
    fs::directory_iterator it(root_dir / "roots", ec);
    for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
      const std::string name = it->path().filename().string();
      std::error_code remove_ec;
      if (name == key + ".drv" || name.starts_with(key + ".drv-"))
        fs::remove(it->path(), remove_ec);
    }
  }

  // SPEC §6: building a cutor.nix cannot reach the network. Nix gives fixed-output
  // derivations the host's network even inside its sandbox, so none may be built here: asks
  // `nix-store -r --dry-run` what building `drv` would build and refuses when any of those is
  // fixed-output (their outputs may still come from a substituter or already be present).
  // Returns the refusal, or nothing when the build may go on.
  std::optional<EnvironmentOutcome> refuse_local_fixed_output_builds(const std::string& key,
                                                                     const std::string& drv,
                                                                     BuildBudget& budget,
                                                                     const fs::path& dir) {
    std::vector<std::string> argv = {nix_bin("nix-store"), "--realise", "--dry-run"};
    std::vector<std::string> hardened = hardened_options(budget.limits);
    argv.insert(argv.end(), hardened.begin(), hardened.end());
    argv.push_back(drv);
    NixProcessResult dry = run_nix(argv, budget.spec(dir));
    budget.account(dry);
    if (!dry.ok()) return failed_step(key, dry, budget, "nix-store --realise --dry-run");
    std::vector<std::string> to_build = derivations_to_build(dry.stderr_data);

    // The shell derivation itself is asked about too: it is listed unless its outputs are
    // all present, which checks that the listing was read right (fail closed, not open).
    std::set<std::string> asked(to_build.begin(), to_build.end());
    asked.insert(drv);
    argv = {nix_bin("nix"), "--extra-experimental-features", "nix-command", "show-derivation"};
    argv.insert(argv.end(), asked.begin(), asked.end());
    NixProcessResult shown = run_nix(argv, budget.spec(dir));
    budget.account(shown);
    if (!shown.ok()) return failed_step(key, shown, budget, "nix show-derivation");
    json::value doc = json::parse(shown.stdout_data);

    std::string refusals;
    for (const auto& path : to_build) {
      const json::value* d = doc.as_object().if_contains(path);
      if (!d || is_fixed_output(*d)) {
        refusals += "cutor: " + path +
                    " is a fixed-output derivation that would be built here (network access); "
                    "only substitutes are accepted for fixed-output derivations\n";
      }
    }
    if (!refusals.empty()) return refused(key, StageStatus::kNonzeroExit, refusals, budget);

    if (!std::count(to_build.begin(), to_build.end(), drv)) {
      const json::value* d = doc.as_object().if_contains(drv);
      bool all_present = d != nullptr;
      if (d) {
        for (const auto& [name, output] : d->at("outputs").as_object()) {
          const auto* path = output.as_object().if_contains("path");
          std::error_code ec;
          if (!path || !path->is_string() ||
              !fs::exists(fs::symlink_status(std::string(path->as_string()), ec)))
            all_present = false;
        }
      }
      if (!all_present) {
        return refused(key, StageStatus::kInternalError,
                       "cutor: could not tell what building " + drv +
                           " would build (nix-store --realise --dry-run did not list it):\n" +
                           dry.stderr_data,
                       budget);
      }
    }
    return std::nullopt;
  }

  // Whether a derivation (as `nix show-derivation` shows it) is fixed-output: an output
  // with a hash, or an outputHash attribute.
  static bool is_fixed_output(const json::value& derivation) {
    const auto& o = derivation.as_object();
    if (const auto* outputs = o.if_contains("outputs"); outputs && outputs->is_object()) {
      for (const auto& [name, output] : outputs->as_object())
        if (output.is_object() && output.as_object().contains("hash")) return true;
    }
    if (const auto* env = o.if_contains("env"); env && env->is_object())
      if (env->as_object().contains("outputHash")) return true;
    return false;
  }

  // The derivations `nix-store --realise --dry-run` says "will be built": Nix 2.8 prints
  // "this derivation will be built:" or "these N derivations will be built:", then one
  // indented store path a line (and likewise "will be fetched" for substitutes).
  static std::vector<std::string> derivations_to_build(const std::string& text) {
    std::vector<std::string> out;
    bool in_list = false;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string line = text.substr(pos, end - pos);
      pos = end + 1;
      if (line.empty()) continue;
      if (line[0] != ' ') {
        in_list = line.find("will be built") != std::string::npos;
        continue;
      }
      if (!in_list) continue;
      size_t start = line.find_first_not_of(' ');
      std::string path = trim(line.substr(start));
      if (path.starts_with("/") && path.ends_with(".drv")) out.push_back(path);
    }
    return out;
  }

  EnvironmentOutcome build(const std::string& key, const std::string& nix,
                           const SandboxLimits& limits) {
    const auto start = Clock::now();
    BuildBudget budget;
    budget.limits = limits;
    if (limits.wall_time_ms > 0)
      budget.deadline = start + std::chrono::milliseconds(limits.wall_time_ms);
    FileLock lock = FileLock::acquire(lock_path(key), budget.deadline, shutdown.get_token());
    if (!lock.held()) {
      std::string msg = "timed out waiting for another process building environment " + key;
      return {failed_stage(StageStatus::kWallTimeLimitExceeded, msg), std::nullopt};
    }
    // Another process (or an earlier flight) may have finished it while we waited.
    std::optional<EnvironmentEntry> existing = records->get(key);
    if (existing && root_is_valid(*existing)) return ok_outcome(*existing, {});
    BuildSlot slot = BuildSlot::take(*this, key, budget.deadline);
    if (!slot.held())
      return {failed_stage(StageStatus::kWallTimeLimitExceeded, slot_wait_message(limits)),
              std::nullopt};

    EnvironmentEntry entry;
    entry.key = key;
    entry.state = EnvironmentState::kBuilding;
    entry.created_at_ms = now_unix_ms();
    if (existing) {
      entry.use_count = existing->use_count;
      entry.last_used_at_ms = existing->last_used_at_ms;
    }
    records->put(entry);

    // The file alone in a fresh directory: restricted evaluation may read only it.
    fs::path dir = eval_dir(key);
    fs::remove_all(dir);
    fs::create_directories(dir);
    {
      std::ofstream out(dir / "cutor.nix", std::ios::binary | std::ios::trunc);
      out.write(nix.data(), static_cast<std::streamsize>(nix.size()));
      if (!out) throw std::runtime_error("writing " + (dir / "cutor.nix").string());
    }
    ++builds;

    // 1. Evaluate once, into a derivation kept alive by a GC root until this build ends;
    // the dry run and the build below both work on that derivation, not on the file.
    const fs::path drv_root = root_dir / "roots" / (key + ".drv");
    struct DrvRoots {
      Impl* impl;
      const std::string& key;
      ~DrvRoots() { impl->remove_drv_roots(key); }
    } drv_roots{this, key};
    remove_drv_roots(key);
    std::vector<std::string> argv = {nix_bin("nix-instantiate")};
    std::vector<std::string> hardened = hardened_options(limits);
    argv.insert(argv.end(), hardened.begin(), hardened.end());
    for (const auto& p : include_paths) argv.insert(argv.end(), {"-I", p});
    argv.insert(argv.end(), {"-I", dir.string(), "--add-root", drv_root.string(),
                             (dir / "cutor.nix").string()});
    NixProcessResult instantiated = run_nix(argv, budget.spec(dir));
    budget.account(instantiated);
    if (!instantiated.ok()) return failed_step(key, instantiated, budget, "nix-instantiate");
    const int64_t derivations =
        std::count(instantiated.stdout_data.begin(), instantiated.stdout_data.end(), '\n');
    std::error_code ec;
    const fs::path drv = fs::read_symlink(drv_root, ec);
    if (derivations != 1 || ec || !drv.string().ends_with(".drv")) {
      return refused(key, StageStatus::kNonzeroExit,
                     "cutor: cutor.nix must evaluate to one derivation (such as pkgs.mkShell "
                     "{ ... }); it gave " +
                         std::to_string(derivations),
                     budget);
    }

    // 2. Nothing that would reach the network may be built.
    if (auto refusal = refuse_local_fixed_output_builds(key, drv.string(), budget, dir))
      return *refusal;

    // 3. Build the environment and capture its variables.
    argv = {nix_bin("nix"), "--extra-experimental-features", "nix-command", "print-dev-env",
            "--json"};
    argv.insert(argv.end(), hardened.begin(), hardened.end());
    argv.insert(argv.end(), {"--profile", root_link(key).string(), drv.string()});
    NixProcessResult r = run_nix(argv, budget.spec(dir));
    budget.account(r);
    if (!r.ok()) return failed_step(key, r, budget, "nix print-dev-env");

    StageResult stage;
    stage.stderr_data = r.stderr_data;
    stage.output = r.stderr_data;
    stage.truncated = r.stderr_truncated;
    stage.code = r.exit_code;
    stage.cpu_time_us = budget.cpu_used_us;
    stage.memory_bytes = budget.max_rss_bytes;
    if (r.stdout_truncated) {
      stage.status = StageStatus::kOutputLimitExceeded;
      stage.stderr_data += "environment: the captured environment is too large\n";
      stage.output = stage.stderr_data;
      fail_record(key, "the captured environment is too large");
      return {stage, std::nullopt};
    }

    entry.env = parse_environment(r.stdout_data);
    fs::path store_path = fs::canonical(root_link(key), ec);
    if (ec)
      throw std::runtime_error("resolving GC root " + root_link(key).string() + ": " +
                               ec.message());
    entry.store_path = store_path.string();
    read_closure(entry);
    entry.state = EnvironmentState::kReady;
    entry.error.reset();
    records->put(entry);
    return ok_outcome(entry, std::move(stage));
  }

  // `exported` variables of print-dev-env's JSON, minus the build-only ones, PATH first.
  static std::vector<std::string> parse_environment(const std::string& text) {
    json::value doc = json::parse(text);
    const auto& vars = doc.at("variables").as_object();
    std::set<std::string> outputs;
    if (auto* o = vars.if_contains("outputs"); o && o->as_object().contains("value")) {
      if (const auto* s = o->as_object().at("value").if_string()) {
        std::string all(*s);
        size_t pos = 0;
        while (pos < all.size()) {
          size_t end = all.find(' ', pos);
          if (end == std::string::npos) end = all.size();
          if (end > pos) outputs.insert(all.substr(pos, end - pos));
          pos = end + 1;
        }
      }
    }
    std::vector<std::string> env;
    for (const auto& [name, v] : vars) {
      const auto& o = v.as_object();
      if (o.at("type").as_string() != "exported") continue;
      std::string n(name);
      if (kBuildOnlyVariables.count(n) || outputs.count(n)) continue;
      const auto* value = o.if_contains("value");
      if (!value || !value->is_string()) continue;
      std::string line = n + "=" + std::string(value->as_string());
      if (n == "PATH")
        env.insert(env.begin(), std::move(line));
      else
        env.push_back(std::move(line));
    }
    return env;
  }

  // Fills packages and size_bytes from `nix path-info -rS --json` of the store path, with
  // names and versions from each path's derivation (pname/version) where it still exists.
  void read_closure(EnvironmentEntry& entry) {
    NixProcessResult info = run_nix({nix_bin("nix"), "--extra-experimental-features", "nix-command",
                                     "path-info", "-rS", "--json", *entry.store_path});
    if (!info.ok())
      throw std::runtime_error("nix path-info of " + *entry.store_path + ": " +
                               trim(info.stderr_data));
    json::value doc = json::parse(info.stdout_data);
    std::map<std::string, std::string> deriver_of;
    entry.packages.clear();
    for (const auto& item : doc.as_array()) {
      const auto& o = item.as_object();
      EnvironmentPackage p;
      p.path = std::string(o.at("path").as_string());
      p.size_bytes = o.at("narSize").to_number<int64_t>();
      std::tie(p.name, p.version) = split_name_version(store_path_name(p.path));
      if (p.path == *entry.store_path) entry.size_bytes = o.at("closureSize").to_number<int64_t>();
      if (const auto* d = o.if_contains("deriver"); d && d->is_string()) {
        std::string drv(d->as_string());
        std::error_code ec;
        if (fs::exists(drv, ec)) deriver_of[p.path] = drv;
      }
      entry.packages.push_back(std::move(p));
    }
    if (!entry.size_bytes) {
      int64_t total = 0;
      for (const auto& p : entry.packages) total += p.size_bytes;
      entry.size_bytes = total;
    }
    if (deriver_of.empty()) return;
    std::vector<std::string> argv = {nix_bin("nix"), "--extra-experimental-features", "nix-command",
                                     "show-derivation"};
    std::set<std::string> drvs;
    for (const auto& [path, drv] : deriver_of) drvs.insert(drv);
    argv.insert(argv.end(), drvs.begin(), drvs.end());
    NixProcessResult shown = run_nix(argv);
    if (!shown.ok()) {
      spdlog::warn("envcache: nix show-derivation failed, names from store paths: {}",
                   trim(shown.stderr_data));
      return;
    }
    json::value drv_doc = json::parse(shown.stdout_data);
    for (auto& p : entry.packages) {
      auto it = deriver_of.find(p.path);
      if (it == deriver_of.end()) continue;
      const auto* drv = drv_doc.as_object().if_contains(it->second);
      if (!drv) continue;
      const auto* env = drv->as_object().if_contains("env");
      if (!env || !env->is_object()) continue;
      const auto* pname = env->as_object().if_contains("pname");
      const auto* version = env->as_object().if_contains("version");
      if (pname && pname->is_string()) p.name = std::string(pname->as_string());
      if (version && version->is_string()) p.version = std::string(version->as_string());
    }
  }

  // Marks `key` as being evicted: kInUse while a build or a submission needs it, or while
  // it is being evicted already. A prepare() of a marked key builds it again afterwards.
  EvictResult mark_evicting(const std::string& key) {
    std::lock_guard lock(mu);
    if (flights.count(key) || in_use.count(key) || evicting.count(key)) return EvictResult::kInUse;
    evicting.insert(key);
    return EvictResult::kEvicted;
  }

  EvictResult evict(const std::string& key) {
    if (mark_evicting(key) != EvictResult::kEvicted) return EvictResult::kInUse;
    return evict_marked(key);
  }

  // The eviction of a key mark_evicting() marked; unmarks it when done.
  EvictResult evict_marked(const std::string& key) {
    struct Unmark {
      Impl* impl;
      const std::string& key;
      ~Unmark() {
        std::lock_guard lock(impl->mu);
        impl->evicting.erase(key);
      }
    } unmark{this, key};

    FileLock lock = FileLock::acquire(lock_path(key), Clock::now() + std::chrono::seconds(30),
                                      shutdown.get_token());
    if (!lock.held()) return EvictResult::kInUse;  // another process is building it
    std::optional<EnvironmentEntry> entry = records->get(key);
    std::error_code ec;
    bool had_root = fs::is_symlink(root_link(key), ec);
    if (!entry && !had_root) return EvictResult::kNotFound;

    // The profile link and its generation links (<key>-N-link) are the roots.
    for (const auto& de : fs::directory_iterator(root_dir / "roots", ec)) {
      std::string name = de.path().filename().string();
      if (name == key || (name.starts_with(key + "-") && name.ends_with("-link")))
        fs::remove(de.path(), ec);
    }
    remove_drv_roots(key);
    fs::remove_all(eval_dir(key), ec);
    records->remove(key);
    if (entry) delete_dead_paths(*entry);
    return EvictResult::kEvicted;
  }

  // Deletes the paths of `entry`'s closure that nothing keeps alive any more.
  void delete_dead_paths(const EnvironmentEntry& entry) {
    std::set<std::string> closure;
    for (const auto& p : entry.packages) closure.insert(p.path);
    if (entry.store_path) closure.insert(*entry.store_path);
    if (closure.empty()) return;
    NixProcessResult dead = run_nix({nix_bin("nix-store"), "--gc", "--print-dead"});
    if (!dead.ok()) {
      spdlog::warn("envcache: nix-store --gc --print-dead: {}", trim(dead.stderr_data));
      return;
    }
    std::vector<std::string> argv = {nix_bin("nix-store"), "--delete"};
    size_t pos = 0;
    const std::string& out = dead.stdout_data;
    while (pos < out.size()) {
      size_t end = out.find('\n', pos);
      if (end == std::string::npos) end = out.size();
      std::string path = out.substr(pos, end - pos);
      if (closure.count(path)) argv.push_back(path);
      pos = end + 1;
    }
    if (argv.size() == 2) return;
    NixProcessResult deleted = run_nix(argv);
    if (!deleted.ok())
      spdlog::warn("envcache: nix-store --delete (some paths became live?): {}",
                   trim(deleted.stderr_data));
  }

  std::vector<std::string> collect(const std::string& keep) {
    std::vector<std::string> evicted;
    if (options.cache_budget_bytes <= 0) return evicted;
    std::vector<EnvironmentEntry> entries = records->list();  // most recent first
    int64_t total = 0;
    for (const auto& e : entries)
      if (e.state == EnvironmentState::kReady) total += e.size_bytes.value_or(0);
    for (auto it = entries.rbegin(); it != entries.rend() && total > options.cache_budget_bytes;
         ++it) {
      if (it->state != EnvironmentState::kReady || it->key == keep) continue;
      if (evict(it->key) == EvictResult::kEvicted) {
        total -= it->size_bytes.value_or(0);
        evicted.push_back(it->key);
      }
    }
    return evicted;
  }
};

NixEnvironmentCache::NixEnvironmentCache(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

int64_t NixEnvironmentCache::nix_invocations() const {
  return impl_->nix_invocations.load();
}
int64_t NixEnvironmentCache::builds_started() const {
  return impl_->builds.load();
}

NixEnvironmentCache::~NixEnvironmentCache() {
  impl_->shutdown.request_stop();  // kills running builds (TERM, then KILL)
  std::list<Impl::BuildThread> threads;
  {
    std::lock_guard lock(impl_->mu);
    threads.swap(impl_->threads);
  }
  for (auto& t : threads) t.thread.join();
}

std::string NixEnvironmentCache::key_for(std::string_view nix) const {
  std::string material = "cutor-envcache-v1";
  material += '\0';
  material += nix;
  for (const auto& p : impl_->include_paths) {
    material += '\0';
    material += p;
  }
  material += '\0';
  material += impl_->system;
  material += '\0';
  material += impl_->nix_version;
  return sha256_hex(material);
}

EnvironmentOutcome NixEnvironmentCache::prepare(std::string_view nix, const SandboxLimits& limits,
                                                std::stop_token cancel) {
  const auto start = Clock::now();
  const std::string key = key_for(nix);
  auto elapsed_us = [&] {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  };
  bool try_hit;
  {
    std::lock_guard lock(impl_->mu);
    ++impl_->in_use[key];  // pinned: evict() refuses from here on
    try_hit = !impl_->evicting.count(key) && !impl_->flights.count(key);
  }
  auto unpin = [&] { release(key); };

  try {
    if (try_hit) {
      std::optional<EnvironmentEntry> entry = impl_->records->get(key);
      if (entry && impl_->root_is_valid(*entry)) {
        impl_->records->touch(key, now_unix_ms());
        StageResult stage;
        stage.wall_time_us = elapsed_us();
        return impl_->ok_outcome(*entry, std::move(stage));
      }
    }
    std::shared_ptr<Flight> flight = impl_->start_flight(key, std::string(nix), limits);
    std::unique_lock lock(flight->mu);
    bool done;
    if (limits.wall_time_ms > 0) {
      done = flight->done_cv.wait_until(lock, cancel,
                                        start + std::chrono::milliseconds(limits.wall_time_ms),
                                        [&] { return flight->done; });
    } else {
      done = flight->done_cv.wait(lock, cancel, [&] { return flight->done; });
    }
    if (!done) {
      lock.unlock();
      unpin();
      if (cancel.stop_requested()) {
        auto s = failed_stage(StageStatus::kInternalError,
                              "environment: cancelled while waiting for the build");
        s.wall_time_us = elapsed_us();
        return {s, std::nullopt};
      }
      auto s = failed_stage(StageStatus::kWallTimeLimitExceeded,
                            impl_->is_waiting_for_slot(key)
                                ? impl_->slot_wait_message(limits)
                                : "environment: wall time limit of " +
                                      std::to_string(limits.wall_time_ms) +
                                      " ms exceeded waiting for the shared build of " + key);
      s.wall_time_us = elapsed_us();
      return {s, std::nullopt};
    }
    EnvironmentOutcome outcome = flight->outcome;
    lock.unlock();
    outcome.stage.wall_time_us = elapsed_us();
    if (outcome.stage.status != StageStatus::kOk) {
      unpin();
      return outcome;
    }
    impl_->records->touch(key, now_unix_ms());
    return outcome;
  } catch (const std::exception& e) {
    unpin();
    auto s =
        failed_stage(StageStatus::kInternalError, std::string("environment cache: ") + e.what());
    s.wall_time_us = elapsed_us();
    return {s, std::nullopt};
  }
}

void NixEnvironmentCache::release(const std::string& key) {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->in_use.find(key);
  if (it == impl_->in_use.end()) return;
  if (--it->second <= 0) impl_->in_use.erase(it);
}

std::vector<EnvironmentEntry> NixEnvironmentCache::list() {
  std::vector<EnvironmentEntry> entries = impl_->records->list();
  std::lock_guard lock(impl_->mu);
  for (auto& e : entries)
    if (impl_->evicting.count(e.key)) e.state = EnvironmentState::kEvicting;
  return entries;
}

std::optional<EnvironmentEntry> NixEnvironmentCache::get(const std::string& key) {
  return impl_->records->get(key);
}

EnvironmentEntry NixEnvironmentCache::build_ahead(std::string_view nix,
                                                  const SandboxLimits& limits) {
  const std::string key = key_for(nix);
  std::optional<EnvironmentEntry> entry = impl_->records->get(key);
  if (entry && impl_->root_is_valid(*entry)) return *entry;
  bool running;
  {
    std::lock_guard lock(impl_->mu);
    running = impl_->flights.count(key) > 0;
  }
  if (!running) {
    EnvironmentEntry building;
    building.key = key;
    building.state = EnvironmentState::kBuilding;
    building.created_at_ms = now_unix_ms();
    if (entry) {
      building.use_count = entry->use_count;
      building.last_used_at_ms = entry->last_used_at_ms;
    }
    impl_->records->put(building);
    impl_->start_flight(key, std::string(nix), limits);
    return building;
  }
  return impl_->records->get(key).value_or(EnvironmentEntry{.key = key});
}

EvictResult NixEnvironmentCache::evict(const std::string& key) {
  return impl_->evict(key);
}

std::pair<EvictResult, std::optional<EnvironmentEntry>> NixEnvironmentCache::start_evict(
    const std::string& key) {
  std::optional<EnvironmentEntry> entry = impl_->records->get(key);
  std::error_code ec;
  if (!entry && !fs::is_symlink(impl_->root_link(key), ec)) return {EvictResult::kNotFound, {}};
  if (!entry) entry = EnvironmentEntry{.key = key};
  entry->state = EnvironmentState::kEvicting;
  if (impl_->mark_evicting(key) != EvictResult::kEvicted) {
    std::lock_guard lock(impl_->mu);
    if (impl_->evicting.count(key)) return {EvictResult::kEvicted, entry};  // asked again
    return {EvictResult::kInUse, {}};
  }
  // On the cache's own threads, like builds: the lock, the GC roots and `nix-store --gc
  // --print-dead` can take seconds to minutes.
  std::lock_guard lock(impl_->mu);
  impl_->reap_threads();
  auto finished = std::make_shared<std::atomic<bool>>(false);
  impl_->threads.push_back({std::thread([impl = impl_.get(), key, finished] {
                              try {
                                if (impl->evict_marked(key) != EvictResult::kEvicted)
                                  spdlog::warn("envcache: eviction of {} gave way to a build", key);
                              } catch (const std::exception& e) {
                                spdlog::error("envcache: evicting {}: {}", key, e.what());
                              }
                              impl->idle_cv.notify_all();
                              finished->store(true);
                            }),
                            finished});
  return {EvictResult::kEvicted, entry};
}

std::vector<std::string> NixEnvironmentCache::gc() {
  return impl_->collect("");
}

const NixReadiness& NixEnvironmentCache::readiness() const {
  return impl_->readiness;
}

int NixEnvironmentCache::max_builds() const {
  return impl_->max_builds;
}

void NixEnvironmentCache::wait_idle() {
  std::unique_lock lock(impl_->mu);
  impl_->idle_cv.wait(lock, [&] { return impl_->flights.empty() && impl_->evicting.empty(); });
}

std::unique_ptr<NixEnvironmentCache> open_nix_environment_cache(const NixCacheOptions& options) {
  auto impl = std::make_unique<NixEnvironmentCache::Impl>();
  impl->options = options;
  if (options.data_dir.empty()) throw std::runtime_error("envcache: no data dir");
  fs::path data = fs::absolute(options.data_dir);
  impl->root_dir = data / "envcache";
  for (const char* sub : {"eval", "roots", "locks", "home", "tmp"})
    fs::create_directories(impl->root_dir / sub);
  // The records live in the request store's database file (a table of their own, their own
  // connection), so one durable store holds submissions and environments alike.
  impl->records = open_environment_records((data / "cutor.db").string());

  // -I entries, resolved so the key follows what the path points at.
  size_t pos = 0;
  const std::string& np = options.nix_path;
  while (pos < np.size()) {
    size_t end = np.find(':', pos);
    if (end == std::string::npos) end = np.size();
    std::string item = np.substr(pos, end - pos);
    pos = end + 1;
    if (item.empty()) continue;
    auto eq = item.find('=');
    std::string prefix = eq == std::string::npos ? "" : item.substr(0, eq + 1);
    std::string path = eq == std::string::npos ? item : item.substr(eq + 1);
    std::error_code ec;
    fs::path resolved = fs::canonical(path, ec);
    impl->include_paths.push_back(prefix + (ec ? path : resolved.string()));
  }

  // Never a build as root, nor one bound to fail on every cutor.nix: refuse to open.
  impl->readiness = check_nix_readiness(options.nix_bin_dir, options.substituters, impl->nix_env());
  if (!impl->readiness.ok()) throw std::runtime_error(impl->readiness.problem);
  impl->max_builds =
      options.max_builds > 0 ? options.max_builds : std::max(1, impl->readiness.build_users);

  NixProcessResult version = impl->run_nix({impl->nix_bin("nix"), "--version"});
  if (!version.ok())
    throw std::runtime_error("envcache: `" + impl->nix_bin("nix") +
                             " --version` failed: " + trim(version.stderr_data));
  impl->nix_version = trim(version.stdout_data);
  NixProcessResult system =
      impl->run_nix({impl->nix_bin("nix"), "--extra-experimental-features", "nix-command", "eval",
                     "--impure", "--raw", "--expr", "builtins.currentSystem"});
  if (!system.ok())
    throw std::runtime_error("envcache: asking nix for its system failed: " +
                             trim(system.stderr_data));
  impl->system = trim(system.stdout_data);

  // Records left "building" by a process that died: nobody holds their lock any more.
  for (const auto& e : impl->records->list()) {
    if (e.state != EnvironmentState::kBuilding) continue;
    FileLock lock = FileLock::acquire(impl->lock_path(e.key), Clock::now(), {});
    if (lock.held()) impl->fail_record(e.key, "interrupted: the process building it ended");
  }
  return std::unique_ptr<NixEnvironmentCache>(new NixEnvironmentCache(std::move(impl)));
}

}  // namespace cutor
