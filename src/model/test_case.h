// Test cases of a submission (compile once, run many) and how each one is judged.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/limits.h"

namespace cutor {

enum class CheckerType { kExact, kLines, kTokens, kFloat, kScript };
// "exact", "lines", "tokens", "float", "script".
std::string_view checker_type_name(CheckerType type);
std::optional<CheckerType> parse_checker_type(std::string_view name);

// How a test's output is compared with its expected output.
struct CheckerSpec {
  CheckerType type = CheckerType::kLines;
  // kFloat: two numbers match when |actual - expected| <= abs_tolerance or
  // |actual - expected| <= rel_tolerance * |expected|. Other tokens compare exactly.
  double abs_tolerance = 1e-9;
  double rel_tolerance = 1e-9;
  std::string file;  // kScript: the submission file that decides
  bool operator==(const CheckerSpec&) const = default;
};

struct TestCase {
  std::string name;  // unique within the submission; "1", "2", ... when the client gave none
  std::string stdin_data;
  std::vector<std::string> args;
  std::optional<std::string> expected_output;  // absent: the verdict comes from the run alone
  SandboxLimits limits;                        // resolved: the run stage's, tightened per test
  bool operator==(const TestCase&) const = default;
};

enum class Verdict {
  kPending,
  kAccepted,
  kWrongAnswer,
  kTimeLimitExceeded,
  kMemoryLimitExceeded,
  kOutputLimitExceeded,
  kRuntimeError,
  kCheckerError,
  kSkipped,
  kInternalError,  // the host failed the test, not the program
};
std::string_view verdict_name(Verdict v);  // "PENDING", "ACCEPTED", ...
std::optional<Verdict> parse_verdict(std::string_view name);

}  // namespace cutor
