// Helpers shared by the store tests.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "model/submission.h"

namespace cutor::testing_util {

// SubmissionRequest::operator== is deleted while SandboxLimits has no operator==
// (src/model/limits.h), so compare field by field.
inline bool same_limits(const SandboxLimits& a, const SandboxLimits& b) {
  for (auto name : kLimitNames)
    if (*limit_field(a, name) != *limit_field(b, name)) return false;
  return true;
}

// A request with three tests, a float checker and stop_on_first_failure.
inline void add_tests(SubmissionRequest& r) {
  for (int i = 0; i < 3; ++i) {
    TestCase t;
    t.name = "t" + std::to_string(i);
    t.stdin_data = std::string("in\0", 3) + std::to_string(i);
    t.args = {"x", std::to_string(i)};
    if (i != 1) t.expected_output = std::string(i, '\xff');  // "" for t0, absent for t1
    t.limits = {.cpu_time_ms = 100 + i,
                .wall_time_ms = 200,
                .memory_bytes = 1 << 20,
                .processes = 8,
                .output_bytes = 4096,
                .file_size_bytes = 1 << 16};
    r.tests.push_back(std::move(t));
  }
  r.checker.type = CheckerType::kFloat;
  r.checker.abs_tolerance = 1e-6;
  r.checker.rel_tolerance = 0.25;
  r.checker.file = "check.sh";
  r.stop_on_first_failure = true;
  r.interactor_file = "judge.sh";
}

inline ::testing::AssertionResult same_request(const SubmissionRequest& a,
                                               const SubmissionRequest& b) {
  if (a.files != b.files) return ::testing::AssertionFailure() << "files differ";
  if (a.stdin_data != b.stdin_data) return ::testing::AssertionFailure() << "stdin differs";
  if (a.args != b.args) return ::testing::AssertionFailure() << "args differ";
  if (a.env != b.env) return ::testing::AssertionFailure() << "env differs";
  if (a.adapter_data != b.adapter_data)
    return ::testing::AssertionFailure() << "adapter_data differs";
  for (Stage s : kAllStages)
    if (!same_limits(a.limits_for(s), b.limits_for(s)))
      return ::testing::AssertionFailure() << "limits of " << stage_name(s) << " differ";
  if (a.tests != b.tests) return ::testing::AssertionFailure() << "tests differ";
  if (a.checker != b.checker) return ::testing::AssertionFailure() << "checker differs";
  if (a.stop_on_first_failure != b.stop_on_first_failure)
    return ::testing::AssertionFailure() << "stop_on_first_failure differs";
  if (a.interactor_file != b.interactor_file)
    return ::testing::AssertionFailure() << "interactor differs";
  return ::testing::AssertionSuccess();
}

}  // namespace cutor::testing_util
