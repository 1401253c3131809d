// The environment cache: cutor.nix → a realised Nix environment, one build per key.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "model/limits.h"
#include "model/submission.h"

namespace cutor {

// What a stage needs to run inside a realised environment.
struct PreparedEnvironment {
  std::string key;
  std::string store_path;
  std::vector<std::string> env;  // exported variables, "KEY=value" (PATH first in lookup)
  std::vector<std::string> read_only_paths;  // host paths to mount read-only at the same place
};

struct EnvironmentOutcome {
  StageResult stage;  // the `environment` stage: OK, or why it failed (Nix's message in stderr)
  std::optional<PreparedEnvironment> environment;  // set when stage.status == kOk
};

class EnvironmentCache {
 public:
  virtual ~EnvironmentCache() = default;

  // Realises `nix` (the exact cutor.nix bytes) or finds it in the cache. Concurrent calls
  // with the same key share one build. A successful outcome counts one use and marks the
  // key in use until release(key) is called.
  virtual EnvironmentOutcome prepare(std::string_view nix, const SandboxLimits& limits,
                                     std::stop_token cancel) = 0;
  // The submission that prepared `key` no longer needs it.
  virtual void release(const std::string& key) = 0;
};

}  // namespace cutor
