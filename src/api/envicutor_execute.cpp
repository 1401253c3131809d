// POST /execute of envicutor's API: the request's limits (seconds, kilobytes) to cutor's,
// and a finished submission back to envicutor's stage results (isolate's meta fields).
#include <fmt/format.h>

#include <boost/json/parse.hpp>
#include <cmath>
#include <set>

#include "api/envicutor_api.h"
#include "api/text_encoding.h"

namespace cutor {
namespace json = boost::json;

namespace {

using Refusal = std::pair<int, std::string>;

// "10", "2.5", "0.125": seconds as envicutor prints its f32 limits.
std::string seconds_text(int64_t ms) {
  std::string s = fmt::format("{}.{:03}", ms / 1000, ms % 1000);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

std::optional<double> number_of(const json::value& v) {
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  if (v.is_double()) return v.get_double();
  return std::nullopt;
}

// Reads one `<stage>_limits` object onto `out` (already the server's defaults); `cpu_ms`
// gets envicutor's cpu_time, `out.cpu_time_ms` cpu_time + extra_time. Errors are the
// text after "Invalid <stage> limits: ".
std::optional<std::string> read_limits(const json::object& o, const SandboxLimits& max,
                                       SandboxLimits& out, int64_t& cpu_ms) {
  static const std::set<std::string_view> kKnown = {"wall_time",
                                                    "cpu_time",
                                                    "memory",
                                                    "extra_time",
                                                    "max_open_files",
                                                    "max_file_size",
                                                    "max_number_of_processes"};
  for (const auto& kv : o)
    if (!kKnown.contains(kv.key()))
      return fmt::format("{} is not a limit envicutor's API has", std::string(kv.key()));
  auto given = [&](std::string_view key) -> const json::value* {
    const json::value* v = o.if_contains(key);
    return v == nullptr || v->is_null() ? nullptr : v;
  };
  // Seconds (fractions allowed, as envicutor's f32) into milliseconds.
  auto seconds = [&](std::string_view key, int64_t max_ms, bool zero_ok,
                     int64_t& field) -> std::optional<std::string> {
    const json::value* v = given(key);
    if (v == nullptr) return std::nullopt;
    const auto n = number_of(*v);
    if (!n || !std::isfinite(*n)) return fmt::format("{} must be a number of seconds", key);
    if (*n < 0 || (!zero_ok && *n * 1000 < 1))
      return fmt::format("{} must be {} seconds", key, zero_ok ? "0 or more" : "at least 0.001");
    if (*n * 1000 > static_cast<double>(max_ms))
      return fmt::format("{} can't exceed {} seconds", key, seconds_text(max_ms));
    field = std::llround(*n * 1000);
    return std::nullopt;
  };
  // A whole number from 1, times `unit`, into `field`.
  auto whole = [&](std::string_view key, int64_t unit, int64_t max_value, std::string_view suffix,
                   int64_t& field) -> std::optional<std::string> {
    const json::value* v = given(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_int64() && !v->is_uint64()) return fmt::format("{} must be a whole number", key);
    if (v->is_int64() && v->get_int64() < 1) return fmt::format("{} must be at least 1", key);
    const uint64_t n = v->is_int64() ? static_cast<uint64_t>(v->get_int64()) : v->get_uint64();
    const int64_t max_units = max_value / unit;
    if (n > static_cast<uint64_t>(max_units))
      return fmt::format("{} can't exceed {}{}", key, max_units, suffix);
    field = static_cast<int64_t>(n) * unit;
    return std::nullopt;
  };
  // envicutor's order of checks: wall, cpu, memory, extra, open files, file size, processes.
  if (auto e = seconds("wall_time", max.wall_time_ms, false, out.wall_time_ms)) return e;
  cpu_ms = out.cpu_time_ms;
  if (auto e = seconds("cpu_time", max.cpu_time_ms, false, cpu_ms)) return e;
  if (auto e = whole("memory", 1024, max.memory_bytes, " kilobytes", out.memory_bytes)) return e;
  int64_t extra_ms = 0;
  if (auto e = seconds("extra_time", max.cpu_time_ms - cpu_ms, true, extra_ms)) return e;
  out.cpu_time_ms = cpu_ms + extra_ms;
  if (given("max_open_files"))
    return "max_open_files is not supported: cutor's box has no open-file limit of its own";
  if (auto e = whole("max_file_size", 1024, max.file_size_bytes, " kilobytes", out.file_size_bytes))
    return e;
  if (auto e = whole("max_number_of_processes", 1, max.processes, "", out.processes)) return e;
  return std::nullopt;
}

// isolate's status letters, as envicutor passes them on: null when the program exited 0.
json::value exit_status(const StageResult& r, int64_t cpu_limit_ms) {
  if (r.status == StageStatus::kOk && r.cpu_time_us > cpu_limit_ms * 1000) return "TO";
  switch (r.status) {
    case StageStatus::kNonzeroExit:
      return "RE";
    case StageStatus::kSignaled:
    case StageStatus::kMemoryLimitExceeded:
    case StageStatus::kOutputLimitExceeded:
      return "SG";
    case StageStatus::kTimeLimitExceeded:
    case StageStatus::kWallTimeLimitExceeded:
      return "TO";
    case StageStatus::kInternalError:
      return "XX";
    default:
      return nullptr;
  }
}

// isolate's messages ("Caught fatal signal 9" for the memory limit, as isolate says it).
json::value exit_message(const StageResult& r, int64_t cpu_limit_ms) {
  if (r.status == StageStatus::kOk && r.cpu_time_us > cpu_limit_ms * 1000)
    return "Time limit exceeded";
  switch (r.status) {
    case StageStatus::kNonzeroExit:
      return json::value(fmt::format("Exited with error status {}", r.code.value_or(-1)));
    case StageStatus::kSignaled:
    case StageStatus::kMemoryLimitExceeded:
      return json::value(fmt::format("Caught fatal signal {}", r.signal.value_or(9)));
    case StageStatus::kOutputLimitExceeded:
      return "Output limit exceeded";
    case StageStatus::kTimeLimitExceeded:
      return "Time limit exceeded";
    case StageStatus::kWallTimeLimitExceeded:
      return "Time limit exceeded (wall clock)";
    case StageStatus::kInternalError:
      return "Internal error";
    default:
      return nullptr;
  }
}

json::object stage_json(const StageResult& r, int64_t cpu_limit_ms) {
  json::object o;
  o["memory"] = r.memory_bytes / 1024;
  o["exit_code"] = r.code ? json::value(*r.code) : json::value(nullptr);
  const bool killed = r.status == StageStatus::kSignaled ||
                      r.status == StageStatus::kMemoryLimitExceeded ||
                      r.status == StageStatus::kOutputLimitExceeded;
  o["exit_signal"] = r.signal            ? json::value(*r.signal)
                     : killed && !r.code ? json::value(9)
                                         : json::value(nullptr);
  o["exit_message"] = exit_message(r, cpu_limit_ms);
  o["exit_status"] = exit_status(r, cpu_limit_ms);
  o["stdout"] = sanitize_utf8(r.stdout_data);
  o["stderr"] = sanitize_utf8(r.stderr_data);
  o["cpu_time"] = static_cast<double>(r.cpu_time_us / 1000) / 1000.0;
  o["wall_time"] = static_cast<double>(r.wall_time_us / 1000) / 1000.0;
  return o;
}

bool failed(const StageResult& r) {
  return r.status != StageStatus::kOk && r.status != StageStatus::kSkipped;
}

}  // namespace

std::expected<EnvicutorJob, Refusal> parse_envicutor_execute(
    std::string_view body, bool is_project,
    const std::function<std::optional<Runtime>(int64_t)>& find_runtime_by_id,
    const LimitTable& limits) {
  auto shape = [](std::string why) {
    return std::unexpected(
        Refusal{422, "Failed to deserialize the JSON body into the target type: " + why});
  };
  boost::system::error_code ec;
  json::value doc = json::parse(body, ec);
  if (ec)
    return std::unexpected(
        Refusal{400, "Failed to parse the request body as JSON: " + ec.message()});
  if (!doc.is_object()) return shape("the body must be a JSON object");
  const json::object& o = doc.get_object();
  static const std::set<std::string_view> kKnown = {"runtime_id", "source_code", "input",
                                                    "compile_limits", "run_limits"};
  for (const auto& kv : o)
    if (!kKnown.contains(kv.key()))
      return shape(
          fmt::format("{} is not a field of envicutor's execute request (cutor refuses "
                      "what it would ignore)",
                      std::string(kv.key())));
  const json::value* id = o.if_contains("runtime_id");
  if (id == nullptr) return shape("missing field `runtime_id`");
  if (!id->is_int64() || id->get_int64() < 0)
    return shape("runtime_id must be a whole number from 0");
  const json::value* code = o.if_contains("source_code");
  if (code == nullptr) return shape("missing field `source_code`");
  if (!code->is_string()) return shape("source_code must be a string");
  std::string stdin_data;
  if (const json::value* in = o.if_contains("input"); in != nullptr && !in->is_null()) {
    if (!in->is_string()) return shape("input must be a string or null");
    stdin_data = std::string(in->get_string());
  }
  for (const char* key : {"compile_limits", "run_limits"})
    if (const json::value* v = o.if_contains(key); v != nullptr && !v->is_null() && !v->is_object())
      return shape(fmt::format("{} must be an object or null", key));

  EnvicutorJob job;
  SubmissionRequest& req = job.request;
  for (Stage s : kLimitedStages) req.limits[static_cast<int>(s)] = limits.default_for(s);
  for (auto [key, stage, cpu] : {std::tuple{"compile_limits", Stage::kCompile, &job.compile_cpu_ms},
                                 {"run_limits", Stage::kRun, &job.run_cpu_ms}}) {
    SandboxLimits& l = req.limits[static_cast<int>(stage)];
    *cpu = l.cpu_time_ms;
    const json::value* v = o.if_contains(key);
    if (v == nullptr || v->is_null()) continue;
    if (auto e = read_limits(v->get_object(), limits.max_for(stage), l, *cpu))
      return std::unexpected(Refusal{
          400, fmt::format("Invalid {} limits: {}", stage == Stage::kRun ? "run" : "compile", *e)});
  }
  std::optional<Runtime> runtime = find_runtime_by_id(id->get_int64());
  if (!runtime)
    return std::unexpected(
        Refusal{400, fmt::format("Runtime with id: {} does not exist", id->get_int64())});
  job.runtime = std::move(*runtime);
  job.is_project = is_project;

  std::string source(code->get_string());
  if (is_project) {
    auto zip = base64_decode(source);
    if (!zip)
      return std::unexpected(
          Refusal{400, "source_code is not valid base64 (?is_project=true wants a zip archive)"});
    req.files.push_back({std::string(kProjectArchive), std::move(*zip)});
  } else {
    if (!source.empty() && source.back() != '\n') source += '\n';  // as envicutor writes it
    req.files.push_back({job.runtime.source_file, std::move(source)});
  }
  if (job.runtime.nix) req.files.push_back({"cutor.nix", *job.runtime.nix});
  if (job.runtime.compile_sh) req.files.push_back({"compile.sh", *job.runtime.compile_sh});
  req.files.push_back({"run.sh", job.runtime.run_sh});
  if (!stdin_data.empty() && stdin_data.back() != '\n') stdin_data += '\n';
  req.stdin_data = std::move(stdin_data);
  return job;
}

json::object envicutor_result(const EnvicutorJob& job, const Submission& s) {
  json::object o{{"extract", nullptr}, {"compile", nullptr}, {"run", nullptr}};
  const int64_t compile_limit = job.compile_cpu_ms;
  // An environment failure (cutor.nix), which envicutor meets at install time instead, is
  // shown as the first stage the runtime has.
  const StageResult& env = s.stage(Stage::kEnvironment);
  const char* first = job.is_project ? "extract" : job.runtime.compile_sh ? "compile" : "run";
  if (failed(env)) {
    o[first] = stage_json(env, compile_limit);
    return o;
  }
  const StageResult& build = s.stage(Stage::kBuild);
  if (job.is_project) {
    o["extract"] = stage_json(build, compile_limit);
    if (failed(build)) return o;
  } else if (failed(build)) {
    o[job.runtime.compile_sh ? "compile" : "run"] = stage_json(build, compile_limit);
    return o;
  }
  if (job.runtime.compile_sh) {
    const StageResult& compile = s.stage(Stage::kCompile);
    o["compile"] = stage_json(compile, compile_limit);
    if (compile.status != StageStatus::kOk) return o;  // envicutor: no run after a failed compile
  }
  const StageResult& run = s.stage(Stage::kRun);
  if (run.status != StageStatus::kPending && run.status != StageStatus::kSkipped)
    o["run"] = stage_json(run, job.run_cpu_ms);
  return o;
}

}  // namespace cutor
