// Built-in output checkers for test cases (issue 14): pure functions comparing a test's
// expected output with what the program printed. The script checker runs in a sandbox and
// lives with the executor; this file holds only the comparisons that need no process.
#pragma once

#include <string>
#include <string_view>

namespace cutor::judge {

enum class CheckerType { kExact, kLines, kTokens, kFloat };

struct CheckerSpec {
  CheckerType type = CheckerType::kLines;
  // kFloat only: two numbers match when |actual - expected| <= abs_tolerance or
  // |actual - expected| <= rel_tolerance * |expected|. Other tokens compare exactly.
  double abs_tolerance = 1e-9;
  double rel_tolerance = 1e-9;
};

struct CheckResult {
  bool accepted = false;
  std::string message;  // why it was refused (empty when accepted); shown as checker_message
};

// Compares `actual` against `expected` by `spec`:
//  kExact  byte for byte;
//  kLines  line by line, ignoring trailing spaces, tabs and '\r' of each line and trailing
//          blank lines;
//  kTokens whitespace-separated tokens;
//  kFloat  tokens, numbers within tolerance (-0.0 equals 0.0; nan matches nan).
CheckResult Check(const CheckerSpec& spec, std::string_view expected, std::string_view actual);

// "exact", "lines", "tokens", "float"; false for any other name.
bool ParseCheckerType(std::string_view name, CheckerType& out);
std::string_view CheckerTypeName(CheckerType type);

}  // namespace cutor::judge
