// Piston's v2 API (issue 15) as an adapter: GET /api/v2/runtimes and POST /api/v2/execute
// translated to the same store calls as /api/v1. Field names, units (milliseconds, bytes)
// and answers are Piston's; docs/compat.md lists each field's cutor meaning.
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "model/limits.h"
#include "model/submission.h"
#include "runtimes/runtime.h"

namespace cutor {

// Piston answers every refusal as {"message": "..."} with this status (400 mostly).
struct PistonError {
  int http_status = 400;
  std::string message;
};
boost::json::object piston_error_json(const PistonError& e);

// GET /api/v2/runtimes: [{"language", "version", "aliases"}].
boost::json::array piston_runtimes(const std::vector<Runtime>& runtimes);

// A parsed /api/v2/execute request: the runtime it chose and the submission to run.
struct PistonJob {
  Runtime runtime;
  SubmissionRequest request;
};

// Validates a /api/v2/execute body. The first of `files` becomes the runtime's source_file;
// the others keep their names (Piston's default "file<i>.code" when unnamed). Timeouts and
// cpu times (ms) and memory limits (bytes; -1: the server's maximum) map to cutor's limits;
// a value above the server's maximum is refused as Piston does.
std::expected<PistonJob, PistonError> parse_piston_execute(std::string_view body,
                                                           const std::vector<Runtime>& runtimes,
                                                           const LimitTable& limits,
                                                           int64_t max_files);

// The answer to /api/v2/execute for a FINISHED submission: {language, version, compile?,
// run}; compile only when the runtime compiles, and run a copy of compile when it failed.
boost::json::object piston_result(const PistonJob& job, const Submission& s);

}  // namespace cutor
