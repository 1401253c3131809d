#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "api/judge0_submission.h"
#include "api/text_encoding.h"

namespace cutor::judge0 {
namespace json = boost::json;

namespace {

// How one submission ended, in Judge0's attributes.
struct Outcome {
  int status = 1;
  std::optional<std::string> stdout_data, stderr_data, compile_output, message;
  std::optional<int64_t> time_us, wall_time_us, memory_kb;
  std::optional<int> exit_code, exit_signal;
};

std::optional<std::string> unless_empty(const std::string& s) {
  return s.empty() ? std::nullopt : std::optional<std::string>(s);
}

bool failed(const StageResult& r) {
  return r.status != StageStatus::kOk && r.status != StageStatus::kSkipped &&
         r.status != StageStatus::kPending && r.status != StageStatus::kRunning;
}

// Judge0's runtime error by signal: 7 SIGSEGV, 8 SIGXFSZ, 9 SIGFPE, 10 SIGABRT, 12 other.
int signal_status(int signo) {
  switch (signo) {
    case 11:
      return 7;
    case 25:
      return 8;
    case 8:
      return 9;
    case 6:
      return 10;
    default:
      return 12;
  }
}

Outcome outcome_of(const Submission& s, const Meta& meta) {
  Outcome o;
  if (s.status != SubmissionStatus::kFinished) {
    o.status = s.status == SubmissionStatus::kQueued ? 1 : 2;
    return o;
  }
  const StageResult& compile = s.stage(Stage::kCompile);
  const StageResult& run = s.stage(Stage::kRun);
  o.compile_output = unless_empty(compile.output);
  // additional_files that do not unpack are the client's error: Compilation Error with
  // the unpacking's output (Judge0 has no status of its own for it).
  const StageResult& build = s.stage(Stage::kBuild);
  if (failed(build) && build.status != StageStatus::kInternalError &&
      s.request.find_file(kProjectArchive) != nullptr) {
    o.status = 6;
    o.compile_output = unless_empty(build.output);
    o.message = "additional_files could not be unpacked";
    return o;
  }
  for (Stage early : {Stage::kEnvironment, Stage::kBuild}) {
    if (!failed(s.stage(early))) continue;
    o.status = 13;
    o.message = fmt::format("cutor's {} stage ended {}; GET /api/v1/submissions/{} shows why",
                            stage_name(early), stage_status_name(s.stage(early).status), s.id);
    return o;
  }
  if (s.result == Result::kCancelled) {
    o.status = 13;
    o.message = "cancelled through DELETE /api/v1/submissions/" + s.id;
    return o;
  }
  if (failed(compile)) {
    o.status = compile.status == StageStatus::kInternalError ? 13 : 6;
    if (compile.status == StageStatus::kTimeLimitExceeded ||
        compile.status == StageStatus::kWallTimeLimitExceeded)
      o.message = "Compilation time limit exceeded";
    else if (o.status == 13)
      o.message = "Internal error";
    return o;
  }
  if (run.status == StageStatus::kSkipped || run.status == StageStatus::kPending ||
      run.status == StageStatus::kRunning) {
    o.status = 13;
    o.message = "Internal error: the run stage did not run";
    return o;
  }
  o.stdout_data = unless_empty(meta.redirect_stderr_to_stdout ? run.output : run.stdout_data);
  if (!meta.redirect_stderr_to_stdout) o.stderr_data = unless_empty(run.stderr_data);
  o.time_us = run.cpu_time_us;
  o.wall_time_us = run.wall_time_us;
  o.memory_kb = run.memory_bytes / 1024;
  o.exit_code = run.code.value_or(0);  // Judge0 answers 0 for a signalled program
  o.exit_signal = run.signal;
  switch (run.status) {
    case StageStatus::kTimeLimitExceeded:
      o.status = 5;
      o.message = "Time limit exceeded";
      break;
    case StageStatus::kWallTimeLimitExceeded:
      o.status = 5;
      o.message = "Time limit exceeded (wall clock)";
      break;
    case StageStatus::kSignaled:
      o.status = signal_status(run.signal.value_or(0));
      o.message = fmt::format("Caught fatal signal {}", run.signal.value_or(0));
      break;
    case StageStatus::kNonzeroExit:
      o.status = 11;
      o.message = fmt::format("Exited with error status {}", run.code.value_or(-1));
      break;
    case StageStatus::kMemoryLimitExceeded:
      o.status = 12;
      o.message = "Memory limit exceeded";
      break;
    case StageStatus::kOutputLimitExceeded:  // Judge0 limits output as a file size
      o.status = 8;
      o.message = "Output limit exceeded";
      break;
    case StageStatus::kOk:
      // Within the cpu extra time the program may finish, but it still exceeded the limit.
      if (run.cpu_time_us > meta.cpu_time_limit_ms * 1000) {
        o.status = 5;
        o.message = "Time limit exceeded";
      } else {
        o.status =
            !meta.expected_output || outputs_match(*meta.expected_output, o.stdout_data) ? 3 : 4;
      }
      break;
    default:
      o.status = 13;
      o.message = "Internal error";
  }
  return o;
}

}  // namespace

namespace {

// Ruby's String#rstrip: trailing ASCII whitespace and NUL.
std::string_view rstrip(std::string_view s) {
  while (!s.empty() &&
         (s.back() == '\0' || s.back() == ' ' || (s.back() >= '\t' && s.back() <= '\r')))
    s.remove_suffix(1);
  return s;
}

// Judge0's strip: text.split("\n").collect(&:rstrip).join("\n").rstrip (split drops the
// trailing empty fields, which the final rstrip would remove anyway).
std::string judge0_strip(std::string_view text) {
  std::string out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t nl = text.find('\n', start);
    const std::string_view line =
        text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    if (start > 0) out += '\n';
    out += rstrip(line);
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return std::string(rstrip(out));
}

}  // namespace

bool outputs_match(std::string_view expected, const std::optional<std::string>& stdout_data) {
  if (!stdout_data) return false;  // Judge0 compares strip("") with nil
  return judge0_strip(expected) == judge0_strip(*stdout_data);
}

std::string encode64(std::string_view bytes) {
  const std::string flat = base64_encode(bytes);
  std::string out;
  for (size_t i = 0; i < flat.size(); i += 60) {
    out += flat.substr(i, 60);
    out += '\n';
  }
  return out;
}

std::string seconds_text(int64_t micros) {
  const int64_t ms = (micros + 500) / 1000;
  std::string frac = fmt::format("{:03d}", ms % 1000);
  while (frac.size() > 1 && frac.back() == '0') frac.pop_back();
  return fmt::format("{}.{}", ms / 1000, frac);
}

const std::vector<std::string>& all_fields() {
  static const std::vector<std::string> kAll = {"source_code",
                                                "language_id",
                                                "stdin",
                                                "expected_output",
                                                "stdout",
                                                "status_id",
                                                "created_at",
                                                "finished_at",
                                                "time",
                                                "memory",
                                                "stderr",
                                                "token",
                                                "number_of_runs",
                                                "cpu_time_limit",
                                                "cpu_extra_time",
                                                "wall_time_limit",
                                                "memory_limit",
                                                "stack_limit",
                                                "max_processes_and_or_threads",
                                                "enable_per_process_and_thread_time_limit",
                                                "enable_per_process_and_thread_memory_limit",
                                                "max_file_size",
                                                "compile_output",
                                                "exit_code",
                                                "exit_signal",
                                                "message",
                                                "wall_time",
                                                "compiler_options",
                                                "command_line_arguments",
                                                "redirect_stderr_to_stdout",
                                                "callback_url",
                                                "additional_files",
                                                "enable_network",
                                                "status",
                                                "language"};
  return kAll;
}

const std::vector<std::string>& default_fields() {
  static const std::vector<std::string> kDefault = {
      "stdout", "time", "memory", "stderr", "token", "compile_output", "message", "status"};
  return kDefault;
}

std::expected<std::vector<std::string>, std::string> parse_fields(const std::string* fields) {
  if (fields == nullptr || fields->empty()) return default_fields();
  if (*fields == "*") return all_fields();
  std::set<std::string> wanted, invalid;
  size_t start = 0;
  while (start <= fields->size()) {
    const size_t comma = fields->find(',', start);
    std::string name = fields->substr(start, comma == std::string::npos ? comma : comma - start);
    if (!name.empty()) {
      if (std::ranges::find(all_fields(), name) == all_fields().end())
        invalid.insert(name);
      else
        wanted.insert(name);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (!invalid.empty()) {
    std::string list;
    for (const auto& n : invalid) list += (list.empty() ? "" : ", ") + n;
    return std::unexpected("invalid fields: [" + list + "]");
  }
  std::vector<std::string> out;
  for (const auto& n : all_fields())  // Judge0 answers in its own order
    if (wanted.contains(n)) out.push_back(n);
  return out;
}

std::optional<std::expected<json::object, std::string>> render(
    const Submission& s, const std::vector<std::string>& fields, bool base64) {
  const auto meta = meta_from_text(s.request.adapter_data);
  if (!meta) return std::nullopt;
  const Outcome out = outcome_of(s, *meta);
  const SandboxLimits& run = s.request.limits_for(Stage::kRun);
  std::optional<std::string> source;
  if (const SubmissionFile* f = s.request.find_file(meta->source_file)) source = f->content;
  const auto opt_int = [](const std::optional<int64_t>& v) {
    return v ? json::value(*v) : json::value(nullptr);
  };
  bool not_utf8 = false;
  const auto text = [&](const std::optional<std::string>& v) -> json::value {
    if (!v) return nullptr;
    if (base64) return json::value(encode64(*v));
    if (!is_valid_utf8(*v)) not_utf8 = true;
    return json::value(*v);
  };
  json::object o;
  for (const std::string& f : fields) {
    json::value v;
    if (f == "source_code")
      v = text(source);
    else if (f == "language_id")
      v = meta->language_id;
    else if (f == "stdin")
      v = text(s.request.stdin_data.empty() ? std::nullopt
                                            : std::optional<std::string>(s.request.stdin_data));
    else if (f == "expected_output")
      v = text(meta->expected_output);
    else if (f == "stdout")
      v = text(out.stdout_data);
    else if (f == "status_id")
      v = out.status;
    else if (f == "created_at")
      v = format_rfc3339_ms(s.created_at_ms);
    else if (f == "finished_at")
      v = s.finished_at_ms ? json::value(format_rfc3339_ms(*s.finished_at_ms)) : nullptr;
    else if (f == "time")
      v = out.time_us ? json::value(seconds_text(*out.time_us)) : nullptr;
    else if (f == "memory")
      v = opt_int(out.memory_kb);
    else if (f == "stderr")
      v = text(out.stderr_data);
    else if (f == "token")
      v = s.id;
    else if (f == "number_of_runs")
      v = 1;
    else if (f == "cpu_time_limit")
      v = seconds_text(meta->cpu_time_limit_ms * 1000);
    else if (f == "cpu_extra_time")
      v = seconds_text(meta->cpu_extra_time_ms * 1000);
    else if (f == "wall_time_limit")
      v = seconds_text(run.wall_time_ms * 1000);
    else if (f == "memory_limit")
      v = run.memory_bytes / 1024;
    else if (f == "stack_limit")
      v = nullptr;
    else if (f == "max_processes_and_or_threads")
      v = run.processes;
    else if (f == "enable_per_process_and_thread_time_limit" ||
             f == "enable_per_process_and_thread_memory_limit" || f == "enable_network")
      v = false;
    else if (f == "max_file_size")
      v = run.file_size_bytes / 1024;
    else if (f == "compile_output")
      v = text(out.compile_output);
    else if (f == "exit_code")
      v = out.exit_code ? json::value(*out.exit_code) : nullptr;
    else if (f == "exit_signal")
      v = out.exit_signal ? json::value(*out.exit_signal) : nullptr;
    else if (f == "message")
      v = text(out.message);
    else if (f == "wall_time")
      v = out.wall_time_us ? json::value(seconds_text(*out.wall_time_us)) : nullptr;
    else if (f == "command_line_arguments")
      v = meta->command_line_arguments ? json::value(*meta->command_line_arguments) : nullptr;
    else if (f == "redirect_stderr_to_stdout")
      v = meta->redirect_stderr_to_stdout;
    else if (f == "status")
      v = json::object{{"id", out.status}, {"description", status_description(out.status)}};
    else if (f == "language")
      v = json::object{{"id", meta->language_id}, {"name", meta->language_name}};
    else if (f == "additional_files")
      v = s.request.find_file(kProjectArchive) != nullptr
              ? json::value(base64_encode(s.request.find_file(kProjectArchive)->content))
              : json::value(nullptr);
    // compiler_options, callback_url: always null (refused on input)
    o[f] = std::move(v);
  }
  if (not_utf8)
    return std::unexpected(
        "some attributes for this submission cannot be converted to UTF-8, use "
        "base64_encoded=true query parameter");
  return o;
}

}  // namespace cutor::judge0
