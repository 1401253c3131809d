#include "api/submission_json.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <cstring>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "api/test_cases_json.h"
#include "api/text_encoding.h"

namespace cutor {
namespace json = boost::json;

namespace {

constexpr size_t kMaxComponentBytes = 255;
constexpr size_t kMaxNameBytes = 4095;

ApiError invalid(std::string field, std::string what) {
  return make_api_error(400, "invalid_request", std::move(field), std::move(what));
}

std::string_view kind_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "unknown";
}

ApiError wrong_type(std::string field, std::string_view expected, const json::value& got) {
  return invalid(std::move(field), fmt::format("must be {}, not {}", expected, kind_name(got)));
}

// Collects the decoded request; each step returns the first problem it finds.
class RequestParser {
 public:
  RequestParser(const LimitTable& table, const ApiLimits& api_limits)
      : table_(table), api_limits_(api_limits) {}

  std::optional<ApiError> parse(const json::object& top) {
    if (auto e = refuse_unknown_keys(top,
                                     {"files", "stdin", "inputs", "args", "env", "limits", "tests",
                                      "checker", "stop_on_first_failure", "interactor"},
                                     ""))
      return e;
    if (auto e = parse_files(top)) return e;
    if (auto e = parse_stdin(top)) return e;
    if (auto e = parse_args(top)) return e;
    if (auto e = parse_env(top)) return e;
    if (auto e = parse_limits(top)) return e;
    if (auto e = parse_test_cases(top, table_, api_limits_, request_)) return e;
    return std::nullopt;
  }

  SubmissionRequest take() { return std::move(request_); }

 private:
  std::optional<ApiError> parse_files(const json::object& top) {
    const json::value* files = top.if_contains("files");
    if (files == nullptr) return invalid("files", "is required");
    if (!files->is_array()) return wrong_type("files", "an array of file objects", *files);
    const json::array& arr = files->get_array();
    if (arr.empty()) return invalid("files", "must hold at least one file");
    if (static_cast<int64_t>(arr.size()) > api_limits_.max_files)
      return invalid("files", fmt::format("holds {} files; at most {} are allowed", arr.size(),
                                          api_limits_.max_files));
    std::unordered_map<std::string_view, size_t> index_of;
    for (size_t i = 0; i < arr.size(); ++i) {
      const std::string prefix = fmt::format("files[{}]", i);
      if (!arr[i].is_object()) return wrong_type(prefix, "a file object", arr[i]);
      const json::object& f = arr[i].get_object();
      if (auto e = refuse_unknown_keys(f, {"name", "content", "encoding"}, prefix + ".")) return e;
      const json::value* name = f.if_contains("name");
      if (name == nullptr) return invalid(prefix + ".name", "is required");
      if (!name->is_string()) return wrong_type(prefix + ".name", "a string", *name);
      const std::string_view name_sv = name->get_string();
      if (std::string problem = check_file_name(name_sv); !problem.empty())
        return invalid(prefix + ".name", problem);
      if (auto [it, inserted] = index_of.emplace(name_sv, i); !inserted)
        return invalid(prefix + ".name", fmt::format("repeats files[{}].name", it->second));

      const json::value* content = f.if_contains("content");
      if (content == nullptr) return invalid(prefix + ".content", "is required");
      if (!content->is_string()) return wrong_type(prefix + ".content", "a string", *content);
      std::string_view encoding = "utf8";
      if (const json::value* enc = f.if_contains("encoding")) {
        if (!enc->is_string()) return wrong_type(prefix + ".encoding", "a string", *enc);
        encoding = enc->get_string();
      }
      const std::string_view text = content->get_string();
      std::optional<std::string> bytes;
      if (encoding == "utf8") {
        bytes = std::string(text);
      } else if (encoding == "base64") {
        bytes = base64_decode(text);
        if (!bytes) return invalid(prefix + ".content", "is not valid base64 (RFC 4648, padded)");
      } else if (encoding == "hex") {
        bytes = hex_decode(text);
        if (!bytes)
          return invalid(prefix + ".content", "is not valid hex (an even number of hex digits)");
      } else {
        return invalid(prefix + ".encoding", "must be one of utf8, base64, hex");
      }
      request_.files.push_back({std::string(name_sv), std::move(*bytes)});
    }
    // A name cannot be both a file and a directory ("a" and "a/b"). The names form a tree of
    // (parent node, component) pairs, so each name costs time in proportion to its length:
    // hashing every prefix instead made a request of deep names cost seconds of cpu.
    std::unordered_map<std::string, size_t> node_of;  // "<parent node>/<component>" -> node
    std::vector<std::optional<size_t>> file_at_node{std::nullopt};  // node 0: the root
    auto walk = [&](std::string_view name, bool create, auto&& on_directory) -> size_t {
      size_t node = 0;
      size_t start = 0;
      while (true) {
        const size_t slash = name.find('/', start);
        const bool last = slash == std::string_view::npos;
        std::string key = std::to_string(node) + "/";
        key += name.substr(start, last ? std::string_view::npos : slash - start);
        auto it = node_of.find(key);
        if (it == node_of.end()) {
          if (!create) return node;  // no file has this prefix
          it = node_of.emplace(std::move(key), file_at_node.size()).first;
          file_at_node.emplace_back();
        }
        node = it->second;
        if (last) return node;
        if (!on_directory(node)) return node;
        start = slash + 1;
      }
    };
    for (size_t i = 0; i < request_.files.size(); ++i)
      file_at_node[walk(request_.files[i].name, true, [](size_t) { return true; })] = i;
    for (size_t i = 0; i < request_.files.size(); ++i) {
      std::optional<size_t> outer;
      walk(request_.files[i].name, false, [&](size_t node) {
        outer = file_at_node[node];
        return !outer.has_value();
      });
      if (outer)
        return invalid(fmt::format("files[{}].name", i),
                       fmt::format("is inside files[{}].name, which is a file", *outer));
    }
    if (request_.find_file("run.sh") == nullptr)
      return invalid("files", "run.sh is required at the root");
    return std::nullopt;
  }

  std::optional<ApiError> parse_stdin(const json::object& top) {
    const json::value* in = top.if_contains("stdin");
    const json::value* old = top.if_contains("inputs");
    if (in != nullptr && old != nullptr)
      return invalid("inputs", "is the older name of stdin; send only one of them");
    const char* field = in != nullptr ? "stdin" : "inputs";
    if (in == nullptr) in = old;
    if (in == nullptr) return std::nullopt;
    if (!in->is_string()) return wrong_type(field, "a string", *in);
    request_.stdin_data = std::string(in->get_string());
    return std::nullopt;
  }

  std::optional<ApiError> parse_args(const json::object& top) {
    const json::value* args = top.if_contains("args");
    if (args == nullptr) return std::nullopt;
    if (!args->is_array()) return wrong_type("args", "an array of strings", *args);
    const json::array& arr = args->get_array();
    for (size_t i = 0; i < arr.size(); ++i) {
      const std::string field = fmt::format("args[{}]", i);
      if (!arr[i].is_string()) return wrong_type(field, "a string", arr[i]);
      const std::string_view a = arr[i].get_string();
      if (a.find('\0') != std::string_view::npos) return invalid(field, "must not contain NUL");
      request_.args.emplace_back(a);
    }
    return std::nullopt;
  }

  std::optional<ApiError> parse_env(const json::object& top) {
    const json::value* env = top.if_contains("env");
    if (env == nullptr) return std::nullopt;
    if (!env->is_object()) return wrong_type("env", "an object of strings", *env);
    for (const auto& kv : env->get_object()) {
      const std::string_view key = kv.key();
      const std::string field = "env." + std::string(key);
      if (key.empty()) return invalid(field, "a variable name must not be empty");
      if (key.find('=') != std::string_view::npos)
        return invalid(field, "a variable name must not contain '='");
      if (key.find('\0') != std::string_view::npos)
        return invalid(field, "a variable name must not contain NUL");
      if (!kv.value().is_string()) return wrong_type(field, "a string", kv.value());
      const std::string_view value = kv.value().get_string();
      if (value.find('\0') != std::string_view::npos) return invalid(field, "must not contain NUL");
      request_.env.emplace_back(std::string(key), std::string(value));
    }
    return std::nullopt;
  }

  std::optional<ApiError> parse_limits(const json::object& top) {
    for (Stage s : kLimitedStages) request_.limits[static_cast<int>(s)] = table_.default_for(s);
    const json::value* limits = top.if_contains("limits");
    if (limits == nullptr) return std::nullopt;
    if (!limits->is_object()) return wrong_type("limits", "an object", *limits);
    for (const auto& stage_kv : limits->get_object()) {
      const std::string stage_field = "limits." + std::string(stage_kv.key());
      const std::optional<Stage> stage = parse_stage(stage_kv.key());
      bool limited = false;
      for (Stage s : kLimitedStages) limited = limited || (stage && *stage == s);
      if (!limited)
        return invalid(stage_field, "unknown stage; limits apply to environment, compile, run");
      if (!stage_kv.value().is_object())
        return wrong_type(stage_field, "an object", stage_kv.value());
      SandboxLimits& resolved = request_.limits[static_cast<int>(*stage)];
      const SandboxLimits& maxima = table_.max_for(*stage);
      for (const auto& kv : stage_kv.value().get_object()) {
        const std::string field = stage_field + "." + std::string(kv.key());
        int64_t* slot = limit_field(resolved, kv.key());
        if (slot == nullptr) return invalid(field, "unknown limit");
        if (auto e = check_limit_value(field, kv.value(), *limit_field(maxima, kv.key()), *slot))
          return e;
      }
    }
    return std::nullopt;
  }

  const LimitTable& table_;
  const ApiLimits& api_limits_;
  SubmissionRequest request_;
};

// Finds the first key that repeats within one JSON object. boost::json::parse keeps
// only one of the values silently; a proxy that validated the other would be fooled.
// Returns the key's field path ("files[1].name"), or nullopt. Assumes `body` parses.
class DuplicateKeyFinder {
 public:
  static std::optional<std::string> find(std::string_view body) {
    boost::json::basic_parser<DuplicateKeyFinder> parser(json::parse_options{});
    boost::system::error_code ec;
    parser.write_some(false, body.data(), body.size(), ec);
    return parser.handler().duplicate_;
  }

  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  bool on_document_begin(boost::system::error_code&) { return true; }
  bool on_document_end(boost::system::error_code&) { return true; }
  bool on_array_begin(boost::system::error_code&) {
    value_started();
    frames_.push_back({});
    return true;
  }
  bool on_array_end(std::size_t, boost::system::error_code&) {
    frames_.pop_back();
    return true;
  }
  bool on_object_begin(boost::system::error_code&) {
    value_started();
    frames_.push_back({.is_object = true});
    return true;
  }
  bool on_object_end(std::size_t, boost::system::error_code&) {
    frames_.pop_back();
    return true;
  }
  bool on_string_part(std::string_view, std::size_t, boost::system::error_code&) { return true; }
  bool on_string(std::string_view, std::size_t, boost::system::error_code&) {
    return value_started();
  }
  bool on_key_part(std::string_view s, std::size_t, boost::system::error_code&) {
    key_ += s;
    return true;
  }
  bool on_key(std::string_view s, std::size_t, boost::system::error_code& ec) {
    key_ += s;
    Frame& f = frames_.back();
    f.key = std::move(key_);
    key_.clear();
    if (!f.keys.insert(f.key).second) {
      duplicate_ = path();
      ec = make_error_code(std::errc::invalid_argument);  // stop here
      return false;
    }
    return true;
  }
  bool on_number_part(std::string_view, boost::system::error_code&) { return true; }
  bool on_int64(int64_t, std::string_view, boost::system::error_code&) { return value_started(); }
  bool on_uint64(uint64_t, std::string_view, boost::system::error_code&) { return value_started(); }
  bool on_double(double, std::string_view, boost::system::error_code&) { return value_started(); }
  bool on_bool(bool, boost::system::error_code&) { return value_started(); }
  bool on_null(boost::system::error_code&) { return value_started(); }
  bool on_comment_part(std::string_view, boost::system::error_code&) { return true; }
  bool on_comment(std::string_view, boost::system::error_code&) { return true; }

 private:
  struct Frame {
    bool is_object = false;
    int64_t index = -1;  // arrays: index of the current item
    std::string key;     // objects: the current key
    std::unordered_set<std::string> keys;
  };

  bool value_started() {
    if (!frames_.empty() && !frames_.back().is_object) ++frames_.back().index;
    return true;
  }
  std::string path() const {
    std::string out;
    for (const Frame& f : frames_) {
      if (f.is_object)
        out += (out.empty() ? "" : ".") + f.key;
      else
        out += fmt::format("[{}]", f.index);
    }
    return out;
  }

  std::vector<Frame> frames_;
  std::string key_;
  std::optional<std::string> duplicate_;
};

json::value optional_time(const std::optional<int64_t>& ms) {
  if (!ms) return nullptr;
  return json::string(format_rfc3339_ms(*ms));
}

json::string output_text(const std::string& bytes, bool base64_output) {
  return json::string(base64_output ? base64_encode(bytes) : sanitize_utf8(bytes));
}

}  // namespace

std::optional<ApiError> refuse_unknown_keys(const json::object& obj,
                                            std::initializer_list<std::string_view> allowed,
                                            const std::string& prefix) {
  for (const auto& kv : obj) {
    bool known = false;
    for (auto a : allowed) known = known || kv.key() == a;
    if (!known) return invalid(prefix + std::string(kv.key()), "unknown field");
  }
  return std::nullopt;
}

std::optional<ApiError> check_limit_value(const std::string& field, const json::value& v,
                                          int64_t max, int64_t& out) {
  if (v.is_uint64()) return invalid(field, fmt::format("must be at most {}", max));  // > INT64_MAX
  if (v.is_double())
    return invalid(field, "must be a positive integer, not a fraction or exponent");
  if (!v.is_int64()) return wrong_type(field, "a positive integer", v);
  const int64_t n = v.get_int64();
  if (n <= 0) return invalid(field, "must be a positive integer");
  if (n > max) return invalid(field, fmt::format("must be at most {}", max));
  out = n;
  return std::nullopt;
}

ApiError make_api_error(int http_status, std::string code, std::string field, std::string what) {
  ApiError e;
  e.http_status = http_status;
  e.code = std::move(code);
  e.message = field.empty() ? std::move(what) : field + ": " + what;
  e.field = std::move(field);
  return e;
}

json::object api_error_to_json(const ApiError& e) {
  json::object inner;
  inner["code"] = e.code;
  inner["message"] = sanitize_utf8(e.message);
  // Always present, null when no single field is at fault: one shape for every error.
  inner["field"] = e.field.empty() ? json::value(nullptr) : json::value(sanitize_utf8(e.field));
  json::object outer;
  outer["error"] = std::move(inner);
  return outer;
}

std::optional<std::string> find_duplicate_json_key(std::string_view json_text) {
  return DuplicateKeyFinder::find(json_text);
}

std::string check_file_name(std::string_view name) {
  if (name.empty()) return "must not be empty";
  if (name.find('\0') != std::string_view::npos) return "must not contain NUL";
  if (name.find('\\') != std::string_view::npos) return "must not contain a backslash";
  if (name.front() == '/') return "must be a relative path";
  if (name.size() > kMaxNameBytes) return fmt::format("must be at most {} bytes", kMaxNameBytes);
  size_t start = 0;
  while (true) {
    const size_t slash = name.find('/', start);
    const std::string_view part = name.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (part.empty()) return "must not have an empty path component";
    if (part == "." || part == "..") return "must not have a '.' or '..' component";
    if (part.size() > kMaxComponentBytes)
      return fmt::format("a path component must be at most {} bytes", kMaxComponentBytes);
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return "";
}

std::expected<SubmissionRequest, ApiError> parse_submission_request(std::string_view body,
                                                                    const LimitTable& table,
                                                                    const ApiLimits& api_limits) {
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = 16;  // the deepest valid request nests 3 levels
  json::value doc = json::parse(body, ec, {}, options);
  if (ec)
    return std::unexpected(
        make_api_error(400, "invalid_json", "", "request body is not valid JSON: " + ec.message()));
  if (auto dup = find_duplicate_json_key(body))
    return std::unexpected(invalid(*dup, "appears twice in one object"));
  if (!doc.is_object())
    return std::unexpected(
        invalid("", fmt::format("request body must be a JSON object, not {}", kind_name(doc))));
  RequestParser parser(table, api_limits);
  if (auto e = parser.parse(doc.get_object())) return std::unexpected(std::move(*e));
  return parser.take();
}

json::object stage_to_json(const StageResult& r, bool base64_output) {
  json::object o;
  o["status"] = stage_status_name(r.status);
  o["stdout"] = output_text(r.stdout_data, base64_output);
  o["stderr"] = output_text(r.stderr_data, base64_output);
  o["output"] = output_text(r.output, base64_output);
  o["code"] = r.code ? json::value(*r.code) : json::value(nullptr);
  o["signal"] = r.signal ? json::value(signal_name(*r.signal)) : json::value(nullptr);
  o["time"] = static_cast<double>(r.wall_time_us) / 1e6;
  o["cpu_time_ms"] = r.cpu_time_us / 1000;
  o["wall_time_ms"] = r.wall_time_us / 1000;
  o["memory_bytes"] = r.memory_bytes;
  o["truncated"] = r.truncated;
  return o;
}

json::object submission_to_json(const Submission& s, bool base64_output) {
  json::object o;
  o["id"] = s.id;
  o["status"] = status_name(s.status);
  // The result is only meaningful once the submission is terminal.
  if (s.status == SubmissionStatus::kFinished && s.result)
    o["result"] = result_name(*s.result);
  else
    o["result"] = nullptr;
  o["created_at"] = format_rfc3339_ms(s.created_at_ms);
  o["finished_at"] = s.status == SubmissionStatus::kFinished ? optional_time(s.finished_at_ms)
                                                             : json::value(nullptr);
  for (Stage st : kAllStages) o[stage_name(st)] = stage_to_json(s.stage(st), base64_output);
  if (!s.request.tests.empty()) o["tests"] = tests_to_json(s, base64_output);
  return o;
}

}  // namespace cutor
