// The data model shared by the API, the store and the executor: plain values, no I/O.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/limits.h"
#include "model/test_case.h"

namespace cutor {

enum class SubmissionStatus {
  kQueued,
  kSettingUpEnvironment,
  kBuilding,
  kCompiling,
  kRunning,
  kFinished,
};
std::string_view status_name(SubmissionStatus s);  // "QUEUED", ...
std::optional<SubmissionStatus> parse_status(std::string_view name);

enum class StageStatus {
  kPending,
  kRunning,
  kSkipped,
  kOk,
  kNonzeroExit,
  kSignaled,
  kTimeLimitExceeded,  // cpu time
  kWallTimeLimitExceeded,
  kMemoryLimitExceeded,
  kOutputLimitExceeded,
  kInternalError,
};
std::string_view stage_status_name(StageStatus s);  // "PENDING", ...
std::optional<StageStatus> parse_stage_status(std::string_view name);

enum class Result {
  kOk,
  kEnvironmentError,
  kBuildError,
  kCompileError,
  kRuntimeError,
  kTimeLimitExceeded,
  kMemoryLimitExceeded,
  kOutputLimitExceeded,
  kCancelled,
  kInternalError,
  // Only for a submission with tests: ACCEPTED when every test is, else the first failing
  // test's verdict (RUNTIME_ERROR, TIME_LIMIT_EXCEEDED... reuse the values above).
  kAccepted,
  kWrongAnswer,
  kCheckerError,
};
inline constexpr int kResultCount = static_cast<int>(Result::kCheckerError) + 1;
std::string_view result_name(Result r);  // "OK", ...
std::optional<Result> parse_result(std::string_view name);

// A submission file with this name at the root is a project archive: the build stage
// unpacks it in a box before compile (src/executor/project_archive.h).
inline constexpr std::string_view kProjectArchive = "cutor.zip";

// One file of a submission; `content` holds the decoded bytes.
struct SubmissionFile {
  std::string name;
  std::string content;
  bool operator==(const SubmissionFile&) const = default;
};

// What the client asked for, validated and with every limit resolved.
struct SubmissionRequest {
  std::vector<SubmissionFile> files;
  std::string stdin_data;
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;  // in the client's order
  std::array<SandboxLimits, 4> limits{};                 // indexed by Stage; kBuild unused
  // Test cases (none: one run with stdin and args above), their checker, and whether the
  // first failing test skips the rest.
  std::vector<TestCase> tests;
  CheckerSpec checker;
  bool stop_on_first_failure = false;
  // Interactive tests: this submission file talks to run.sh through pipes; empty: none.
  std::string interactor_file;
  // What a compat adapter (docs/compat.md) keeps with the request to answer in its own
  // terms later, e.g. Judge0's language_id and expected_output, as JSON text. Never given
  // to the program; empty for /api/v1 submissions.
  std::string adapter_data;

  const SandboxLimits& limits_for(Stage s) const { return limits[static_cast<int>(s)]; }
  // The file named `name` at the root, or nullptr.
  const SubmissionFile* find_file(std::string_view name) const;
  bool operator==(const SubmissionRequest&) const = default;
};

// How one stage ended (or how far it got). Output strings hold raw bytes.
struct StageResult {
  StageStatus status = StageStatus::kPending;
  std::string stdout_data;
  std::string stderr_data;
  std::string output;         // stdout and stderr interleaved in write order
  std::optional<int> code;    // exit code; empty when signalled or not run
  std::optional<int> signal;  // signal number; empty unless signalled
  int64_t wall_time_us = 0;
  int64_t cpu_time_us = 0;
  int64_t memory_bytes = 0;  // peak
  bool truncated = false;
  bool operator==(const StageResult&) const = default;
};

// How one test case ended. `run` is the test's run (PENDING until it ran).
struct TestResult {
  std::string name;
  Verdict verdict = Verdict::kPending;
  StageResult run;
  std::string checker_message;
  bool operator==(const TestResult&) const = default;
};

struct Submission {
  std::string id;   // uuid v4, lower case
  int64_t seq = 0;  // store-assigned insert order; newer is larger
  SubmissionStatus status = SubmissionStatus::kQueued;
  std::optional<Result> result;
  int64_t created_at_ms = 0;  // unix epoch milliseconds
  std::optional<int64_t> finished_at_ms;
  SubmissionRequest request;
  std::array<StageResult, 4> stages{};  // indexed by Stage
  std::vector<TestResult> tests;        // one per request test, in order

  StageResult& stage(Stage s) { return stages[static_cast<int>(s)]; }
  const StageResult& stage(Stage s) const { return stages[static_cast<int>(s)]; }
};

// A random RFC 4122 version 4 uuid, lower-case hex with dashes.
std::string new_uuid();
// Milliseconds since the unix epoch.
int64_t now_unix_ms();
// "2026-11-25T17:00:00.000Z"
std::string format_rfc3339_ms(int64_t unix_ms);
// "SIGKILL" for 9; "SIG<n>" for numbers without a name.
std::string signal_name(int signo);

}  // namespace cutor
