#include <openssl/rand.h>
#include <signal.h>
#include <string.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <stdexcept>

#include "model/limits.h"
#include "model/submission.h"

namespace cutor {
namespace {

template <typename Enum, size_t N>
std::optional<Enum> parse_by_name(std::string_view name,
                                  const std::array<std::string_view, N>& names) {
  for (size_t i = 0; i < N; ++i)
    if (names[i] == name) return static_cast<Enum>(i);
  return std::nullopt;
}

constexpr std::array<std::string_view, 4> kStageNames = {"environment", "build", "compile", "run"};
constexpr std::array<std::string_view, 6> kStatusNames = {
    "QUEUED", "SETTING_UP_ENVIRONMENT", "BUILDING", "COMPILING", "RUNNING", "FINISHED"};
constexpr std::array<std::string_view, 11> kStageStatusNames = {"PENDING",
                                                                "RUNNING",
                                                                "SKIPPED",
                                                                "OK",
                                                                "NONZERO_EXIT",
                                                                "SIGNALED",
                                                                "TIME_LIMIT_EXCEEDED",
                                                                "WALL_TIME_LIMIT_EXCEEDED",
                                                                "MEMORY_LIMIT_EXCEEDED",
                                                                "OUTPUT_LIMIT_EXCEEDED",
                                                                "INTERNAL_ERROR"};
constexpr std::array<std::string_view, 13> kResultNames = {"OK",
                                                           "ENVIRONMENT_ERROR",
                                                           "BUILD_ERROR",
                                                           "COMPILE_ERROR",
                                                           "RUNTIME_ERROR",
                                                           "TIME_LIMIT_EXCEEDED",
                                                           "MEMORY_LIMIT_EXCEEDED",
                                                           "OUTPUT_LIMIT_EXCEEDED",
                                                           "CANCELLED",
                                                           "INTERNAL_ERROR",
                                                           "ACCEPTED",
                                                           "WRONG_ANSWER",
                                                           "CHECKER_ERROR"};
constexpr std::array<std::string_view, 5> kCheckerTypeNames = {"exact", "lines", "tokens", "float",
                                                               "script"};
constexpr std::array<std::string_view, 10> kVerdictNames = {"PENDING",
                                                            "ACCEPTED",
                                                            "WRONG_ANSWER",
                                                            "TIME_LIMIT_EXCEEDED",
                                                            "MEMORY_LIMIT_EXCEEDED",
                                                            "OUTPUT_LIMIT_EXCEEDED",
                                                            "RUNTIME_ERROR",
                                                            "CHECKER_ERROR",
                                                            "SKIPPED",
                                                            "INTERNAL_ERROR"};

}  // namespace

std::string_view stage_name(Stage s) {
  return kStageNames[static_cast<int>(s)];
}
std::optional<Stage> parse_stage(std::string_view n) {
  return parse_by_name<Stage>(n, kStageNames);
}
std::string_view status_name(SubmissionStatus s) {
  return kStatusNames[static_cast<int>(s)];
}
std::optional<SubmissionStatus> parse_status(std::string_view n) {
  return parse_by_name<SubmissionStatus>(n, kStatusNames);
}
std::string_view stage_status_name(StageStatus s) {
  return kStageStatusNames[static_cast<int>(s)];
}
std::optional<StageStatus> parse_stage_status(std::string_view n) {
  return parse_by_name<StageStatus>(n, kStageStatusNames);
}
std::string_view result_name(Result r) {
  return kResultNames[static_cast<int>(r)];
}
std::optional<Result> parse_result(std::string_view n) {
  return parse_by_name<Result>(n, kResultNames);
}

std::string_view checker_type_name(CheckerType t) {
  return kCheckerTypeNames[static_cast<int>(t)];
}
std::optional<CheckerType> parse_checker_type(std::string_view n) {
  return parse_by_name<CheckerType>(n, kCheckerTypeNames);
}
std::string_view verdict_name(Verdict v) {
  return kVerdictNames[static_cast<int>(v)];
}
std::optional<Verdict> parse_verdict(std::string_view n) {
  return parse_by_name<Verdict>(n, kVerdictNames);
}

int64_t* limit_field(SandboxLimits& l, std::string_view name) {
  if (name == "cpu_time_ms") return &l.cpu_time_ms;
  if (name == "wall_time_ms") return &l.wall_time_ms;
  if (name == "memory_bytes") return &l.memory_bytes;
  if (name == "processes") return &l.processes;
  if (name == "output_bytes") return &l.output_bytes;
  if (name == "file_size_bytes") return &l.file_size_bytes;
  return nullptr;
}
const int64_t* limit_field(const SandboxLimits& l, std::string_view name) {
  return limit_field(const_cast<SandboxLimits&>(l), name);
}

LimitTable LimitTable::builtin() {
  constexpr int64_t MiB = 1024 * 1024, GiB = 1024 * MiB;
  LimitTable t;
  auto& env = t.defaults[static_cast<int>(Stage::kEnvironment)];
  env = {.cpu_time_ms = 600'000,
         .wall_time_ms = 600'000,
         .memory_bytes = 4 * GiB,
         .processes = 256,
         .output_bytes = 1 * MiB,
         .file_size_bytes = 4 * GiB};
  auto& comp = t.defaults[static_cast<int>(Stage::kCompile)];
  comp = {.cpu_time_ms = 30'000,
          .wall_time_ms = 60'000,
          .memory_bytes = 1 * GiB,
          .processes = 128,
          .output_bytes = 1 * MiB,
          .file_size_bytes = 256 * MiB};
  auto& run = t.defaults[static_cast<int>(Stage::kRun)];
  run = {.cpu_time_ms = 5'000,
         .wall_time_ms = 10'000,
         .memory_bytes = 512 * MiB,
         .processes = 64,
         .output_bytes = 1 * MiB,
         .file_size_bytes = 64 * MiB};
  t.maxima[static_cast<int>(Stage::kEnvironment)] = {.cpu_time_ms = 1'800'000,
                                                     .wall_time_ms = 1'800'000,
                                                     .memory_bytes = 16 * GiB,
                                                     .processes = 1024,
                                                     .output_bytes = 16 * MiB,
                                                     .file_size_bytes = 16 * GiB};
  const SandboxLimits stage_max = {.cpu_time_ms = 300'000,
                                   .wall_time_ms = 600'000,
                                   .memory_bytes = 8 * GiB,
                                   .processes = 1024,
                                   .output_bytes = 64 * MiB,
                                   .file_size_bytes = 1 * GiB};
  t.maxima[static_cast<int>(Stage::kCompile)] = stage_max;
  t.maxima[static_cast<int>(Stage::kRun)] = stage_max;
  return t;
}

const SubmissionFile* SubmissionRequest::find_file(std::string_view name) const {
  for (const auto& f : files)
    if (f.name == name) return &f;
  return nullptr;
}

std::string new_uuid() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("RAND_bytes failed");
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return out;
}

int64_t now_unix_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string format_rfc3339_ms(int64_t unix_ms) {
  time_t secs = static_cast<time_t>(unix_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(unix_ms % 1000));
  return buf;
}

std::string signal_name(int signo) {
  const char* abbrev = sigabbrev_np(signo);
  if (abbrev) return std::string("SIG") + abbrev;
  return "SIG" + std::to_string(signo);
}

}  // namespace cutor
