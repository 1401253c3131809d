// Judge0 CE's API (issue 15) as an adapter, served at the root as Judge0 serves it:
// /submissions (single and batch), /languages, /statuses, /about, /config_info. Every
// Judge0 submission is a stored cutor submission whose id is the token; field names,
// units (seconds, kilobytes), status ids and error shapes are Judge0's. docs/compat.md
// lists every attribute with its cutor meaning or its refusal.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "model/limits.h"
#include "model/submission.h"
#include "store/submission_store.h"

namespace cutor {

// What to answer: a status and a JSON body, or no body (Judge0's 404 for a token).
struct Judge0Answer {
  int http_status = 200;
  std::optional<boost::json::value> body;
};

struct Judge0Context {
  SubmissionStore& store;
  const LimitTable& limits;
  int64_t max_queue = 0;  // 0: no bound
  std::string version;    // GET /about
  // Inserts a QUEUED submission and waits (bounded by the server's max_wait_ms) until it
  // is finished; answers what the store then holds (nullopt: it disappeared).
  std::function<boost::asio::awaitable<std::optional<Submission>>(const Submission&)>
      insert_and_wait;
};

// True for the paths this adapter answers (/submissions..., /languages..., /statuses,
// /about, /config_info).
bool is_judge0_path(std::string_view path);

// Answers one request to a Judge0 path. `query` is the decoded query string (each name at
// most once); `content_type` the request's header (empty when absent).
boost::asio::awaitable<Judge0Answer> handle_judge0(const Judge0Context& ctx,
                                                   std::string_view method, std::string_view path,
                                                   const std::map<std::string, std::string>& query,
                                                   std::string_view content_type,
                                                   std::string_view body);

}  // namespace cutor
