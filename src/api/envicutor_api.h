// envicutor's API (issue 15) as an adapter, served at the root as envicutor serves it:
// GET/POST /runtimes, DELETE /runtimes/{id}, POST /execute (?is_project=true). Its
// runtimes are the catalogue's entries (their store ids are envicutor's runtime ids);
// each execution is a stored cutor submission. Field names, units (seconds, kilobytes),
// messages and answers are envicutor's; docs/compat.md lists each field's cutor meaning.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "api/dependency_service.h"
#include "model/limits.h"
#include "model/submission.h"
#include "runtimes/runtime.h"
#include "store/submission_store.h"

namespace cutor {

// What to answer: a status and a JSON body, or an empty body (a DELETE's 200).
struct EnvicutorAnswer {
  int http_status = 200;
  std::optional<boost::json::value> body;
};

struct EnvicutorContext {
  SubmissionStore& store;
  const LimitTable& limits;
  DependencyService* deps = nullptr;  // builds a new runtime's cutor.nix ahead; may be null
  int64_t max_wait_ms = 0;            // said when an execution did not finish in time
  // Inserts a QUEUED submission and waits (bounded by max_wait_ms) until it is finished.
  std::function<boost::asio::awaitable<std::optional<Submission>>(const Submission&)>
      insert_and_wait;
};

// True for /runtimes, /runtimes/<anything> and /execute (no clash with Judge0's
// /submissions, /languages... nor cutor's /api/...).
bool is_envicutor_path(std::string_view path);

// Answers one request to an envicutor path. `query`: the decoded query string.
boost::asio::awaitable<EnvicutorAnswer> handle_envicutor(
    const EnvicutorContext& ctx, std::string_view method, std::string_view path,
    const std::map<std::string, std::string>& query, std::string_view content_type,
    std::string_view body);

// --- the parts of POST /execute, exposed for unit tests (envicutor_execute.cpp) ---

// A parsed /execute request: the runtime it names and the submission to run.
struct EnvicutorJob {
  Runtime runtime;
  SubmissionRequest request;
  bool is_project = false;
  int64_t compile_cpu_ms = 0;  // envicutor's cpu_time (the box allows extra_time more)
  int64_t run_cpu_ms = 0;
};

// Validates a POST /execute body against the catalogue entry with `runtime_id`
// (`find_runtime_by_id` answers nullopt when there is none). Refusals are
// {http status, envicutor's message}.
std::expected<EnvicutorJob, std::pair<int, std::string>> parse_envicutor_execute(
    std::string_view body, bool is_project,
    const std::function<std::optional<Runtime>(int64_t)>& find_runtime_by_id,
    const LimitTable& limits);

// {"extract", "compile", "run"} for a FINISHED submission; absent stages are null.
boost::json::object envicutor_result(const EnvicutorJob& job, const Submission& s);

}  // namespace cutor
