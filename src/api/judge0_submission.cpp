#include "api/judge0_submission.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <charconv>
#include <cmath>
#include <set>

#include "api/text_encoding.h"

namespace cutor::judge0 {
namespace json = boost::json;

namespace {

constexpr int64_t kMaxArgumentsChars = 128;  // Judge0's limit on command_line_arguments
// Characters bash would give a meaning to in Judge0's run script; refused rather than
// stripped (Judge0 drops $&;<>|` silently) or interpreted.
constexpr std::string_view kShellCharacters = "$&;<>|`'\"\\*?[]{}()~#!";

// The attributes a client may set, Judge0's attributes 1 to 16 and the later additions.
const std::set<std::string_view> kInputFields = {"source_code",
                                                 "language_id",
                                                 "compiler_options",
                                                 "command_line_arguments",
                                                 "stdin",
                                                 "expected_output",
                                                 "cpu_time_limit",
                                                 "cpu_extra_time",
                                                 "wall_time_limit",
                                                 "memory_limit",
                                                 "stack_limit",
                                                 "max_processes_and_or_threads",
                                                 "enable_per_process_and_thread_time_limit",
                                                 "enable_per_process_and_thread_memory_limit",
                                                 "max_file_size",
                                                 "number_of_runs",
                                                 "redirect_stderr_to_stdout",
                                                 "callback_url",
                                                 "additional_files",
                                                 "enable_network"};

uint32_t fnv1a(std::string_view s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

// Reads a number the way Judge0 (Rails) does: a JSON number or a string holding one.
std::optional<double> number_of(const json::value& v) {
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  if (v.is_double()) return v.get_double();
  if (v.is_string()) {
    const std::string text(v.get_string());
    double d = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
    if (ec == std::errc() && end == text.data() + text.size() && !text.empty()) return d;
  }
  return std::nullopt;
}

std::string kilobytes_text(int64_t bytes) {
  return std::to_string(bytes / 1024);
}

class Errors {
 public:
  void add(std::string_view field, std::string message) {
    json::value& slot = errors_[field];
    if (!slot.is_array()) slot = json::array();
    slot.as_array().emplace_back(message);
  }
  bool empty() const { return errors_.empty(); }
  json::object take() { return std::move(errors_); }

 private:
  json::object errors_;
};

// A text attribute of the request: bytes, base64 when asked.
std::optional<std::string> read_text(const json::object& o, std::string_view key, bool base64,
                                     Errors& errors) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::nullopt;
  if (!v->is_string()) {
    errors.add(key, "must be a string");
    return std::nullopt;
  }
  if (!base64) return std::string(v->get_string());
  std::string compact;
  for (char c : v->get_string())
    if (c != '\n' && c != '\r') compact.push_back(c);
  auto bytes = base64_decode(compact);
  if (!bytes)
    errors.add(key, key == "additional_files" ? "is not valid base64 (a zip, always base64)"
                                              : "is not valid base64 (base64_encoded=true)");
  return bytes;
}

// A positive limit in Judge0's unit, at most `max`; `scale` converts it to cutor's.
std::optional<int64_t> read_limit(const json::object& o, std::string_view key, double scale,
                                  int64_t max_cutor, const std::string& max_text, bool integer,
                                  Errors& errors) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::nullopt;
  const auto n = number_of(*v);
  if (!n || !std::isfinite(*n)) {
    errors.add(key, "is not a number");
    return std::nullopt;
  }
  if (integer && *n != std::floor(*n)) {
    errors.add(key, "must be an integer");
    return std::nullopt;
  }
  if (*n <= 0) {
    errors.add(key, "must be greater than 0");
    return std::nullopt;
  }
  const double cutor = *n * scale;
  if (cutor > static_cast<double>(max_cutor)) {
    errors.add(key, "must be less than or equal to " + max_text);
    return std::nullopt;
  }
  return std::max<int64_t>(1, std::llround(cutor));
}

// A boolean that cutor supports only as `supported` (false for Judge0's options it lacks).
void require_bool(const json::object& o, std::string_view key, std::string_view why,
                  Errors& errors) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null() || (v->is_bool() && !v->get_bool())) return;
  if (!v->is_bool())
    errors.add(key, "must be true or false");
  else
    errors.add(key, std::string(why));
}

}  // namespace

std::string meta_to_text(const Meta& m) {
  json::object o;
  o["api"] = "judge0";
  o["language_id"] = m.language_id;
  o["language_name"] = m.language_name;
  o["source_file"] = m.source_file;
  o["expected_output"] =
      m.expected_output ? json::value(base64_encode(*m.expected_output)) : json::value(nullptr);
  o["command_line_arguments"] =
      m.command_line_arguments ? json::value(*m.command_line_arguments) : json::value(nullptr);
  o["redirect_stderr_to_stdout"] = m.redirect_stderr_to_stdout;
  o["cpu_time_limit_ms"] = m.cpu_time_limit_ms;
  o["cpu_extra_time_ms"] = m.cpu_extra_time_ms;
  return json::serialize(o);
}

std::optional<Meta> meta_from_text(std::string_view text) {
  if (text.empty()) return std::nullopt;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const json::object& o = v.get_object();
  const json::value* api = o.if_contains("api");
  if (api == nullptr || !api->is_string() || api->get_string() != "judge0") return std::nullopt;
  try {
    Meta m;
    m.language_id = o.at("language_id").as_int64();
    m.language_name = std::string(o.at("language_name").as_string());
    m.source_file = std::string(o.at("source_file").as_string());
    if (const auto& e = o.at("expected_output"); e.is_string()) {
      m.expected_output = base64_decode(e.get_string());
      if (!m.expected_output) return std::nullopt;
    }
    if (const auto& a = o.at("command_line_arguments"); a.is_string())
      m.command_line_arguments = std::string(a.get_string());
    m.redirect_stderr_to_stdout = o.at("redirect_stderr_to_stdout").as_bool();
    m.cpu_time_limit_ms = o.at("cpu_time_limit_ms").as_int64();
    m.cpu_extra_time_ms = o.at("cpu_extra_time_ms").as_int64();
    return m;
  } catch (const std::exception&) {
    return std::nullopt;  // written by another version of this adapter: not ours to read
  }
}

std::vector<Language> languages(const std::vector<Runtime>& runtimes) {
  std::vector<const Runtime*> sorted;
  for (const Runtime& r : runtimes) sorted.push_back(&r);
  std::ranges::sort(sorted, [](const Runtime* a, const Runtime* b) {
    return std::tie(a->name, a->version) < std::tie(b->name, b->version);
  });
  std::vector<Language> out;
  std::set<int64_t> used;
  for (const Runtime* r : sorted) {
    int64_t id = fnv1a(r->name + "@" + r->version) & 0x7fffffff;
    if (id == 0) id = 1;
    while (used.contains(id)) id = id % 0x7fffffff + 1;
    used.insert(id);
    out.push_back({id, fmt::format("{} ({})", r->name, r->version), r});
  }
  return out;
}

const Language* find_language(const std::vector<Language>& langs, int64_t id) {
  for (const Language& l : langs)
    if (l.id == id) return &l;
  return nullptr;
}

json::object language_detail(const Language& lang) {
  json::object o;
  o["id"] = lang.id;
  o["name"] = lang.name;
  o["is_archived"] = false;
  o["source_file"] = lang.runtime->source_file;
  o["compile_cmd"] =
      lang.runtime->compile_sh ? json::value(*lang.runtime->compile_sh) : json::value(nullptr);
  o["run_cmd"] = lang.runtime->run_sh;
  return o;
}

std::string_view status_description(int id) {
  static constexpr std::string_view kNames[kStatusCount] = {"In Queue",
                                                            "Processing",
                                                            "Accepted",
                                                            "Wrong Answer",
                                                            "Time Limit Exceeded",
                                                            "Compilation Error",
                                                            "Runtime Error (SIGSEGV)",
                                                            "Runtime Error (SIGXFSZ)",
                                                            "Runtime Error (SIGFPE)",
                                                            "Runtime Error (SIGABRT)",
                                                            "Runtime Error (NZEC)",
                                                            "Runtime Error (Other)",
                                                            "Internal Error",
                                                            "Exec Format Error"};
  return id >= 1 && id <= kStatusCount ? kNames[id - 1] : std::string_view();
}

std::expected<SubmissionRequest, json::object> parse_submission(
    const json::value& body, bool base64, const std::vector<Runtime>& runtimes,
    const LimitTable& limits) {
  Errors errors;
  if (!body.is_object()) {
    errors.add("base", "the request body must be a JSON object");
    return std::unexpected(errors.take());
  }
  const json::object& o = body.get_object();
  for (const auto& kv : o)
    if (!kInputFields.contains(kv.key()))
      errors.add(kv.key(), "is not an attribute a Judge0 client can set (docs/compat.md)");

  Meta meta;
  const Language* lang = nullptr;
  const std::vector<Language> langs = languages(runtimes);
  const json::value* lid = o.if_contains("language_id");
  if (lid == nullptr || lid->is_null() || (lid->is_string() && lid->get_string().empty())) {
    errors.add("language_id", "can't be blank");
  } else {
    const auto n = number_of(*lid);
    if (n && *n == std::floor(*n)) lang = find_language(langs, static_cast<int64_t>(*n));
    if (lang == nullptr)
      errors.add("language_id", fmt::format("language with id {} doesn't exist",
                                            lid->is_string() ? std::string(lid->get_string())
                                                             : json::serialize(*lid)));
  }
  auto source = read_text(o, "source_code", base64, errors);
  // additional_files: a zip, always base64 (Judge0's rule), unpacked by the build stage.
  const bool has_files = o.contains("additional_files") && !o.at("additional_files").is_null();
  auto zip = read_text(o, "additional_files", true, errors);
  if (has_files && zip && zip->empty()) errors.add("additional_files", "is an empty zip");
  // Judge0's multi-file program takes its compile and run scripts from the zip alone.
  const bool multi_file = lang != nullptr && lang->runtime->name == kMultiFileRuntime;
  if (multi_file && !has_files)
    errors.add("additional_files", "can't be blank for the multi-file program");
  if (!multi_file &&
      (!o.contains("source_code") || o.at("source_code").is_null() || (source && source->empty())))
    errors.add("source_code", "can't be blank");
  auto stdin_data = read_text(o, "stdin", base64, errors);
  meta.expected_output = read_text(o, "expected_output", base64, errors);

  SubmissionRequest req;
  for (Stage s : kLimitedStages) req.limits[static_cast<int>(s)] = limits.default_for(s);
  SandboxLimits& run = req.limits[static_cast<int>(Stage::kRun)];
  const SandboxLimits& max = limits.max_for(Stage::kRun);
  meta.cpu_time_limit_ms = run.cpu_time_ms;
  if (auto v = read_limit(o, "cpu_time_limit", 1000, max.cpu_time_ms,
                          seconds_text(max.cpu_time_ms * 1000), false, errors))
    meta.cpu_time_limit_ms = *v;
  if (const json::value* v = o.if_contains("cpu_extra_time"); v != nullptr && !v->is_null()) {
    const auto n = number_of(*v);
    const int64_t room = max.cpu_time_ms - meta.cpu_time_limit_ms;
    if (!n || !std::isfinite(*n))
      errors.add("cpu_extra_time", "is not a number");
    else if (*n < 0)
      errors.add("cpu_extra_time", "must be greater than or equal to 0");
    else if (*n * 1000 > static_cast<double>(room))
      errors.add("cpu_extra_time", "must be less than or equal to " + seconds_text(room * 1000) +
                                       " (with cpu_time_limit, at most the server's maximum)");
    else
      meta.cpu_extra_time_ms = std::llround(*n * 1000);
  }
  run.cpu_time_ms = meta.cpu_time_limit_ms + meta.cpu_extra_time_ms;
  if (auto v = read_limit(o, "wall_time_limit", 1000, max.wall_time_ms,
                          seconds_text(max.wall_time_ms * 1000), false, errors))
    run.wall_time_ms = *v;
  if (auto v = read_limit(o, "memory_limit", 1024, max.memory_bytes,
                          kilobytes_text(max.memory_bytes), false, errors))
    run.memory_bytes = *v;
  if (auto v = read_limit(o, "max_processes_and_or_threads", 1, max.processes,
                          std::to_string(max.processes), true, errors))
    run.processes = *v;
  if (auto v = read_limit(o, "max_file_size", 1024, max.file_size_bytes,
                          kilobytes_text(max.file_size_bytes), true, errors))
    run.file_size_bytes = *v;

  if (const json::value* v = o.if_contains("stack_limit"); v != nullptr && !v->is_null())
    errors.add("stack_limit",
               "is not supported: cutor has no stack limit of its own (the stack counts toward "
               "memory_limit); leave it out");
  if (const json::value* v = o.if_contains("number_of_runs"); v != nullptr && !v->is_null()) {
    const auto n = number_of(*v);
    if (!n || *n != 1)
      errors.add("number_of_runs",
                 "is not supported: cutor runs a program once; "
                 "only 1 is accepted");
  }
  require_bool(o, "enable_per_process_and_thread_time_limit",
               "is not supported: cutor's limits hold for all processes together", errors);
  require_bool(o, "enable_per_process_and_thread_memory_limit",
               "is not supported: cutor's limits hold for all processes together", errors);
  require_bool(o, "enable_network", "is not supported: the sandbox has no network", errors);
  if (const json::value* v = o.if_contains("redirect_stderr_to_stdout");
      v != nullptr && !v->is_null()) {
    if (!v->is_bool())
      errors.add("redirect_stderr_to_stdout", "must be true or false");
    else
      meta.redirect_stderr_to_stdout = v->get_bool();
  }
  for (auto [key, why] :
       {std::pair{"callback_url",
                  "is not supported yet: cutor has no webhook delivery; poll "
                  "GET /submissions/{token}"},
        {"compiler_options", "is not supported: a runtime's compile.sh takes no options"}})
    if (const json::value* v = o.if_contains(key); v != nullptr && !v->is_null())
      errors.add(key, why);
  if (const json::value* v = o.if_contains("command_line_arguments");
      v != nullptr && !v->is_null()) {
    if (!v->is_string()) {
      errors.add("command_line_arguments", "must be a string");
    } else if (static_cast<int64_t>(v->get_string().size()) > kMaxArgumentsChars) {
      errors.add("command_line_arguments", "is too long (maximum is 128 characters)");
    } else if (v->get_string().find_first_of(kShellCharacters) != std::string::npos ||
               v->get_string().find('\0') != std::string::npos) {
      errors.add(
          "command_line_arguments",
          fmt::format("must be words separated by spaces, without any of {}", kShellCharacters));
    } else {
      meta.command_line_arguments = std::string(v->get_string());
      std::string word;
      for (char c : *meta.command_line_arguments + " ") {
        if (c != ' ' && c != '\t') {
          word += c;
        } else if (!word.empty()) {
          req.args.push_back(std::move(word));
          word.clear();
        }
      }
    }
  }
  if (!errors.empty()) return std::unexpected(errors.take());

  const Runtime& rt = *lang->runtime;
  meta.language_id = lang->id;
  meta.language_name = lang->name;
  meta.source_file = rt.source_file;
  if (source && !source->empty()) req.files.push_back({rt.source_file, std::move(*source)});
  if (zip) req.files.push_back({std::string(kProjectArchive), std::move(*zip)});
  if (rt.nix) req.files.push_back({"cutor.nix", *rt.nix});
  if (rt.compile_sh) req.files.push_back({"compile.sh", *rt.compile_sh});
  req.files.push_back({"run.sh", rt.run_sh});
  req.stdin_data = stdin_data.value_or("");
  req.adapter_data = meta_to_text(meta);
  return req;
}

}  // namespace cutor::judge0
