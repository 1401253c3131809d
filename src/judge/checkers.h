// Judging test cases (issue 14): the built-in comparisons of a test's expected output with
// what the program printed, and verdicts from runs. Pure functions; the script checker runs
// in a sandbox and lives with the executor.
#pragma once

#include <string>
#include <string_view>

#include "model/submission.h"

namespace cutor::judge {

struct CheckResult {
  bool accepted = false;
  std::string message;  // why it was refused (empty when accepted); shown as checker_message
};

// Compares `actual` against `expected` by `spec` (any type but kScript):
//  kExact  byte for byte;
//  kLines  line by line, ignoring trailing spaces, tabs and '\r' of each line and trailing
//          blank lines;
//  kTokens whitespace-separated tokens;
//  kFloat  tokens, numbers within tolerance (-0.0 equals 0.0; nan matches nan).
CheckResult check_output(const CheckerSpec& spec, std::string_view expected,
                         std::string_view actual);

// The verdict a test's run alone gives: ACCEPTED for a clean exit (before any comparison),
// RUNTIME_ERROR, TIME_LIMIT_EXCEEDED (cpu or wall), MEMORY_..., OUTPUT_LIMIT_EXCEEDED.
Verdict verdict_of_run(const StageResult& run);

// The submission's result for a failing test's verdict (ACCEPTED for ACCEPTED).
Result result_of_verdict(Verdict v);

}  // namespace cutor::judge
