// envicutor's /runtimes and /execute over the runtime catalogue and the request store.
#include "api/envicutor_api.h"

#include <fmt/format.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "api/runtime_api.h"
#include "api/submission_json.h"

namespace cutor {
namespace json = boost::json;

namespace {

// envicutor's runtimes have no version: those added here get this one.
constexpr std::string_view kEnvicutorVersion = "0.0.0";

EnvicutorAnswer message(int status, std::string text) {
  return {status, json::value(json::object{{"message", std::move(text)}})};
}

bool json_or_no_content_type(std::string_view type) {
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
  std::string lower;
  for (char c : type) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower.empty() || lower == "application/json";
}

// The name envicutor's clients see: the catalogue name, with the version when it is not
// one added through this API (so "python (3.11.2)" never clashes with an envicutor name,
// which cannot hold a space).
std::string shown_name(const StoredRuntime& r) {
  if (r.version == kEnvicutorVersion) return r.name;
  return fmt::format("{} ({})", r.name, r.version);
}

std::optional<Runtime> runtime_with_id(SubmissionStore& store, int64_t id) {
  for (const StoredRuntime& s : store.list_runtimes()) {
    if (s.id != id) continue;
    boost::system::error_code ec;
    json::value v = json::parse(s.definition_json, ec);
    if (ec || !v.is_object()) return std::nullopt;
    auto r = runtime_from_json(v.get_object());
    if (!r) return std::nullopt;
    return std::move(*r);
  }
  return std::nullopt;
}

EnvicutorAnswer list_runtimes(SubmissionStore& store) {
  json::array out;
  for (const StoredRuntime& r : store.list_runtimes())
    out.push_back(json::object{{"id", r.id}, {"name", shown_name(r)}});
  return {200, json::value(std::move(out))};
}

// Scripts run under bash, as envicutor's `#!/bin/bash` scripts do (cutor runs `sh run.sh`).
std::string bash_script(std::string_view script) {
  std::string quoted = "'";
  for (char c : script) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted += "'";
  return "exec bash -c " + quoted + " bash \"$@\"\n";
}

EnvicutorAnswer add_runtime(const EnvicutorContext& ctx, std::string_view body) {
  boost::system::error_code ec;
  json::value doc = json::parse(body, ec);
  if (ec) return message(400, "Failed to parse the request body as JSON: " + ec.message());
  if (auto dup = find_duplicate_json_key(body))
    return message(400, *dup + " appears twice in one object");
  if (!doc.is_object())
    return message(422,
                   "Failed to deserialize the JSON body into the target type: the body "
                   "must be a JSON object");
  const json::object& o = doc.get_object();
  std::map<std::string, std::string> f;
  for (const auto& kv : o) {
    const std::string key(kv.key());
    if (key != "name" && key != "nix_shell" && key != "compile_script" && key != "run_script" &&
        key != "source_file_name")
      return message(422, fmt::format("Failed to deserialize the JSON body into the target type: "
                                      "{} is not a field of envicutor's runtime (cutor refuses "
                                      "what it would ignore)",
                                      key));
    if (!kv.value().is_string())
      return message(422, fmt::format("Failed to deserialize the JSON body into the target type: "
                                      "{} must be a string",
                                      key));
    f[key] = std::string(kv.value().get_string());
  }
  for (const char* key : {"name", "nix_shell", "compile_script", "run_script", "source_file_name"})
    if (!f.contains(key))
      return message(422, fmt::format("Failed to deserialize the JSON body into the target type: "
                                      "missing field `{}`",
                                      key));
  // envicutor's checks, in its order and words.
  if (f["name"].empty()) return message(400, "Name can't be empty");
  if (f["nix_shell"].empty()) return message(400, "Nix shell can't be empty");
  if (f["run_script"].empty()) return message(400, "Run command can't be empty");
  if (f["source_file_name"].empty()) return message(400, "Source file name can't be empty");

  json::object entry{{"name", f["name"]},
                     {"version", kEnvicutorVersion},
                     {"source_file", f["source_file_name"]},
                     {"nix", f["nix_shell"]},
                     {"run_sh", bash_script(f["run_script"])}};
  if (!f["compile_script"].empty()) entry["compile_sh"] = bash_script(f["compile_script"]);
  auto runtime = runtime_from_json(entry);
  if (!runtime) {
    if (runtime.error().field == "source_file") return message(400, "Invalid source file name");
    if (runtime.error().field == "name")
      return message(400,
                     "Invalid runtime name: cutor's catalogue names " + runtime.error().message);
    return message(400, runtime.error().field + " " + runtime.error().message);
  }
  for (const StoredRuntime& s : ctx.store.list_runtimes())
    if (s.name == runtime->name) return message(400, "A runtime with this name already exists");
  if (ctx.deps != nullptr) {
    try {
      ctx.deps->build_ahead(*runtime->nix);
    } catch (const std::invalid_argument& e) {
      return message(400, std::string("Invalid nix_shell: ") + e.what());
    }
  }
  const int64_t id = ctx.store.put_runtime(
      {runtime->name, runtime->version, json::serialize(runtime_to_json(*runtime))});
  // envicutor answers its nix-shell's output; cutor builds ahead without waiting, so there is
  // none to give yet (GET /api/v1/dependencies shows the build). `id` is cutor's addition.
  return {200, json::value(json::object{{"stdout", ""}, {"stderr", ""}, {"id", id}})};
}

EnvicutorAnswer delete_runtime(SubmissionStore& store, std::string_view id_text) {
  int64_t id = 0;
  bool digits = !id_text.empty() && id_text.size() <= 10;
  for (char c : id_text) digits = digits && c >= '0' && c <= '9';
  if (!digits)
    return message(400,
                   fmt::format("Invalid URL: Cannot parse `{}` to a `u32`", std::string(id_text)));
  for (char c : id_text) id = id * 10 + (c - '0');
  for (const StoredRuntime& s : store.list_runtimes())
    if (s.id == id && store.delete_runtime(s.name, s.version)) return {200, std::nullopt};
  return message(404, "Could not find the specified runtime");
}

boost::asio::awaitable<EnvicutorAnswer> execute(const EnvicutorContext& ctx,
                                                const std::map<std::string, std::string>& query,
                                                std::string_view body) {
  bool is_project = false;
  for (const auto& [k, v] : query) {
    if (k != "is_project")
      co_return message(400, fmt::format("Failed to deserialize query string: unknown query "
                                         "parameter {}",
                                         k));
    if (v != "true" && v != "false")
      co_return message(400,
                        "Failed to deserialize query string: is_project must be true or false");
    is_project = v == "true";
  }
  auto job = parse_envicutor_execute(
      body, is_project, [&](int64_t id) { return runtime_with_id(ctx.store, id); }, ctx.limits);
  if (!job) co_return message(job.error().first, job.error().second);
  Submission s;
  s.id = new_uuid();
  s.created_at_ms = now_unix_ms();
  s.request = job->request;
  std::optional<Submission> done = co_await ctx.insert_and_wait(s);
  if (!done || done->status != SubmissionStatus::kFinished) {
    ctx.store.cancel(s.id);
    co_return message(
        500, fmt::format("submission {} did not finish within {} ms", s.id, ctx.max_wait_ms));
  }
  co_return EnvicutorAnswer{200, json::value(envicutor_result(*job, *done))};
}

}  // namespace

bool is_envicutor_path(std::string_view path) {
  return path == "/runtimes" || path.starts_with("/runtimes/") || path == "/execute";
}

boost::asio::awaitable<EnvicutorAnswer> handle_envicutor(
    const EnvicutorContext& ctx, std::string_view method, std::string_view path,
    const std::map<std::string, std::string>& query, std::string_view content_type,
    std::string_view body) {
  const auto not_allowed = [] { return message(405, "Method not allowed"); };
  if ((method == "POST") && !json_or_no_content_type(content_type))
    co_return message(415, "Expected request with `Content-Type: application/json`");
  if (path == "/execute") {
    if (method != "POST") co_return not_allowed();
    co_return co_await execute(ctx, query, body);
  }
  if (!query.empty())
    co_return message(400, fmt::format("unknown query parameter {}", query.begin()->first));
  if (path == "/runtimes") {
    if (method == "GET") co_return list_runtimes(ctx.store);
    if (method == "POST") co_return add_runtime(ctx, body);
    co_return not_allowed();
  }
  const std::string_view id = path.substr(std::string_view("/runtimes/").size());
  if (id.find('/') != std::string_view::npos) co_return message(404, "no such endpoint");
  if (method != "DELETE") co_return not_allowed();
  co_return delete_runtime(ctx.store, id);
}

}  // namespace cutor
