#include "judge/checkers.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

namespace cutor::judge {
namespace {

// Quotes a piece of output for a message, cut so a huge line does not flood the result.
std::string quote(std::string_view text) {
  constexpr size_t kMax = 64;
  std::string out = "'";
  out += text.substr(0, kMax);
  out += text.size() > kMax ? "...'" : "'";
  return out;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) {
      line.remove_suffix(1);
    }
    lines.push_back(line);
    start = end + 1;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

std::vector<std::string_view> split_tokens(std::string_view text) {
  std::vector<std::string_view> tokens;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    if (i > start) tokens.push_back(text.substr(start, i - start));
  }
  return tokens;
}

// The whole token as a number, or false ("1e5x", "" and "0x" stay text).
bool parse_number(std::string_view token, long double& out) {
  std::string copy(token);
  char* end = nullptr;
  errno = 0;
  out = std::strtold(copy.c_str(), &end);
  return !copy.empty() && end == copy.c_str() + copy.size();
}

bool numbers_match(const CheckerSpec& spec, long double expected, long double actual) {
  if (std::isnan(expected) || std::isnan(actual)) return std::isnan(expected) && std::isnan(actual);
  if (std::isinf(expected) || std::isinf(actual)) return expected == actual;
  // The 1e-15 slack keeps a difference of exactly the tolerance from failing on rounding.
  const long double diff = std::fabs(actual - expected);
  constexpr long double kSlack = 1e-15L;
  return diff <= static_cast<long double>(spec.abs_tolerance) + kSlack ||
         diff <= static_cast<long double>(spec.rel_tolerance) * std::fabs(expected) + kSlack;
}

CheckResult check_exact(std::string_view expected, std::string_view actual) {
  if (expected == actual) return {true, ""};
  size_t i = 0;
  while (i < expected.size() && i < actual.size() && expected[i] == actual[i]) ++i;
  return {false, std::string("output differs at byte ") + std::to_string(i) + " (expected " +
                     std::to_string(expected.size()) + " bytes, got " +
                     std::to_string(actual.size()) + ")"};
}

CheckResult check_lines(std::string_view expected, std::string_view actual) {
  const auto want = split_lines(expected);
  const auto got = split_lines(actual);
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    if (want[i] != got[i]) {
      return {false, std::string("line ") + std::to_string(i + 1) + ": expected " + quote(want[i]) +
                         ", got " + quote(got[i])};
    }
  }
  if (want.size() != got.size()) {
    return {false, std::string("expected ") + std::to_string(want.size()) + " lines, got " +
                       std::to_string(got.size())};
  }
  return {true, ""};
}

CheckResult check_tokens(const CheckerSpec& spec, std::string_view expected,
                         std::string_view actual) {
  const auto want = split_tokens(expected);
  const auto got = split_tokens(actual);
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    if (want[i] == got[i]) continue;
    long double a = 0;
    long double b = 0;
    if (spec.type == CheckerType::kFloat && parse_number(want[i], a) && parse_number(got[i], b) &&
        numbers_match(spec, a, b)) {
      continue;
    }
    return {false, std::string("token ") + std::to_string(i + 1) + ": expected " + quote(want[i]) +
                       ", got " + quote(got[i])};
  }
  if (want.size() != got.size()) {
    return {false, std::string("expected ") + std::to_string(want.size()) + " tokens, got " +
                       std::to_string(got.size())};
  }
  return {true, ""};
}

}  // namespace

CheckResult check_output(const CheckerSpec& spec, std::string_view expected,
                         std::string_view actual) {
  switch (spec.type) {
    case CheckerType::kExact:
      return check_exact(expected, actual);
    case CheckerType::kLines:
      return check_lines(expected, actual);
    case CheckerType::kTokens:
    case CheckerType::kFloat:
      return check_tokens(spec, expected, actual);
    case CheckerType::kScript:
      break;  // runs in a sandbox: the executor's
  }
  return {false,
          "checker type " + std::string(checker_type_name(spec.type)) + " is not a comparison"};
}

Verdict verdict_of_run(const StageResult& run) {
  switch (run.status) {
    case StageStatus::kOk:
      return Verdict::kAccepted;
    case StageStatus::kNonzeroExit:
    case StageStatus::kSignaled:
      return Verdict::kRuntimeError;
    case StageStatus::kTimeLimitExceeded:
    case StageStatus::kWallTimeLimitExceeded:
      return Verdict::kTimeLimitExceeded;
    case StageStatus::kMemoryLimitExceeded:
      return Verdict::kMemoryLimitExceeded;
    case StageStatus::kOutputLimitExceeded:
      return Verdict::kOutputLimitExceeded;
    case StageStatus::kPending:
    case StageStatus::kRunning:
      return Verdict::kPending;
    case StageStatus::kSkipped:
      return Verdict::kSkipped;
    case StageStatus::kInternalError:
      return Verdict::kInternalError;
  }
  return Verdict::kInternalError;
}

Result result_of_verdict(Verdict v) {
  switch (v) {
    case Verdict::kAccepted:
      return Result::kAccepted;
    case Verdict::kWrongAnswer:
      return Result::kWrongAnswer;
    case Verdict::kTimeLimitExceeded:
      return Result::kTimeLimitExceeded;
    case Verdict::kMemoryLimitExceeded:
      return Result::kMemoryLimitExceeded;
    case Verdict::kOutputLimitExceeded:
      return Result::kOutputLimitExceeded;
    case Verdict::kRuntimeError:
      return Result::kRuntimeError;
    case Verdict::kCheckerError:
      return Result::kCheckerError;
    case Verdict::kPending:
    case Verdict::kSkipped:
    case Verdict::kInternalError:
      return Result::kInternalError;
  }
  return Result::kInternalError;
}

}  // namespace cutor::judge
