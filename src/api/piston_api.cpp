#include "api/piston_api.h"

#include <fmt/format.h>

#include <boost/json/parse.hpp>
#include <set>

#include "api/submission_json.h"
#include "api/text_encoding.h"

namespace cutor {
namespace json = boost::json;

namespace {

std::unexpected<PistonError> refuse(std::string message) {
  return std::unexpected(PistonError{400, std::move(message)});
}

// Piston's stage status codes: RE runtime error, SG signal, TO timeout, OL stdout too long,
// EL stderr too long, XX internal error; null when the stage succeeded.
json::value piston_status(const StageResult& r, int64_t output_limit) {
  switch (r.status) {
    case StageStatus::kNonzeroExit:
      return "RE";
    case StageStatus::kSignaled:
    case StageStatus::kMemoryLimitExceeded:
      return "SG";
    case StageStatus::kTimeLimitExceeded:
    case StageStatus::kWallTimeLimitExceeded:
      return "TO";
    case StageStatus::kOutputLimitExceeded:
      return static_cast<int64_t>(r.stdout_data.size()) >= output_limit ? "OL" : "EL";
    case StageStatus::kInternalError:
      return "XX";
    default:
      return nullptr;
  }
}

json::value piston_message(const StageResult& r) {
  switch (r.status) {
    case StageStatus::kNonzeroExit:
      return json::value(fmt::format("Exited with error status {}", r.code.value_or(-1)));
    case StageStatus::kSignaled:
      return json::value(fmt::format("Caught fatal signal {}", r.signal.value_or(0)));
    case StageStatus::kMemoryLimitExceeded:
      return "Memory limit exceeded";
    case StageStatus::kTimeLimitExceeded:
      return "Time limit exceeded";
    case StageStatus::kWallTimeLimitExceeded:
      return "Time limit exceeded (wall clock)";
    case StageStatus::kOutputLimitExceeded:
      return "Output limit exceeded";
    case StageStatus::kInternalError:
      return "Internal error";
    default:
      return nullptr;
  }
}

json::object piston_stage(const StageResult& r, int64_t output_limit) {
  json::object o;
  o["stdout"] = sanitize_utf8(r.stdout_data);
  o["stderr"] = sanitize_utf8(r.stderr_data);
  o["output"] = sanitize_utf8(r.output);
  o["code"] = r.code ? json::value(*r.code) : json::value(nullptr);
  o["signal"] = r.signal ? json::value(signal_name(*r.signal)) : json::value(nullptr);
  o["message"] = piston_message(r);
  o["status"] = piston_status(r, output_limit);
  o["cpu_time"] = r.cpu_time_us / 1000;
  o["wall_time"] = r.wall_time_us / 1000;
  o["memory"] = r.memory_bytes;
  return o;
}

// Reads an optional integer limit into `out`; -1 means the server's maximum.
std::optional<PistonError> read_limit(const json::object& o, std::string_view key, int64_t& out,
                                      int64_t max) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::nullopt;
  if (!v->is_int64() && !v->is_uint64())
    return PistonError{400, fmt::format("{} must be a number", key)};
  const int64_t n = v->is_int64() ? v->get_int64() : -2;
  if (n == -1) {
    out = max;
    return std::nullopt;
  }
  if (n <= 0) return PistonError{400, fmt::format("{} must be a positive number or -1", key)};
  if (n > max)
    return PistonError{400, fmt::format("{} cannot exceed the configured limit of {}", key, max)};
  out = n;
  return std::nullopt;
}

}  // namespace

json::object piston_error_json(const PistonError& e) {
  return json::object{{"message", e.message}};
}

json::array piston_runtimes(const std::vector<Runtime>& runtimes) {
  json::array out;
  for (const Runtime& r : runtimes) {
    json::array aliases;
    for (const auto& a : r.aliases) aliases.emplace_back(a);
    out.push_back(json::object{{"language", r.name}, {"version", r.version}, {"aliases", aliases}});
  }
  return out;
}

std::expected<PistonJob, PistonError> parse_piston_execute(std::string_view body,
                                                           const std::vector<Runtime>& runtimes,
                                                           const LimitTable& limits,
                                                           int64_t max_files) {
  boost::system::error_code ec;
  json::value doc = json::parse(body, ec);
  if (ec) return refuse("Request body is not valid JSON: " + ec.message());
  if (!doc.is_object()) return refuse("Request body must be a JSON object");
  const json::object& o = doc.get_object();
  static const std::set<std::string_view> kKnown = {"language",
                                                    "version",
                                                    "files",
                                                    "stdin",
                                                    "args",
                                                    "compile_timeout",
                                                    "run_timeout",
                                                    "compile_cpu_time",
                                                    "run_cpu_time",
                                                    "compile_memory_limit",
                                                    "run_memory_limit"};
  for (const auto& kv : o)
    if (!kKnown.contains(kv.key()))
      return refuse(fmt::format("{} is not a field cutor's Piston API supports", kv.key()));
  const json::value* language = o.if_contains("language");
  if (language == nullptr || !language->is_string())
    return refuse("language is required as a string");
  const json::value* version = o.if_contains("version");
  if (version == nullptr || !version->is_string()) return refuse("version is required as a string");
  auto found = find_runtime(runtimes, language->get_string(), version->get_string());
  if (!found || *found == nullptr)
    return refuse(fmt::format("{}-{} runtime is unknown", std::string(language->get_string()),
                              std::string(version->get_string())));
  PistonJob job{**found, {}};
  SubmissionRequest& req = job.request;

  const json::value* files = o.if_contains("files");
  if (files == nullptr || !files->is_array()) return refuse("files is required as an array");
  const json::array& list = files->get_array();
  if (list.empty()) return refuse("files must have at least one item");
  if (static_cast<int64_t>(list.size()) > max_files)
    return refuse(fmt::format("files must have at most {} items", max_files));
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    if (!list[i].is_object()) return refuse(fmt::format("files[{}] must be an object", i));
    const json::object& f = list[i].get_object();
    for (const auto& kv : f)
      if (kv.key() != "name" && kv.key() != "content" && kv.key() != "encoding")
        return refuse(fmt::format("files[{}].{} is not supported", i, std::string(kv.key())));
    const json::value* content = f.if_contains("content");
    if (content == nullptr || !content->is_string())
      return refuse(fmt::format("files[{}].content is required as a string", i));
    std::string encoding = "utf8";
    if (const json::value* e = f.if_contains("encoding")) {
      if (!e->is_string()) return refuse(fmt::format("files[{}].encoding must be a string", i));
      encoding = std::string(e->get_string());
    }
    std::optional<std::string> bytes;
    if (encoding == "utf8")
      bytes = std::string(content->get_string());
    else if (encoding == "base64")
      bytes = base64_decode(content->get_string());
    else if (encoding == "hex")
      bytes = hex_decode(content->get_string());
    else
      return refuse(fmt::format("files[{}].encoding must be utf8, base64 or hex", i));
    if (!bytes) return refuse(fmt::format("files[{}].content is not valid {}", i, encoding));
    std::string name = fmt::format("file{}.code", i);
    if (const json::value* n = f.if_contains("name"); n != nullptr && !n->is_null()) {
      if (!n->is_string()) return refuse(fmt::format("files[{}].name must be a string", i));
      name = std::string(n->get_string());
    }
    if (i == 0) name = job.runtime.source_file;  // the runtime's scripts name the main file
    if (std::string problem = check_file_name(name); !problem.empty())
      return refuse(fmt::format("files[{}].name {}", i, problem));
    if (name == "cutor.nix" || name == "compile.sh" || name == "run.sh")
      return refuse(fmt::format("files[{}].name {} is reserved by the runtime", i, name));
    if (!names.insert(name).second)
      return refuse(fmt::format("files[{}].name {} appears twice", i, name));
    req.files.push_back({std::move(name), std::move(*bytes)});
  }
  if (job.runtime.nix) req.files.push_back({"cutor.nix", *job.runtime.nix});
  if (job.runtime.compile_sh) req.files.push_back({"compile.sh", *job.runtime.compile_sh});
  req.files.push_back({"run.sh", job.runtime.run_sh});

  if (const json::value* s = o.if_contains("stdin"); s != nullptr && !s->is_null()) {
    if (!s->is_string()) return refuse("stdin must be a string");
    req.stdin_data = std::string(s->get_string());
  }
  if (const json::value* a = o.if_contains("args"); a != nullptr && !a->is_null()) {
    if (!a->is_array()) return refuse("args must be an array of strings");
    for (const auto& item : a->get_array()) {
      if (!item.is_string()) return refuse("args must be an array of strings");
      const std::string arg(item.get_string());
      if (arg.find('\0') != std::string::npos) return refuse("args must not contain NUL");
      req.args.push_back(arg);
    }
  }
  for (Stage s : kLimitedStages) req.limits[static_cast<int>(s)] = limits.default_for(s);
  auto& compile = req.limits[static_cast<int>(Stage::kCompile)];
  auto& run = req.limits[static_cast<int>(Stage::kRun)];
  const auto& cmax = limits.max_for(Stage::kCompile);
  const auto& rmax = limits.max_for(Stage::kRun);
  for (auto [key, field, max] :
       {std::tuple{"compile_timeout", &compile.wall_time_ms, cmax.wall_time_ms},
        {"run_timeout", &run.wall_time_ms, rmax.wall_time_ms},
        {"compile_cpu_time", &compile.cpu_time_ms, cmax.cpu_time_ms},
        {"run_cpu_time", &run.cpu_time_ms, rmax.cpu_time_ms},
        {"compile_memory_limit", &compile.memory_bytes, cmax.memory_bytes},
        {"run_memory_limit", &run.memory_bytes, rmax.memory_bytes}})
    if (auto e = read_limit(o, key, *field, max)) return std::unexpected(*e);
  return job;
}

json::object piston_result(const PistonJob& job, const Submission& s) {
  json::object o;
  o["language"] = job.runtime.name;
  o["version"] = job.runtime.version;
  const StageResult& compile = s.stage(Stage::kCompile);
  const StageResult& run = s.stage(Stage::kRun);
  const int64_t compile_out = job.request.limits_for(Stage::kCompile).output_bytes;
  const int64_t run_out = job.request.limits_for(Stage::kRun).output_bytes;
  // An environment or build failure has no Piston stage of its own: shown as run
  // (and as compile when the runtime compiles).
  for (Stage early : {Stage::kEnvironment, Stage::kBuild}) {
    const StageResult& r = s.stage(early);
    if (r.status != StageStatus::kOk && r.status != StageStatus::kSkipped) {
      o["run"] = piston_stage(r, run_out);
      if (job.runtime.compile_sh) o["compile"] = o["run"];
      return o;
    }
  }
  if (job.runtime.compile_sh) {
    o["compile"] = piston_stage(compile, compile_out);
    // Piston's quirk: a failed compile is reported as the run stage too.
    if (compile.status != StageStatus::kOk) {
      o["run"] = o["compile"];
      return o;
    }
  }
  o["run"] = piston_stage(run, run_out);
  return o;
}

}  // namespace cutor
