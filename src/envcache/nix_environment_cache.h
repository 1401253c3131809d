// The environment cache backed by a real Nix store (Nix 2.8, local store, run as root).
//
// prepare(nix):
//   key = sha256(cutor.nix bytes, resolved --nix-path entries, system, Nix version).
//   A ready record whose GC root still exists is a hit: no Nix call at all.
//   Otherwise one build per key: in this process (single flight: later callers wait on
//   the same build and share its result, failure included) and across processes (flock on
//   <data>/envcache/locks/<key>.lock; whoever gets the lock second re-reads the record).
//   A build, in the environment stage's limits (one deadline and cpu budget for its steps),
//   with an empty environment, restricted evaluation, no allowed URIs, no
//   import-from-derivation and Nix's build sandbox on:
//     1. `nix-instantiate` of a directory holding only cutor.nix: one derivation, held by a
//        GC root (<key>.drv) until the build ends; evaluated once, never again.
//     2. `nix-store --realise --dry-run` of it and `nix show-derivation` of what it lists
//        as "will be built": a fixed-output derivation among them is refused (Nix gives
//        those the host's network even in its sandbox); their outputs are accepted only
//        from a substituter or already present.
//     3. `nix print-dev-env --json --profile <data>/envcache/roots/<key>` of the derivation.
//     4. `nix path-info -rS` of the result: the closure, recorded as the packages.
//   Builds run on the cache's own threads: a waiter that is cancelled or runs out of its
//   wall time stops waiting, the build goes on.
//   A failed record is built again by the next prepare() of its key.
//
// A prepared environment's read_only_paths are its recorded closure, each path mounted at
// itself (no Nix call on a hit): a box never sees the rest of /nix/store, which holds the
// other submissions' environments. A store path that is a symlink leading out of the
// closure is left out (a bind mount would follow it on the host).
//
// Layout under `data_dir`:
//   cutor.db                     records (environment_records.h), table `environments` in
//                                the request store's database
//   envcache/eval/<key>/cutor.nix  the evaluated file, alone in its directory
//   envcache/roots/<key>         the profile link: the GC root of the environment
//   envcache/roots/<key>.drv     the derivation's GC root while it is being built
//   envcache/locks/<key>.lock    cross-process build lock
//   envcache/home, envcache/tmp  HOME and TMPDIR of the nix processes
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "envcache/environment_cache.h"
#include "envcache/environment_records.h"
#include "envcache/nix_readiness.h"

namespace cutor {

struct NixCacheOptions {
  std::string data_dir;  // created if missing
  // Like NIX_PATH: "nixpkgs=/path[:name=/path...]". Entries are passed as -I and hashed
  // into the key by their resolved (realpath) location.
  std::string nix_path;
  // Passed as --option substituters VALUE when set ("" in tests: no binary cache).
  std::optional<std::string> substituters;
  int64_t cache_budget_bytes = 0;  // 0: no budget (never evict on size)
  // Builds at once (more distinct keys wait, each within its own wall time); 0: one per
  // build user of build-users-group (Nix runs each build as one), at least 1.
  int max_builds = 0;
  std::string nix_bin_dir = "/usr/bin";  // where nix, nix-store live
  // Host paths visible inside Nix's build sandbox (extra-sandbox-paths). The test channel's
  // packages link to host tools, so they need the base system; real nixpkgs needs none.
  std::vector<std::string> extra_sandbox_paths = {"/bin", "/usr", "/lib", "/lib64"};
  // Nix's own build sandbox (namespaces, no network for ordinary derivations).
  bool nix_sandbox = true;
  int64_t kill_grace_ms = 3000;
};

enum class EvictResult { kEvicted, kInUse, kNotFound };

class NixEnvironmentCache final : public EnvironmentCache {
 public:
  ~NixEnvironmentCache() override;

  EnvironmentOutcome prepare(std::string_view nix, const SandboxLimits& limits,
                             std::stop_token cancel) override;
  void release(const std::string& key) override;

  // The key `nix` has under this cache's configuration.
  std::string key_for(std::string_view nix) const;
  // Every record, most recently used first.
  std::vector<EnvironmentEntry> list();
  std::optional<EnvironmentEntry> get(const std::string& key);
  // Starts building `nix` in the background (unless ready or already building) and
  // returns its entry at once: state building, or the existing entry.
  EnvironmentEntry build_ahead(std::string_view nix, const SandboxLimits& limits);
  // Removes the GC root and record of `key` and deletes the store paths of its closure
  // that nothing else keeps alive. kInUse while a build or a prepared submission uses it.
  EvictResult evict(const std::string& key);
  // evict() on the cache's own threads: kNotFound or kInUse at once, or kEvicted with the
  // entry as it is now (state kEvicting, also in list() until it is gone). Asked again
  // while it runs, the same answer.
  std::pair<EvictResult, std::optional<EnvironmentEntry>> start_evict(const std::string& key);
  // Evicts least recently used environments until the total is within the budget.
  // Returns the evicted keys.
  std::vector<std::string> gc();
  // How many nix processes this cache has started (tests: a hit must not start any).
  int64_t nix_invocations() const;
  // How many `nix print-dev-env` builds this cache has started.
  int64_t builds_started() const;
  // Nix's configuration in force (substituters, build users), checked when opened.
  const NixReadiness& readiness() const;
  // The cap on concurrent builds in force (NixCacheOptions::max_builds, resolved).
  int max_builds() const;
  // Blocks until no background build or eviction of this cache is running (tests, shutdown).
  void wait_idle();

  struct Impl;

 private:
  friend std::unique_ptr<NixEnvironmentCache> open_nix_environment_cache(const NixCacheOptions&);
  explicit NixEnvironmentCache(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Opens the cache: creates the directories, opens the records, asks Nix its version and
// marks records left "building" by a dead process as failed. Throws std::runtime_error
// with context when the data dir or Nix is unusable, and with the readiness problem
// (check_nix_readiness) when Nix cannot build as configured.
std::unique_ptr<NixEnvironmentCache> open_nix_environment_cache(const NixCacheOptions& options);

}  // namespace cutor
