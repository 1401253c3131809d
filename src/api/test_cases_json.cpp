#include "api/test_cases_json.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <cmath>
#include <string>
#include <unordered_map>

#include "api/text_encoding.h"

namespace cutor {
namespace json = boost::json;

namespace {

constexpr size_t kMaxTestNameBytes = 255;

ApiError invalid(std::string field, std::string what) {
  return make_api_error(400, "invalid_request", std::move(field), std::move(what));
}

// A text field or its _base64 twin (at most one of them), decoded. Absent: nullopt.
std::optional<ApiError> text_or_base64(const json::object& obj, const std::string& prefix,
                                       std::string_view key, std::optional<std::string>& out) {
  const std::string b64_key = std::string(key) + "_base64";
  const json::value* text = obj.if_contains(key);
  const json::value* b64 = obj.if_contains(b64_key);
  if (text && b64)
    return invalid(prefix + b64_key, fmt::format("send only one of {} and {}", key, b64_key));
  if (text) {
    if (!text->is_string()) return invalid(prefix + std::string(key), "must be a string");
    out = std::string(text->get_string());
  } else if (b64) {
    if (!b64->is_string()) return invalid(prefix + b64_key, "must be a string");
    out = base64_decode(b64->get_string());
    if (!out) return invalid(prefix + b64_key, "is not valid base64 (RFC 4648, padded)");
  }
  return std::nullopt;
}

std::optional<ApiError> parse_test_limits(const json::value& v, const std::string& field,
                                          const SandboxLimits& maxima, SandboxLimits& limits) {
  if (!v.is_object()) return invalid(field, "must be an object of run limits");
  for (const auto& kv : v.get_object()) {
    const std::string f = field + "." + std::string(kv.key());
    int64_t* slot = limit_field(limits, kv.key());
    if (slot == nullptr) return invalid(f, "unknown limit");
    if (auto e = check_limit_value(f, kv.value(), *limit_field(maxima, kv.key()), *slot)) return e;
  }
  return std::nullopt;
}

std::optional<ApiError> parse_one_test(const json::value& v, size_t index,
                                       const SandboxLimits& run_limits, const SandboxLimits& maxima,
                                       TestCase& t) {
  const std::string prefix = fmt::format("tests[{}]", index);
  if (!v.is_object()) return invalid(prefix, "must be a test object");
  const json::object& o = v.get_object();
  if (auto e = refuse_unknown_keys(o,
                                   {"name", "stdin", "stdin_base64", "args", "expected_output",
                                    "expected_output_base64", "limits"},
                                   prefix + "."))
    return e;
  t.name = std::to_string(index + 1);
  if (const json::value* name = o.if_contains("name")) {
    if (!name->is_string()) return invalid(prefix + ".name", "must be a string");
    const std::string_view n = name->get_string();
    if (n.empty()) return invalid(prefix + ".name", "must not be empty");
    if (n.size() > kMaxTestNameBytes)
      return invalid(prefix + ".name", fmt::format("must be at most {} bytes", kMaxTestNameBytes));
    if (n.find('\0') != std::string_view::npos || !is_valid_utf8(n))
      return invalid(prefix + ".name", "must be UTF-8 without NUL");
    t.name = std::string(n);
  }
  std::optional<std::string> stdin_data;
  if (auto e = text_or_base64(o, prefix + ".", "stdin", stdin_data)) return e;
  if (stdin_data) t.stdin_data = std::move(*stdin_data);
  if (auto e = text_or_base64(o, prefix + ".", "expected_output", t.expected_output)) return e;
  if (const json::value* args = o.if_contains("args")) {
    if (!args->is_array()) return invalid(prefix + ".args", "must be an array of strings");
    const json::array& arr = args->get_array();
    for (size_t i = 0; i < arr.size(); ++i) {
      const std::string f = fmt::format("{}.args[{}]", prefix, i);
      if (!arr[i].is_string()) return invalid(f, "must be a string");
      if (arr[i].get_string().find('\0') != std::string_view::npos)
        return invalid(f, "must not contain NUL");
      t.args.emplace_back(arr[i].get_string());
    }
  }
  t.limits = run_limits;
  if (const json::value* limits = o.if_contains("limits"))
    if (auto e = parse_test_limits(*limits, prefix + ".limits", maxima, t.limits)) return e;
  return std::nullopt;
}

std::optional<ApiError> parse_tolerance(const json::object& o, std::string_view key, double& out) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return std::nullopt;
  const std::string field = "checker." + std::string(key);
  if (!v->is_number()) return invalid(field, "must be a number");
  const double d = v->to_number<double>();
  if (!std::isfinite(d) || d < 0) return invalid(field, "must be a finite number >= 0");
  out = d;
  return std::nullopt;
}

// A submission file that runs as a script of its own (a checker or an interactor).
std::optional<ApiError> check_script_file(const json::value* file, const std::string& field,
                                          const SubmissionRequest& request) {
  if (file == nullptr) return invalid(field, "is required");
  if (!file->is_string()) return invalid(field, "must be a string");
  const std::string_view name = file->get_string();
  if (request.find_file(name) == nullptr)
    return invalid(field, fmt::format("names no file of the submission ('{}')",
                                      sanitize_utf8(name.substr(0, 64))));
  if (name == "run.sh" || name == "compile.sh")
    return invalid(field, "must not be run.sh or compile.sh");
  return std::nullopt;
}

std::optional<ApiError> parse_interactor(const json::value& v, SubmissionRequest& request) {
  if (!v.is_object()) return invalid("interactor", "must be an object");
  const json::object& o = v.get_object();
  if (auto e = refuse_unknown_keys(o, {"file"}, "interactor.")) return e;
  const json::value* file = o.if_contains("file");
  if (auto e = check_script_file(file, "interactor.file", request)) return e;
  request.interactor_file = std::string(file->get_string());
  return std::nullopt;
}

std::optional<ApiError> parse_checker(const json::value& v, const SubmissionRequest& request,
                                      CheckerSpec& checker) {
  if (!v.is_object()) return invalid("checker", "must be an object");
  const json::object& o = v.get_object();
  if (auto e = refuse_unknown_keys(o, {"type", "abs", "rel", "file"}, "checker.")) return e;
  const json::value* type = o.if_contains("type");
  if (type == nullptr) return invalid("checker.type", "is required");
  if (!type->is_string()) return invalid("checker.type", "must be a string");
  const auto parsed = parse_checker_type(type->get_string());
  if (!parsed) return invalid("checker.type", "must be one of exact, lines, tokens, float, script");
  checker.type = *parsed;
  if (checker.type != CheckerType::kFloat) {
    for (auto key : {"abs", "rel"})
      if (o.contains(key))
        return invalid(std::string("checker.") + key, "applies only to the float checker");
  }
  if (auto e = parse_tolerance(o, "abs", checker.abs_tolerance)) return e;
  if (auto e = parse_tolerance(o, "rel", checker.rel_tolerance)) return e;
  const json::value* file = o.if_contains("file");
  if (checker.type != CheckerType::kScript) {
    if (file) return invalid("checker.file", "applies only to the script checker");
    return std::nullopt;
  }
  if (file == nullptr) return invalid("checker.file", "is required for the script checker");
  if (auto e = check_script_file(file, "checker.file", request)) return e;
  checker.file = std::string(file->get_string());
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> parse_test_cases(const json::object& top, const LimitTable& table,
                                         const ApiLimits& api_limits, SubmissionRequest& request) {
  const json::value* tests = top.if_contains("tests");
  if (tests == nullptr) {
    for (auto key : {"checker", "stop_on_first_failure", "interactor"})
      if (top.contains(key)) return invalid(key, "applies only to a submission with tests");
    return std::nullopt;
  }
  for (auto key : {"stdin", "inputs", "args"})
    if (top.contains(key))
      return invalid(key, "cannot be given with tests: each test has its own stdin and args");
  if (!tests->is_array()) return invalid("tests", "must be an array of test objects");
  const json::array& arr = tests->get_array();
  if (arr.empty()) return invalid("tests", "must hold at least one test");
  if (static_cast<int64_t>(arr.size()) > api_limits.max_tests)
    return invalid("tests", fmt::format("holds {} tests; at most {} are allowed", arr.size(),
                                        api_limits.max_tests));
  const SandboxLimits& run_limits = request.limits_for(Stage::kRun);
  const SandboxLimits& maxima = table.max_for(Stage::kRun);
  std::unordered_map<std::string, size_t> index_of;
  request.tests.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    TestCase t;
    if (auto e = parse_one_test(arr[i], i, run_limits, maxima, t)) return e;
    if (auto [it, inserted] = index_of.emplace(t.name, i); !inserted)
      return invalid(fmt::format("tests[{}].name", i),
                     fmt::format("'{}' repeats the name of tests[{}]", t.name, it->second));
    request.tests.push_back(std::move(t));
  }
  if (const json::value* checker = top.if_contains("checker"))
    if (auto e = parse_checker(*checker, request, request.checker)) return e;
  if (const json::value* interactor = top.if_contains("interactor")) {
    if (top.contains("checker"))
      return invalid("checker", "cannot be given with an interactor: its exit code decides");
    if (auto e = parse_interactor(*interactor, request)) return e;
  }
  if (const json::value* stop = top.if_contains("stop_on_first_failure")) {
    if (!stop->is_bool()) return invalid("stop_on_first_failure", "must be a boolean");
    request.stop_on_first_failure = stop->get_bool();
  }
  return std::nullopt;
}

json::array tests_to_json(const Submission& s, bool base64_output) {
  json::array out;
  out.reserve(s.tests.size());
  for (const TestResult& t : s.tests) {
    json::object o;
    o["name"] = t.name;
    o["verdict"] = verdict_name(t.verdict);
    for (auto& kv : stage_to_json(t.run, base64_output)) o[kv.key()] = kv.value();
    o["checker_message"] = sanitize_utf8(t.checker_message);
    out.push_back(std::move(o));
  }
  return out;
}

}  // namespace cutor
