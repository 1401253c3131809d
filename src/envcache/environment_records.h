// Durable records of cached environments: table `environments` in the request store's SQLite
// file <data>/cutor.db, reached through a connection of their own and owned by the
// environment cache alone. Safe to share between threads (one connection, serialised) and
// between processes (WAL and a busy timeout).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace cutor {

// One package of an environment's closure.
struct EnvironmentPackage {
  std::string name;
  std::string version;     // empty when unknown
  std::string path;        // store path
  int64_t size_bytes = 0;  // NAR size of this path alone
  bool operator==(const EnvironmentPackage&) const = default;
};

// kEvicting is never stored: list() shows it while an eviction runs.
enum class EnvironmentState { kBuilding, kReady, kFailed, kEvicting };
// "building", "ready", "failed"
const char* environment_state_name(EnvironmentState s);

// One cached environment, as listed by GET /api/v1/dependencies (SPEC §4), plus the
// captured variables the stages need.
struct EnvironmentEntry {
  std::string key;
  EnvironmentState state = EnvironmentState::kBuilding;
  std::optional<std::string> store_path;     // the print-dev-env output; set when ready
  std::vector<EnvironmentPackage> packages;  // the whole closure
  std::optional<int64_t> size_bytes;         // closure size; set when ready
  int64_t created_at_ms = 0;
  std::optional<int64_t> last_used_at_ms;  // unset until first use
  int64_t use_count = 0;
  std::optional<std::string> error;  // set when failed
  std::vector<std::string> env;      // "KEY=value", PATH first
};

class EnvironmentRecords {
 public:
  virtual ~EnvironmentRecords() = default;
  virtual std::optional<EnvironmentEntry> get(const std::string& key) = 0;
  // Every record, most recently used (or created) first.
  virtual std::vector<EnvironmentEntry> list() = 0;
  // Inserts or replaces the whole record.
  virtual void put(const EnvironmentEntry& entry) = 0;
  // Counts one use at `now_ms`.
  virtual void touch(const std::string& key, int64_t now_ms) = 0;
  // True when a record was removed.
  virtual bool remove(const std::string& key) = 0;
};

// Opens (creating if needed) the database file at `path`. Throws std::runtime_error naming
// the file and SQLite's message on failure.
std::unique_ptr<EnvironmentRecords> open_environment_records(const std::string& path);

}  // namespace cutor
