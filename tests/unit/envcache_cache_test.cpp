// The Nix environment cache against real Nix and the offline test channel in tests/nixpkgs.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <system_error>
#include <thread>

#include "envcache/environment_records.h"
#include "envcache/nix_environment_cache.h"
#include "envcache/nix_process.h"

namespace cutor {
namespace {

namespace fs = std::filesystem;

const fs::path kChannel = fs::path(__FILE__).parent_path().parent_path() / "nixpkgs";

std::string unique_tag() {
  std::string id = new_uuid();
  std::erase(id, '-');
  return id.substr(0, 16);
}

// cutor.nix with a unique comment: a fresh key, the same derivations.
std::string python_nix() {
  return "# " + unique_tag() +
         "\n{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ pkgs.python3 ]; }\n";
}

SandboxLimits env_limits() {
  return LimitTable::builtin().default_for(Stage::kEnvironment);
}

std::optional<std::string> env_value(const std::vector<std::string>& env, const std::string& k) {
  for (const auto& e : env)
    if (e.starts_with(k + "=")) return e.substr(k.size() + 1);
  return std::nullopt;
}

NixProcessResult run_tool(std::vector<std::string> argv, std::vector<std::string> env = {}) {
  NixProcessSpec spec;
  spec.argv = std::move(argv);
  spec.env = env.empty() ? std::vector<std::string>{"PATH=/usr/bin:/bin", "HOME=/tmp"} : env;
  spec.wall_time_ms = 120'000;
  return run_nix_process(spec);
}

class EnvCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cutor-envcache-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    data_ = tmpl;
    cache_ = open_nix_environment_cache(options());
  }
  void TearDown() override {
    if (cache_) {
      cache_->wait_idle();
      for (const auto& e : cache_->list()) {
        while (cache_->evict(e.key) == EvictResult::kInUse) cache_->release(e.key);
      }
      cache_.reset();
    }
    fs::remove_all(data_);
  }
  NixCacheOptions options(int64_t budget = 0) const {
    NixCacheOptions o;
    o.data_dir = data_;
    o.nix_path = "nixpkgs=" + kChannel.string();
    o.substituters = "";
    o.cache_budget_bytes = budget;
    return o;
  }

  std::string data_;
  std::unique_ptr<NixEnvironmentCache> cache_;
};

TEST_F(EnvCacheTest, PythonEnvironmentRunsAndSecondPrepareIsAHit) {
  const std::string nix = python_nix();
  auto t0 = std::chrono::steady_clock::now();
  EnvironmentOutcome first = cache_->prepare(nix, env_limits(), {});
  auto cold = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(first.stage.status, StageStatus::kOk) << first.stage.stderr_data;
  ASSERT_TRUE(first.environment);
  const PreparedEnvironment& env = *first.environment;
  EXPECT_EQ(env.key, cache_->key_for(nix));
  EXPECT_TRUE(env.store_path.starts_with("/nix/store/")) << env.store_path;
  // The box sees the environment's closure, each path at itself: never the whole store.
  const EnvironmentEntry recorded = cache_->get(env.key).value();
  std::vector<std::string> closure;
  for (const auto& p : recorded.packages) closure.push_back(p.path);
  std::sort(closure.begin(), closure.end());
  EXPECT_EQ(env.read_only_paths, closure);
  EXPECT_NE(std::find(closure.begin(), closure.end(), env.store_path), closure.end());
  for (const auto& p : env.read_only_paths) {
    EXPECT_TRUE(p.starts_with("/nix/store/") && p.size() > 12) << p;
    EXPECT_FALSE(p.ends_with(".drv")) << p;
  }
  ASSERT_FALSE(env.env.empty());
  EXPECT_TRUE(env.env.front().starts_with("PATH=")) << env.env.front();
  for (const char* dropped : {"HOME", "TMPDIR", "NIX_BUILD_TOP", "out", "builder", "TERM"})
    EXPECT_FALSE(env_value(env.env, dropped)) << dropped;
  // python3's package is on PATH, from the store, and runs.
  std::string path = *env_value(env.env, "PATH");
  ASSERT_TRUE(path.starts_with("/nix/store/")) << path;
  std::string python_bin = path.substr(0, path.find(':'));
  EXPECT_NE(python_bin.find("python3-3.11.2"), std::string::npos) << python_bin;
  auto run = run_tool({python_bin + "/python3", "-c", "print(6 * 7)"}, env.env);
  EXPECT_EQ(run.stdout_data, "42\n") << run.stderr_data;
  // coreutils from the stdenv follow the build inputs.
  EXPECT_NE(path.find("coreutils-9.1/bin"), std::string::npos) << path;
  // Every store path the variables point at is in the closure the box sees.
  for (const auto& var : env.env) {
    for (size_t at = var.find("/nix/store/"); at != std::string::npos;
         at = var.find("/nix/store/", at + 1)) {
      std::string ref = var.substr(at, var.find_first_of("/:= ", at + 11) - at);
      EXPECT_NE(std::find(closure.begin(), closure.end(), ref), closure.end())
          << ref << " (from " << var << ") is not mounted";
    }
  }

  const int64_t calls = cache_->nix_invocations();
  auto t1 = std::chrono::steady_clock::now();
  EnvironmentOutcome second = cache_->prepare(nix, env_limits(), {});
  auto hit = std::chrono::steady_clock::now() - t1;
  ASSERT_EQ(second.stage.status, StageStatus::kOk);
  EXPECT_EQ(cache_->nix_invocations(), calls) << "a hit must not call Nix";
  EXPECT_EQ(second.environment->env, env.env);
  EXPECT_EQ(second.environment->store_path, env.store_path);
  EXPECT_EQ(second.environment->read_only_paths, env.read_only_paths);
  std::printf("[ measure ] cold build %.1f ms, cache hit %.3f ms\n",
              std::chrono::duration<double, std::milli>(cold).count(),
              std::chrono::duration<double, std::milli>(hit).count());

  auto entry = cache_->get(env.key);
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->state, EnvironmentState::kReady);
  EXPECT_EQ(entry->use_count, 2);
  EXPECT_TRUE(entry->last_used_at_ms);
  cache_->release(env.key);
  cache_->release(env.key);
}

TEST_F(EnvCacheTest, ConcurrentPreparesShareOneBuild) {
  const std::string nix = python_nix();
  std::vector<EnvironmentOutcome> outcomes(10);
  std::vector<std::thread> threads;
  for (int i = 0; i < 10; ++i)
    threads.emplace_back([&, i] { outcomes[i] = cache_->prepare(nix, env_limits(), {}); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(cache_->builds_started(), 1);
  for (const auto& o : outcomes) {
    ASSERT_EQ(o.stage.status, StageStatus::kOk) << o.stage.stderr_data;
    EXPECT_EQ(o.environment->store_path, outcomes[0].environment->store_path);
  }
  EXPECT_EQ(cache_->get(cache_->key_for(nix))->use_count, 10);
  EXPECT_EQ(cache_->evict(cache_->key_for(nix)), EvictResult::kInUse);
  for (int i = 0; i < 10; ++i) cache_->release(cache_->key_for(nix));
}

TEST_F(EnvCacheTest, TwoCachesOnOneDataDirBuildAKeyOnce) {
  auto other = open_nix_environment_cache(options());
  const std::string nix = python_nix();
  EnvironmentOutcome a, b;
  std::thread ta([&] { a = cache_->prepare(nix, env_limits(), {}); });
  std::thread tb([&] { b = other->prepare(nix, env_limits(), {}); });
  ta.join();
  tb.join();
  ASSERT_EQ(a.stage.status, StageStatus::kOk) << a.stage.stderr_data;
  ASSERT_EQ(b.stage.status, StageStatus::kOk) << b.stage.stderr_data;
  EXPECT_EQ(cache_->builds_started() + other->builds_started(), 1);
  cache_->release(a.environment->key);
  other->release(b.environment->key);
}

struct HostileCase {
  const char* name;
  std::string nix;
  const char* message;
};

TEST_F(EnvCacheTest, HostileFilesFailWithNixsMessage) {
  const std::string tag = unique_tag();
  const std::vector<HostileCase> cases = {
      {"syntax", "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ ", "syntax error"},
      {"recursion", "let x = x; in x", "infinite recursion"},
      {"deep recursion", "let f = n: 1 + f (n + 1); in f 0", "stack overflow"},
      {"file outside the eval dir",
       "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { X = import ../../../cutor.db; }",
       "forbidden in restricted mode"},
      {"read host file",
       "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { X = builtins.readFile /etc/passwd; }",
       "forbidden in restricted mode"},
      {"fetch",
       "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { X = builtins.fetchurl "
       "\"http://127.0.0.1:1/x\"; }",
       "forbidden in restricted mode"},
      {"import from derivation",
       "{ pkgs ? import <nixpkgs> {} }: let d = derivation { name = \"ifd-" + tag +
           "\"; system = builtins.currentSystem; builder = \"/bin/sh\"; args = [\"-c\" \"echo "
           "{} > $out\"]; }; in pkgs.mkShell { X = import d; }",
       "allow-import-from-derivation"},
      {"two derivations", "{ pkgs ? import <nixpkgs> {} }: { a = pkgs.python3; b = pkgs.bash; }",
       "cutor: cutor.nix must evaluate to one derivation"},
      {"failing build",
       "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ (derivation { name = "
       "\"fail-" +
           tag +
           "\"; system = builtins.currentSystem; builder = \"/bin/sh\"; args = "
           "[\"-c\" \"echo boom-" +
           tag + " >&2; exit 3\"]; }) ]; }",
       "boom-"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EnvironmentOutcome o = cache_->prepare(c.nix, env_limits(), {});
    EXPECT_EQ(o.stage.status, StageStatus::kNonzeroExit) << o.stage.stderr_data;
    EXPECT_FALSE(o.environment);
    EXPECT_NE(o.stage.stderr_data.find(c.message), std::string::npos) << o.stage.stderr_data;
    const std::string key = cache_->key_for(c.nix);
    auto entry = cache_->get(key);
    ASSERT_TRUE(entry);
    EXPECT_EQ(entry->state, EnvironmentState::kFailed);
    ASSERT_TRUE(entry->error);
    EXPECT_NE(entry->error->find(c.message), std::string::npos) << *entry->error;
    EXPECT_FALSE(fs::exists(data_ + "/envcache/roots/" + key));
    EXPECT_FALSE(fs::exists(data_ + "/envcache/roots/" + key + ".drv"));
    EXPECT_FALSE(fs::exists(data_ + "/envcache/roots/" + key + ".drv-2"));
    // A failed key is not in use: it can be evicted right away.
    EXPECT_EQ(cache_->evict(key), EvictResult::kEvicted);
  }
  // The import-from-derivation was refused before anything was built.
  for (const auto& de : fs::directory_iterator("/nix/store")) {
    std::string name = de.path().filename().string();
    EXPECT_FALSE(name.ends_with("-ifd-" + tag)) << name;
  }
}

TEST_F(EnvCacheTest, BuildersCannotTouchTheHostOrTheNetwork) {
  // A loopback listener the builder will try to reach; Nix's sandbox has its own network.
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);

  const std::string tag = unique_tag();
  const std::string marker = "/tmp/cutor-envcache-pwned-" + tag;
  // The builder records what it could do in $out/net, so the test is not vacuous.
  const std::string script = "echo pwned > " + marker +
                             "; /bin/mkdir -p $out; /usr/bin/python3 -c 'import socket; "
                             "socket.create_connection((\"127.0.0.1\", " +
                             std::to_string(port) +
                             "), 2)' 2>/dev/null && echo connected > $out/net || echo no-network "
                             "> $out/net";
  std::string escaped;  // as a Nix string literal
  for (char c : script) {
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += c;
  }
  const std::string nix =
      "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ (derivation { name = "
      "\"probe-" +
      tag +
      "\"; system = builtins.currentSystem; builder = \"/bin/sh\"; args = "
      "[\"-c\" \"" +
      escaped + "\"]; }) ]; }";
  EnvironmentOutcome o = cache_->prepare(nix, env_limits(), {});
  ASSERT_EQ(o.stage.status, StageStatus::kOk) << o.stage.stderr_data;
  EXPECT_FALSE(fs::exists(marker)) << "the builder wrote to the host's /tmp";
  fs::remove(marker);
  std::string probe_path;
  const EnvironmentEntry entry = cache_->get(o.environment->key).value();
  for (const auto& p : entry.packages)
    if (p.path.ends_with("-probe-" + tag)) probe_path = p.path;
  ASSERT_FALSE(probe_path.empty());
  std::ifstream net(probe_path + "/net");
  std::string verdict;
  std::getline(net, verdict);
  EXPECT_EQ(verdict, "no-network");
  int conn = ::accept(listener, nullptr, nullptr);
  EXPECT_LT(conn, 0) << "the builder reached the host's loopback";
  if (conn >= 0) ::close(conn);
  ::close(listener);
  cache_->release(o.environment->key);
}

// Whether any process's command line mentions `needle`.
bool process_mentioning(const std::string& needle) {
  for (const auto& de : fs::directory_iterator("/proc")) {
    std::ifstream in(de.path() / "cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(needle) != std::string::npos) return true;
  }
  return false;
}

TEST_F(EnvCacheTest, WallTimeLimitStopsTheBuildAndAWaiterStopsWaitingOnItsOwn) {
  const std::string tag = unique_tag();
  const std::string nix =
      "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ (derivation { name = "
      "\"slow-" +
      tag +
      "\"; system = builtins.currentSystem; builder = \"/bin/sh\"; args = "
      "[\"-c\" \"/bin/sleep 60; /bin/mkdir $out; : slow-marker-" +
      tag + "\"]; }) ]; }";
  SandboxLimits limits = env_limits();
  limits.wall_time_ms = 2500;
  SandboxLimits impatient = env_limits();
  impatient.wall_time_ms = 500;
  EnvironmentOutcome o, waiter;
  auto start = std::chrono::steady_clock::now();
  std::thread builder([&] { o = cache_->prepare(nix, limits, {}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  waiter = cache_->prepare(nix, impatient, {});
  auto waited = std::chrono::steady_clock::now() - start;
  builder.join();
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(waiter.stage.status, StageStatus::kWallTimeLimitExceeded) << waiter.stage.stderr_data;
  EXPECT_LT(waited, std::chrono::milliseconds(2000));
  EXPECT_EQ(o.stage.status, StageStatus::kWallTimeLimitExceeded) << o.stage.stderr_data;
  EXPECT_LT(took, std::chrono::seconds(10));
  EXPECT_EQ(cache_->builds_started(), 1);
  cache_->wait_idle();
  EXPECT_EQ(cache_->get(cache_->key_for(nix))->state, EnvironmentState::kFailed);
  // TERM reached Nix, and Nix stopped its builder.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(process_mentioning("slow-marker-" + tag));
}

TEST_F(EnvCacheTest, MemoryLimitStopsEvaluation) {
  SandboxLimits limits = env_limits();
  limits.memory_bytes = 256ll << 20;
  const std::string nix = "# " + unique_tag() +
                          "\nbuiltins.length (builtins.genList (x: \"s${toString x}\") 100000000)";
  EnvironmentOutcome o = cache_->prepare(nix, limits, {});
  EXPECT_EQ(o.stage.status, StageStatus::kMemoryLimitExceeded) << o.stage.stderr_data;
  EXPECT_NE(o.stage.stderr_data.find("out of memory"), std::string::npos);
}

TEST_F(EnvCacheTest, ColdBuildOfNewPackages) {
  const std::string tag = unique_tag();
  const std::string nix = "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { name = \"cold-" + tag +
                          "\"; buildInputs = [ (pkgs.hostTool { pname = \"tool-" + tag +
                          "\"; version = \"1.0\"; tools = { hello-tool = \"/bin/echo\"; }; }) ]; }";
  auto t0 = std::chrono::steady_clock::now();
  EnvironmentOutcome o = cache_->prepare(nix, env_limits(), {});
  auto cold = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(o.stage.status, StageStatus::kOk) << o.stage.stderr_data;
  std::string path = *env_value(o.environment->env, "PATH");
  auto run = run_tool({path.substr(0, path.find(':')) + "/hello-tool", "hi"}, o.environment->env);
  EXPECT_EQ(run.stdout_data, "hi\n");
  auto entry = cache_->get(o.environment->key).value();
  bool listed = false;
  for (const auto& p : entry.packages) listed |= p.name == "tool-" + tag && p.version == "1.0";
  EXPECT_TRUE(listed);
  std::printf("[ measure ] cold build with a new package %.1f ms\n",
              std::chrono::duration<double, std::milli>(cold).count());
  cache_->release(o.environment->key);
}

TEST_F(EnvCacheTest, RootSurvivesGarbageCollection) {
  const std::string nix = python_nix();
  EnvironmentOutcome o = cache_->prepare(nix, env_limits(), {});
  ASSERT_EQ(o.stage.status, StageStatus::kOk) << o.stage.stderr_data;
  cache_->release(o.environment->key);  // not in use: only the GC root keeps it
  auto gc = run_tool({"/usr/bin/nix-collect-garbage"});
  ASSERT_TRUE(gc.ok()) << gc.stderr_data;
  const EnvironmentEntry entry = cache_->get(o.environment->key).value();
  ASSERT_FALSE(entry.packages.empty());
  for (const auto& p : entry.packages) EXPECT_TRUE(fs::exists(p.path)) << p.path;
  // Still a hit, without Nix.
  const int64_t calls = cache_->nix_invocations();
  EnvironmentOutcome again = cache_->prepare(nix, env_limits(), {});
  ASSERT_EQ(again.stage.status, StageStatus::kOk);
  EXPECT_EQ(cache_->nix_invocations(), calls);
  cache_->release(o.environment->key);
}

TEST_F(EnvCacheTest, EvictionDeletesOnlyDeadPaths) {
  const std::string tag = unique_tag();
  // Its own package, found nowhere else, plus python3, which `keeper` also holds.
  const std::string doomed =
      "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { name = \"evict-" + tag +
      "\"; buildInputs = [ pkgs.python3 (derivation { name = \"only-" + tag +
      "\"; system = builtins.currentSystem; builder = \"/bin/sh\"; args = [\"-c\" \"/bin/mkdir "
      "$out\"]; }) ]; }";
  EnvironmentOutcome keeper = cache_->prepare(python_nix(), env_limits(), {});
  ASSERT_EQ(keeper.stage.status, StageStatus::kOk) << keeper.stage.stderr_data;
  EnvironmentOutcome o = cache_->prepare(doomed, env_limits(), {});
  ASSERT_EQ(o.stage.status, StageStatus::kOk) << o.stage.stderr_data;
  const std::string key = o.environment->key;
  auto entry = *cache_->get(key);
  std::string own, python;
  for (const auto& p : entry.packages) {
    if (p.path.ends_with("-only-" + tag)) own = p.path;
    if (p.name == "python3") python = p.path;
  }
  ASSERT_FALSE(own.empty());
  ASSERT_FALSE(python.empty());

  EXPECT_EQ(cache_->evict(key), EvictResult::kInUse);  // prepared, not released
  cache_->release(key);
  EXPECT_EQ(cache_->evict(key), EvictResult::kEvicted);
  EXPECT_FALSE(fs::exists(entry.store_path.value()));
  EXPECT_FALSE(fs::exists(own));
  EXPECT_TRUE(fs::exists(python)) << "still referenced by the other environment";
  EXPECT_FALSE(cache_->get(key));
  EXPECT_FALSE(fs::exists(data_ + "/envcache/roots/" + key));
  EXPECT_EQ(cache_->evict(key), EvictResult::kNotFound);
  cache_->release(keeper.environment->key);
}

TEST_F(EnvCacheTest, StartEvictAnswersAtOnceAndEvictsInTheBackground) {
  const std::string nix = "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { name = \"bg-evict-" +
                          unique_tag() + "\"; buildInputs = [ pkgs.python3 ]; }";
  EnvironmentOutcome o = cache_->prepare(nix, env_limits(), {});
  ASSERT_EQ(o.stage.status, StageStatus::kOk) << o.stage.stderr_data;
  const std::string key = o.environment->key;
  EXPECT_EQ(cache_->start_evict(key).first, EvictResult::kInUse);  // prepared, not released
  cache_->release(key);
  EXPECT_EQ(cache_->start_evict("0000").first, EvictResult::kNotFound);

  // The lock a build of another process would hold keeps the eviction running while we look.
  const std::string lock_path = data_ + "/envcache/locks/" + key + ".lock";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(lock_fd, 0);
  ASSERT_EQ(::flock(lock_fd, LOCK_EX), 0);
  auto [started, entry] = cache_->start_evict(key);
  ASSERT_EQ(started, EvictResult::kEvicted);
  EXPECT_EQ(entry->state, EnvironmentState::kEvicting);
  EXPECT_EQ(entry->store_path, o.environment->store_path);
  EXPECT_EQ(cache_->start_evict(key).first, EvictResult::kEvicted) << "asked again: the same";
  auto listed = cache_->list();
  auto it = std::find_if(listed.begin(), listed.end(), [&](auto& e) { return e.key == key; });
  ASSERT_NE(it, listed.end());
  EXPECT_EQ(it->state, EnvironmentState::kEvicting);
  ::close(lock_fd);

  cache_->wait_idle();
  EXPECT_FALSE(cache_->get(key));
  EXPECT_FALSE(fs::exists(o.environment->store_path));
  EXPECT_EQ(cache_->start_evict(key).first, EvictResult::kNotFound);
}

TEST_F(EnvCacheTest, ListShowsPackagesAndSurvivesRestartAndBudgetEvictsLeastRecentlyUsed) {
  const std::string old_nix = python_nix();
  const std::string new_nix =
      "# " + unique_tag() +
      "\n{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ pkgs.gcc pkgs.gnumake ]; }";
  EnvironmentOutcome a = cache_->prepare(old_nix, env_limits(), {});
  ASSERT_EQ(a.stage.status, StageStatus::kOk) << a.stage.stderr_data;
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EnvironmentOutcome b = cache_->prepare(new_nix, env_limits(), {});
  ASSERT_EQ(b.stage.status, StageStatus::kOk) << b.stage.stderr_data;
  cache_->release(a.environment->key);
  cache_->release(b.environment->key);

  auto entries = cache_->list();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].key, b.environment->key);  // most recently used first
  bool saw_gcc = false, saw_make = false, saw_coreutils = false;
  int64_t sum = 0;
  for (const auto& p : entries[0].packages) {
    EXPECT_GT(p.size_bytes, 0) << p.path;
    sum += p.size_bytes;
    saw_gcc |= p.name == "gcc" && p.version == "12.2.0";
    saw_make |= p.name == "gnumake" && p.version == "4.3";
    saw_coreutils |= p.name == "coreutils" && p.version == "9.1";
  }
  EXPECT_TRUE(saw_gcc && saw_make && saw_coreutils);
  EXPECT_EQ(entries[0].size_bytes.value_or(-1), sum);
  EXPECT_GT(entries[0].created_at_ms, 0);

  // Restart with a budget that fits only one of them: the list survives, gc drops the LRU.
  const int64_t budget = std::max(*entries[0].size_bytes, *entries[1].size_bytes);
  cache_.reset();
  cache_ = open_nix_environment_cache(options(budget));
  ASSERT_EQ(cache_->list().size(), 2u);
  auto evicted = cache_->gc();
  ASSERT_EQ(evicted, std::vector<std::string>{a.environment->key});
  ASSERT_EQ(cache_->list().size(), 1u);
  // The survivor is still a hit after the restart.
  const int64_t calls = cache_->nix_invocations();
  EnvironmentOutcome again = cache_->prepare(new_nix, env_limits(), {});
  EXPECT_EQ(again.stage.status, StageStatus::kOk);
  EXPECT_EQ(cache_->nix_invocations(), calls);
  cache_->release(b.environment->key);
}

TEST_F(EnvCacheTest, BuildPastTheBudgetEvictsUnusedLeastRecentlyUsed) {
  cache_.reset();
  cache_ = open_nix_environment_cache(options(/*budget=*/1));
  const std::string pinned_nix = python_nix(), old_nix = python_nix(), new_nix = python_nix();
  EnvironmentOutcome pinned = cache_->prepare(pinned_nix, env_limits(), {});
  ASSERT_EQ(pinned.stage.status, StageStatus::kOk) << pinned.stage.stderr_data;
  EnvironmentOutcome old_env = cache_->prepare(old_nix, env_limits(), {});
  ASSERT_EQ(old_env.stage.status, StageStatus::kOk) << old_env.stage.stderr_data;
  cache_->release(old_env.environment->key);  // unused now: may go
  EnvironmentOutcome fresh = cache_->prepare(new_nix, env_limits(), {});
  ASSERT_EQ(fresh.stage.status, StageStatus::kOk) << fresh.stage.stderr_data;
  EXPECT_FALSE(cache_->get(old_env.environment->key));
  EXPECT_TRUE(cache_->get(pinned.environment->key)) << "in use: must survive the budget";
  EXPECT_TRUE(cache_->get(fresh.environment->key)) << "just built: must survive the budget";
  cache_->release(pinned.environment->key);
  cache_->release(fresh.environment->key);
}

TEST_F(EnvCacheTest, BuildAheadReturnsAtOnce) {
  const std::string nix = python_nix();
  EnvironmentEntry e = cache_->build_ahead(nix, env_limits());
  EXPECT_EQ(e.key, cache_->key_for(nix));
  EXPECT_EQ(e.state, EnvironmentState::kBuilding);
  cache_->wait_idle();
  auto ready = cache_->get(e.key);
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->state, EnvironmentState::kReady) << ready->error.value_or("");
  EXPECT_EQ(ready->use_count, 0);
  EXPECT_FALSE(ready->last_used_at_ms);
  EXPECT_EQ(cache_->build_ahead(nix, env_limits()).state, EnvironmentState::kReady);
}

TEST_F(EnvCacheTest, RecordsLeftBuildingByADeadProcessBecomeFailed) {
  cache_.reset();
  {
    auto records = open_environment_records(data_ + "/cutor.db");
    EnvironmentEntry e;
    e.key = "deadbeef";
    e.state = EnvironmentState::kBuilding;
    e.created_at_ms = now_unix_ms();
    records->put(e);
  }
  cache_ = open_nix_environment_cache(options());
  auto e = cache_->get("deadbeef");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->state, EnvironmentState::kFailed);
  EXPECT_TRUE(e->error);
}

// A TCP listener on the host's 127.0.0.1 that a builder must never reach.
class LoopbackListener {
 public:
  LoopbackListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 4) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw std::system_error(errno, std::generic_category(), "bind/listen 127.0.0.1");
    port_ = ntohs(addr.sin_port);
  }
  ~LoopbackListener() { ::close(fd_); }
  int port() const { return port_; }
  bool reached() const {
    int conn = ::accept(fd_, nullptr, nullptr);
    if (conn >= 0) ::close(conn);
    return conn >= 0;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// sha256 of "x", the content of the fixed-output derivations below.
constexpr const char* kSha256OfX =
    "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";

// A fixed-output derivation named `name` whose builder connects to `port` and writes "x".
std::string fixed_output_nix(const std::string& name, int port) {
  return "(derivation { name = \"" + name +
         "\"; system = builtins.currentSystem; builder = \"/bin/sh\"; outputHashMode = \"flat\"; "
         "outputHashAlgo = \"sha256\"; outputHash = \"" +
         kSha256OfX +
         "\"; args = [ \"-c\" \"/usr/bin/python3 -c 'import socket; "
         "socket.create_connection((\\\"127.0.0.1\\\", " +
         std::to_string(port) + "), 2)'; printf x > $out\" ]; })";
}

std::string plain_nix(const std::string& name, const std::string& inputs = "") {
  return "(derivation { name = \"" + name +
         "\"; system = builtins.currentSystem; builder = \"/bin/sh\"; deps = [ " + inputs +
         " ]; args = [\"-c\" \"/bin/mkdir $out\"]; })";
}

bool store_has_entry_ending(const std::string& suffix) {
  for (const auto& de : fs::directory_iterator("/nix/store"))
    if (de.path().filename().string().ends_with(suffix)) return true;
  return false;
}

TEST_F(EnvCacheTest, FixedOutputDerivationsThatWouldBeBuiltHereAreRefused) {
  LoopbackListener listener;
  const std::string tag = unique_tag();
  struct Case {
    const char* name;
    std::string nix;
    std::string fod;  // name of the fixed-output derivation
  };
  const std::vector<Case> cases = {
      {"a build input",
       "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ " +
           fixed_output_nix("fod-input-" + tag, listener.port()) + " " + plain_nix("plain-" + tag) +
           " ]; }",
       "fod-input-" + tag},
      {"an input of an input",
       "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ " +
           plain_nix("wrapper-" + tag, fixed_output_nix("fod-deep-" + tag, listener.port())) +
           " ]; }",
       "fod-deep-" + tag},
      {"the shell itself",
       "{ pkgs ? import <nixpkgs> {} }: " + fixed_output_nix("fod-top-" + tag, listener.port()),
       "fod-top-" + tag},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const int64_t calls = cache_->nix_invocations();
    EnvironmentOutcome o = cache_->prepare(c.nix, env_limits(), {});
    EXPECT_EQ(o.stage.status, StageStatus::kNonzeroExit) << o.stage.stderr_data;
    EXPECT_FALSE(o.environment);
    const std::string expected = "-" + c.fod +
                                 ".drv is a fixed-output derivation that would be built here "
                                 "(network access); only substitutes are accepted for "
                                 "fixed-output derivations";
    EXPECT_NE(o.stage.stderr_data.find(expected), std::string::npos) << o.stage.stderr_data;
    EXPECT_TRUE(o.stage.stderr_data.starts_with("cutor: /nix/store/")) << o.stage.stderr_data;
    // instantiate, dry run, show-derivation: refused before anything was built.
    EXPECT_EQ(cache_->nix_invocations() - calls, 3);
    EXPECT_FALSE(store_has_entry_ending("-" + c.fod));
    const std::string key = cache_->key_for(c.nix);
    auto entry = cache_->get(key).value();
    EXPECT_EQ(entry.state, EnvironmentState::kFailed);
    EXPECT_NE(entry.error.value_or("").find("is a fixed-output derivation"), std::string::npos);
    EXPECT_FALSE(fs::exists(data_ + "/envcache/roots/" + key));
    EXPECT_FALSE(fs::exists(data_ + "/envcache/roots/" + key + ".drv"));
  }
  EXPECT_FALSE(store_has_entry_ending("-plain-" + tag)) << "built although refused";
  EXPECT_FALSE(store_has_entry_ending("-wrapper-" + tag)) << "built although refused";
  EXPECT_FALSE(listener.reached()) << "a fixed-output builder reached the host's loopback";
}

TEST_F(EnvCacheTest, FixedOutputDerivationWhoseOutputIsPresentIsAccepted) {
  // The output is already in the store (as a substitute would put it): nothing to build.
  LoopbackListener listener;
  const std::string name = "fod-present-" + unique_tag();
  const fs::path file = fs::path(data_) / name;
  { std::ofstream(file) << "x"; }
  auto added = run_tool({"/usr/bin/nix-store", "--add-fixed", "sha256", file.string()});
  ASSERT_TRUE(added.ok()) << added.stderr_data;
  const std::string output = added.stdout_data.substr(0, added.stdout_data.find('\n'));
  ASSERT_TRUE(output.ends_with(name)) << output;
  const std::string nix =
      "{ pkgs ? import <nixpkgs> {} }: let fod = " + fixed_output_nix(name, listener.port()) +
      "; in pkgs.mkShell { buildInputs = [ fod ]; DATA = \"${fod}\"; }";
  EnvironmentOutcome o = cache_->prepare(nix, env_limits(), {});
  ASSERT_EQ(o.stage.status, StageStatus::kOk) << o.stage.stderr_data;
  EXPECT_EQ(env_value(o.environment->env, "DATA"), output);
  const auto& mounts = o.environment->read_only_paths;
  EXPECT_NE(std::find(mounts.begin(), mounts.end(), output), mounts.end());
  EXPECT_TRUE(fs::is_regular_file(output));  // a file, mounted at itself as one
  EXPECT_FALSE(listener.reached());
  const std::string key = o.environment->key;
  cache_->release(key);
  EXPECT_EQ(cache_->evict(key), EvictResult::kEvicted);
  run_tool({"/usr/bin/nix-store", "--delete", output});
}

TEST_F(EnvCacheTest, StorePathsLinkingOutOfTheClosureAreNotMounted) {
  const std::string tag = unique_tag();
  // Two outputs that are symlinks: one to a host file, one into the environment.
  const std::string nix =
      "{ pkgs ? import <nixpkgs> {} }: let\n"
      "  target = " +
      plain_nix("target-" + tag) +
      ";\n"
      "  outLink = derivation { name = \"out-link-" +
      tag +
      "\"; system = builtins.currentSystem; builder = \"/bin/sh\";\n"
      "    args = [ \"-c\" \"/bin/ln -s /etc/passwd $out\" ]; };\n"
      "  inLink = derivation { name = \"in-link-" +
      tag +
      "\"; system = builtins.currentSystem; builder = \"/bin/sh\"; inherit target;\n"
      "    args = [ \"-c\" \"/bin/ln -s $target $out\" ]; };\n"
      "in pkgs.mkShell { buildInputs = [ target ]; OUT_LINK = \"${outLink}\"; IN_LINK = "
      "\"${inLink}\"; }";
  EnvironmentOutcome o = cache_->prepare(nix, env_limits(), {});
  ASSERT_EQ(o.stage.status, StageStatus::kOk) << o.stage.stderr_data;
  const std::string out_link = env_value(o.environment->env, "OUT_LINK").value_or("");
  const std::string in_link = env_value(o.environment->env, "IN_LINK").value_or("");
  ASSERT_TRUE(fs::is_symlink(out_link)) << out_link;
  ASSERT_TRUE(fs::is_symlink(in_link)) << in_link;
  const auto entry = cache_->get(o.environment->key).value();
  std::set<std::string> closure;
  for (const auto& p : entry.packages) closure.insert(p.path);
  EXPECT_TRUE(closure.count(out_link) && closure.count(in_link));
  const auto& mounts = o.environment->read_only_paths;
  // Mounting it would bind the host's /etc/passwd into the box.
  EXPECT_EQ(std::find(mounts.begin(), mounts.end(), out_link), mounts.end());
  EXPECT_NE(std::find(mounts.begin(), mounts.end(), in_link), mounts.end());
  EXPECT_EQ(mounts.size(), closure.size() - 1);
  cache_->release(o.environment->key);
}

// Whether a regular file under `path` (links not followed) contains `needle`.
bool tree_contains(const fs::path& path, const std::string& needle) {
  auto file_contains = [&](const fs::path& f) {
    std::ifstream in(f, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.find(needle) != std::string::npos;
  };
  if (fs::is_symlink(path)) return false;
  if (fs::is_regular_file(path)) return file_contains(path);
  for (const auto& de : fs::recursive_directory_iterator(path))
    if (!de.is_symlink() && de.is_regular_file() && file_contains(de.path())) return true;
  return false;
}

TEST_F(EnvCacheTest, AnEnvironmentShowsNothingOfAnother) {
  const std::string secret = "tenant-a-secret-" + unique_tag();
  const std::string a_nix =
      "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { API_KEY = \"" + secret + "\"; }";
  EnvironmentOutcome a = cache_->prepare(a_nix, env_limits(), {});
  ASSERT_EQ(a.stage.status, StageStatus::kOk) << a.stage.stderr_data;
  ASSERT_TRUE(tree_contains(a.environment->store_path, secret)) << "the check is not vacuous";
  EnvironmentOutcome b = cache_->prepare(python_nix(), env_limits(), {});
  ASSERT_EQ(b.stage.status, StageStatus::kOk) << b.stage.stderr_data;
  const auto& mounts = b.environment->read_only_paths;
  EXPECT_EQ(std::find(mounts.begin(), mounts.end(), a.environment->store_path), mounts.end());
  for (const auto& p : mounts) {
    EXPECT_FALSE(tree_contains(p, secret)) << p;
    EXPECT_FALSE(p.ends_with(".drv")) << p;
  }
  cache_->release(a.environment->key);
  cache_->release(b.environment->key);
}

}  // namespace
}  // namespace cutor
