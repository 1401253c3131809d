// The test-case fields of a submission request (issue 14): `tests`, `checker` and
// `stop_on_first_failure`, validated like the rest of the request, and their rendering.
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <optional>

#include "api/submission_json.h"

namespace cutor {

// Parses the test-case fields of `top` into `request`, whose files and limits are already
// parsed (a script checker names a file; a test's limits start from the run stage's).
// Returns the first problem: 400 invalid_request naming the field.
std::optional<ApiError> parse_test_cases(const boost::json::object& top, const LimitTable& table,
                                         const ApiLimits& api_limits, SubmissionRequest& request);

// "tests" of a submission: one object per test, in request order.
boost::json::array tests_to_json(const Submission& s, bool base64_output);

}  // namespace cutor
