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

inline ::testing::AssertionResult same_request(const SubmissionRequest& a,
                                               const SubmissionRequest& b) {
  if (a.files != b.files) return ::testing::AssertionFailure() << "files differ";
  if (a.stdin_data != b.stdin_data) return ::testing::AssertionFailure() << "stdin differs";
  if (a.args != b.args) return ::testing::AssertionFailure() << "args differ";
  if (a.env != b.env) return ::testing::AssertionFailure() << "env differs";
  for (Stage s : kAllStages)
    if (!same_limits(a.limits_for(s), b.limits_for(s)))
      return ::testing::AssertionFailure() << "limits of " << stage_name(s) << " differ";
  return ::testing::AssertionSuccess();
}

}  // namespace cutor::testing_util
