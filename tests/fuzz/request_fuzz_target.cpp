// libFuzzer target over what a client controls before anything is stored: the raw HTTP
// request (Beast's parser with the server's header and body limits) and the submission
// body (parse_submission_request), plus the rendering of a submission whose stage
// output holds the fuzzed bytes (submission_to_json, text and base64).
//
// Besides "no crash, no leak, no UB" it checks properties a wrong parser would break:
//   - an accepted request re-emitted as JSON (contents as base64, every limit explicit)
//     parses again to the same SubmissionRequest;
//   - every accepted file name passes check_file_name;
//   - base64_decode(base64_encode(x)) == x;
//   - submission_to_json always serializes to JSON that parses again (so the U+FFFD
//     sanitising yields valid UTF-8), and in base64 mode gives back the exact bytes.
// A broken property calls abort(), which libFuzzer and the replay driver report.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "api/submission_json.h"
#include "api/text_encoding.h"

namespace {

namespace http = boost::beast::http;
namespace json = boost::json;

// The server's defaults (HttpServerConfig): 16 KiB of headers. The body limit is smaller
// here so the fuzzer does not spend its time allocating; the parser logic is the same.
constexpr uint32_t kHeaderLimit = 16 * 1024;
constexpr uint64_t kBodyLimit = 1024 * 1024;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "request_fuzz_target: property broken: %s %.*s\n", what,
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

json::object request_to_json(const cutor::SubmissionRequest& r) {
  json::array files;
  for (const auto& f : r.files)
    files.push_back(json::object{
        {"name", f.name}, {"content", cutor::base64_encode(f.content)}, {"encoding", "base64"}});
  json::array args;
  for (const auto& a : r.args) args.push_back(json::string(a));
  json::object env;
  for (const auto& [k, v] : r.env) env[k] = v;
  json::object limits;
  for (cutor::Stage s : cutor::kLimitedStages) {
    json::object per;
    for (std::string_view name : cutor::kLimitNames)
      per[name] = *cutor::limit_field(r.limits_for(s), name);
    limits[cutor::stage_name(s)] = std::move(per);
  }
  return json::object{{"files", std::move(files)},
                      {"stdin", r.stdin_data},
                      {"args", std::move(args)},
                      {"env", std::move(env)},
                      {"limits", std::move(limits)}};
}

// Field by field: SubmissionRequest's defaulted operator== is deleted because
// SandboxLimits has none (src/model/limits.h).
bool same_request(const cutor::SubmissionRequest& a, const cutor::SubmissionRequest& b) {
  if (!(a.files == b.files) || a.stdin_data != b.stdin_data || a.args != b.args || a.env != b.env)
    return false;
  for (cutor::Stage s : cutor::kLimitedStages)
    for (std::string_view name : cutor::kLimitNames)
      if (*cutor::limit_field(a.limits_for(s), name) != *cutor::limit_field(b.limits_for(s), name))
        return false;
  return true;
}

void check_rendering(const cutor::SubmissionRequest& request, std::string_view bytes) {
  cutor::Submission s;
  s.id = "00000000-0000-4000-8000-000000000000";
  s.status = cutor::SubmissionStatus::kFinished;
  s.result = cutor::Result::kOk;
  s.created_at_ms = 1;
  s.finished_at_ms = 2;
  s.request = request;
  for (auto& stage : s.stages) {
    stage.status = cutor::StageStatus::kOk;
    stage.stdout_data.assign(bytes);
    stage.stderr_data.assign(bytes.substr(bytes.size() / 2));
    stage.output = stage.stdout_data + stage.stderr_data;
    stage.code = 0;
  }
  for (bool base64 : {false, true}) {
    const std::string text = json::serialize(cutor::submission_to_json(s, base64));
    boost::system::error_code ec;
    json::value back = json::parse(text, ec);
    if (ec) fail("submission_to_json produced unparsable JSON:", ec.message());
    if (base64) {
      const auto& run = back.at("run").as_object();
      auto decoded = cutor::base64_decode(run.at("stdout").as_string());
      if (!decoded || *decoded != bytes) fail("base64 stdout does not give back the bytes");
    }
  }
}

void check_body(std::string_view body) {
  const cutor::LimitTable table = cutor::LimitTable::builtin();
  const cutor::ApiLimits api_limits{.max_files = 1000};
  auto parsed = cutor::parse_submission_request(body, table, api_limits);
  if (!parsed) {
    const cutor::ApiError& e = parsed.error();
    if (e.http_status != 400 || e.code.empty() || e.message.empty())
      fail("refusal without status 400, code and message:", e.message);
    (void)json::serialize(cutor::api_error_to_json(e));
    return;
  }
  for (const auto& f : parsed->files)
    if (!cutor::check_file_name(f.name).empty()) fail("accepted a bad file name:", f.name);
  if (!parsed->find_file("run.sh")) fail("accepted a request without run.sh");

  const std::string again = json::serialize(request_to_json(*parsed));
  auto reparsed = cutor::parse_submission_request(again, table, api_limits);
  if (!reparsed) fail("re-emitted request refused:", reparsed.error().message);
  if (!same_request(*reparsed, *parsed)) fail("re-emitted request parses differently");
  check_rendering(*parsed, body);
}

void check_http(std::string_view bytes) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(kHeaderLimit);
  parser.body_limit(kBodyLimit);
  parser.eager(true);
  boost::system::error_code ec;
  size_t offset = 0;
  // Feed the bytes as the server's read loop would, then signal end of stream.
  while (offset < bytes.size() && !parser.is_done()) {
    const size_t used =
        parser.put(boost::asio::buffer(bytes.data() + offset, bytes.size() - offset), ec);
    if (ec == http::error::need_more) {
      ec = {};
      break;
    }
    if (ec) return;  // refused: the server answers 400/413/431 and closes
    if (used == 0) break;
    offset += used;
  }
  if (!parser.is_done()) {
    if (!parser.got_some()) return;  // put_eof() requires some bytes parsed
    parser.put_eof(ec);
    if (ec || !parser.is_done()) return;
  }
  const auto& req = parser.get();
  (void)req.target();
  (void)req[http::field::content_type];
  check_body(req.body());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::string copy(bytes);  // base64 round trip on arbitrary bytes
  auto decoded = cutor::base64_decode(cutor::base64_encode(copy));
  if (!decoded || *decoded != copy) fail("base64 round trip");
  check_body(bytes);
  check_http(bytes);
  return 0;
}
