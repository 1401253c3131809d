// The JSON of SPEC sections 2 and 3: parsing a submission request with every validation
// rule, and rendering a stored submission.
//
// Used by the HTTP server and by `cutor run`, which prints a submission the same way.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <expected>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "model/limits.h"
#include "model/submission.h"

namespace cutor {

// A refusal to answer with the SPEC's error shape:
// {"error": {"code": ..., "message": ..., "field": ...}} (field null when empty).
struct ApiError {
  int http_status = 400;
  std::string code;     // "invalid_request", "invalid_json", "not_found", ...
  std::string message;  // starts with the field when there is one: "files[2].name: ..."
  std::string field;    // the offending request field, e.g. "limits.run.wall_time_ms"
};

// Builds an ApiError whose message is "<field>: <what>" (or just <what> without a field).
ApiError make_api_error(int http_status, std::string code, std::string field, std::string what);

// {"error": {"code", "message", "field"}} for `e`; "field" is null when `e.field` is empty.
boost::json::object api_error_to_json(const ApiError& e);

// Refuses any key of `obj` outside `allowed` (400 on `prefix` + the key, e.g. "files[0].mode").
std::optional<ApiError> refuse_unknown_keys(const boost::json::object& obj,
                                            std::initializer_list<std::string_view> allowed,
                                            const std::string& prefix);

// One limit's value: a JSON integer from 1 to `max` (400 on `field` otherwise) into `out`.
std::optional<ApiError> check_limit_value(const std::string& field, const boost::json::value& v,
                                          int64_t max, int64_t& out);

// Request bounds that are not per-stage limits.
struct ApiLimits {
  int64_t max_files = 1000;
  int64_t max_tests = 1000;  // test cases in one submission
};

// Parses and validates a POST /api/v1/submissions body. On success every file's content
// is decoded to bytes and every limit is resolved (client value, else the table's
// default). Refusals are 400 with code "invalid_json" (not JSON) or "invalid_request"
// and the offending field. Never throws for bad input.
std::expected<SubmissionRequest, ApiError> parse_submission_request(std::string_view body,
                                                                    const LimitTable& table,
                                                                    const ApiLimits& api_limits);

// The field path ("files[1].name") of the first key that repeats within one JSON object
// of `json_text`, or nullopt. boost::json::parse silently keeps one of the values; a
// request whose readers could disagree is refused instead. Assumes `json_text` parses.
std::optional<std::string> find_duplicate_json_key(std::string_view json_text);

// Validates one file name (SPEC section 2): relative, no empty, "." or ".." component,
// no NUL or backslash, at most 255 bytes a component and 4095 in all. Returns a
// description of the problem, or an empty string when the name is fine.
std::string check_file_name(std::string_view name);

// The whole submission as SPEC section 3 shows it. With `base64_output`, stdout, stderr
// and output of every stage are base64 of the exact bytes; otherwise they are UTF-8 with
// U+FFFD in place of ill-formed sequences.
boost::json::object submission_to_json(const Submission& s, bool base64_output);

// One stage as SPEC section 3 shows it.
boost::json::object stage_to_json(const StageResult& r, bool base64_output);

}  // namespace cutor
