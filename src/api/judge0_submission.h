// Judge0 CE's submission model (issue 15) over cutor's: language ids from the runtime
// catalogue, a Judge0 submission body validated into a SubmissionRequest, and a stored
// submission rendered with Judge0's fields, units (seconds, kilobytes) and status ids.
// Internal to the Judge0 adapter (judge0_api.h); docs/compat.md lists every field.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/limits.h"
#include "model/submission.h"
#include "runtimes/runtime.h"

namespace cutor::judge0 {

// One catalogue entry under its Judge0 id. The id is derived from the runtime's name and
// version alone (FNV-1a, 31 bits; the next free id on a collision, in name/version order),
// so it is the same after a restart and on every server with that catalogue.
struct Language {
  int64_t id = 0;
  std::string name;  // "python (3.11.2)", Judge0's "<name> (<version>)"
  const Runtime* runtime = nullptr;
};
// Sorted by name then version; the pointers point into `runtimes`.
std::vector<Language> languages(const std::vector<Runtime>& runtimes);
const Language* find_language(const std::vector<Language>& langs, int64_t id);

// {"id", "name", "is_archived", "source_file", "compile_cmd", "run_cmd"} (GET /languages/{id}).
boost::json::object language_detail(const Language& lang);

// Judge0's 14 statuses: 1 In Queue ... 14 Exec Format Error.
std::string_view status_description(int id);
inline constexpr int kStatusCount = 14;

// The catalogue runtime that is Judge0's "Multi-file program": no source_code needed, the
// zip of additional_files holds `run` (and optionally `compile`), bash scripts.
inline constexpr std::string_view kMultiFileRuntime = "multi-file";

// What the adapter keeps with a request (SubmissionRequest::adapter_data, JSON with
// "api": "judge0") to answer in Judge0's terms later.
struct Meta {
  int64_t language_id = 0;
  std::string language_name;
  std::string source_file;
  std::optional<std::string> expected_output;  // bytes
  std::optional<std::string> command_line_arguments;
  bool redirect_stderr_to_stdout = false;
  int64_t cpu_time_limit_ms = 0;  // Judge0's limit; the sandbox's is this plus the extra time
  int64_t cpu_extra_time_ms = 0;
};
std::string meta_to_text(const Meta& m);
// nullopt for a request that was not made through this adapter.
std::optional<Meta> meta_from_text(std::string_view text);

// Judge0's expected_output comparison: every line right-stripped of whitespace and NUL,
// then the whole text right-stripped. Empty stdout counts as null, which equals nothing.
bool outputs_match(std::string_view expected, const std::optional<std::string>& stdout_data);

// Ruby's Base64.encode64, which Judge0 answers with: a '\n' after every 60 characters and
// at the end.
std::string encode64(std::string_view bytes);

// Validates one Judge0 submission body. Refusals are Judge0's 422 shape, every bad field
// at once: {"language_id": ["can't be blank"], ...}. With `base64`, source_code, stdin and
// expected_output are base64 (line breaks allowed, as encode64 writes them).
std::expected<SubmissionRequest, boost::json::object> parse_submission(
    const boost::json::value& body, bool base64, const std::vector<Runtime>& runtimes,
    const LimitTable& limits);

// Every attribute `fields=*` gives, in Judge0's order, and the 8 given by default.
const std::vector<std::string>& all_fields();
const std::vector<std::string>& default_fields();
// Reads ?fields= (absent: the defaults; "*": all). Unknown names: Judge0's 400 message
// "invalid fields: [a, b]".
std::expected<std::vector<std::string>, std::string> parse_fields(const std::string* fields);

// A Judge0 submission: nullopt when `s` was not made through this adapter. Text attributes
// are base64 (encode64) with `base64`; without it, a text that is not UTF-8 makes the
// answer the string Judge0 refuses it with.
std::optional<std::expected<boost::json::object, std::string>> render(
    const Submission& s, const std::vector<std::string>& fields, bool base64);

// Seconds as Judge0 writes its decimals: "0.016", "0.29", "5.0".
std::string seconds_text(int64_t micros);

}  // namespace cutor::judge0
