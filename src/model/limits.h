// Resource limits of one stage, and the server's table of defaults and maxima.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace cutor {

// The stages of a submission, in pipeline order.
enum class Stage { kEnvironment = 0, kBuild = 1, kCompile = 2, kRun = 3 };
inline constexpr std::array<Stage, 4> kAllStages = {Stage::kEnvironment, Stage::kBuild,
                                                    Stage::kCompile, Stage::kRun};
// JSON name of a stage: "environment", "build", "compile", "run".
std::string_view stage_name(Stage s);
std::optional<Stage> parse_stage(std::string_view name);

// Every limit is resolved (no "unset") by the time a sandbox sees it.
struct SandboxLimits {
  int64_t cpu_time_ms = 0;
  int64_t wall_time_ms = 0;
  int64_t memory_bytes = 0;
  int64_t processes = 0;     // processes and threads together
  int64_t output_bytes = 0;  // each of stdout and stderr
  int64_t file_size_bytes = 0;
  bool operator==(const SandboxLimits&) const = default;
};

// Names of the limits as they appear in JSON, in a fixed order.
inline constexpr std::array<std::string_view, 6> kLimitNames = {
    "cpu_time_ms", "wall_time_ms", "memory_bytes", "processes", "output_bytes", "file_size_bytes"};
// Access a limit by its JSON name; nullptr for an unknown name.
int64_t* limit_field(SandboxLimits& l, std::string_view name);
const int64_t* limit_field(const SandboxLimits& l, std::string_view name);

// The stages a client may set limits for ("build" has none of its own).
inline constexpr std::array<Stage, 3> kLimitedStages = {Stage::kEnvironment, Stage::kCompile,
                                                        Stage::kRun};

// Defaults and maxima per limited stage; the server's configuration.
struct LimitTable {
  SandboxLimits defaults[4];
  SandboxLimits maxima[4];
  const SandboxLimits& default_for(Stage s) const { return defaults[static_cast<int>(s)]; }
  const SandboxLimits& max_for(Stage s) const { return maxima[static_cast<int>(s)]; }
  // The built-in table documented in docs/api.md.
  static LimitTable builtin();
};

}  // namespace cutor
