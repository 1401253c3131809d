// What the HTTP API needs from the environment cache for /api/v1/dependencies (SPEC
// section 4). The env-cache module implements it; the API only renders and routes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cutor {

// One store path of an environment's closure.
struct DependencyPackage {
  std::string name;
  std::string version;  // empty when unknown
  std::string path;     // /nix/store/...
  int64_t size_bytes = 0;
};

enum class DependencyState { kBuilding, kReady, kFailed, kEvicting };

// One cached environment, as GET /api/v1/dependencies lists it.
struct DependencyEntry {
  std::string key;
  DependencyState state = DependencyState::kBuilding;
  std::optional<std::string> store_path;    // set once ready
  std::vector<DependencyPackage> packages;  // the whole closure
  std::optional<int64_t> size_bytes;        // set once ready
  int64_t created_at_ms = 0;
  std::optional<int64_t> last_used_at_ms;  // set at first use
  int64_t use_count = 0;
  std::optional<std::string> error;  // set when failed
};

// kStarted: the eviction runs in the background; `entry` (state kEvicting) says what goes.
enum class EvictOutcome { kStarted, kInUse, kNotFound };

// Thread-safe. Methods are called on the HTTP server's threads and must not block for
// long: build_ahead starts a build and returns at once.
class DependencyService {
 public:
  virtual ~DependencyService() = default;

  // Every cached environment (building, ready or failed).
  virtual std::vector<DependencyEntry> list() = 0;

  // Starts realising `nix` (the exact cutor.nix bytes) in the background, or finds it
  // in the cache, and returns its entry as it is now. Throws std::invalid_argument when
  // `nix` is refused outright (the message is shown to the client as a 400).
  virtual DependencyEntry build_ahead(const std::string& nix) = 0;

  // Starts evicting the environment with `key` and returns at once: kInUse while an
  // unfinished submission or a build needs it. Sets `entry` with kStarted.
  virtual EvictOutcome evict(const std::string& key, DependencyEntry& entry) = 0;
};

}  // namespace cutor
