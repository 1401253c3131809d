#include "api/judge0_api.h"

#include <fmt/format.h>

#include <boost/json/parse.hpp>
#include <initializer_list>

#include "api/judge0_submission.h"
#include "api/runtime_api.h"
#include "api/submission_json.h"

namespace cutor {
namespace json = boost::json;

namespace {

constexpr int64_t kMaxBatch = 20;  // Judge0's max_submission_batch_size
constexpr std::string_view kQueueFull = "queue is full";

Judge0Answer error(int status, std::string message) {
  return {status, json::value(json::object{{"error", std::move(message)}})};
}

Judge0Answer ok(int status, json::value body) {
  return {status, std::move(body)};
}

// Judge0 ignores unknown query parameters; cutor names them.
std::optional<Judge0Answer> only(const std::map<std::string, std::string>& query,
                                 std::initializer_list<std::string_view> allowed) {
  for (const auto& [k, v] : query) {
    bool known = false;
    for (auto a : allowed) known = known || k == a;
    if (!known) return error(400, fmt::format("unknown query parameter {}", k));
  }
  return std::nullopt;
}

std::expected<bool, Judge0Answer> flag(const std::map<std::string, std::string>& query,
                                       const std::string& name) {
  auto it = query.find(name);
  if (it == query.end() || it->second == "false") return false;
  if (it->second == "true") return true;
  return std::unexpected(error(400, name + " must be true or false"));
}

bool json_or_no_content_type(std::string_view type) {
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
  if (type.empty()) return true;
  std::string lower;
  for (char c : type) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower == "application/json";
}

std::expected<json::value, Judge0Answer> parse_body(std::string_view content_type,
                                                    std::string_view body) {
  if (!json_or_no_content_type(content_type))
    return std::unexpected(error(415, "Content-Type must be application/json"));
  boost::system::error_code ec;
  json::value doc = json::parse(body, ec);
  if (ec) return std::unexpected(error(400, "request body is not valid JSON: " + ec.message()));
  if (auto dup = find_duplicate_json_key(body))
    return std::unexpected(error(400, *dup + " appears twice in one object"));
  return doc;
}

// Lower-case RFC 4122 text, as cutor's ids (the tokens) are written.
bool looks_like_token(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash != (s[i] == '-')) return false;
    if (!dash && !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  }
  return true;
}

// The Judge0 view of the stored submission `token`; nullopt when there is none (or it
// was not made through this adapter).
std::optional<std::expected<json::object, std::string>> find_rendered(
    SubmissionStore& store, const std::string& token, const std::vector<std::string>& fields,
    bool base64) {
  if (!looks_like_token(token)) return std::nullopt;
  std::optional<Submission> s = store.get(token);
  if (!s) return std::nullopt;
  return judge0::render(*s, fields, base64);
}

Submission queued(SubmissionRequest request) {
  Submission s;
  s.id = new_uuid();
  s.created_at_ms = now_unix_ms();
  s.status = SubmissionStatus::kQueued;
  s.request = std::move(request);
  return s;
}

boost::asio::awaitable<Judge0Answer> post_submission(
    const Judge0Context& ctx, const std::map<std::string, std::string>& query,
    std::string_view content_type, std::string_view body) {
  if (auto e = only(query, {"base64_encoded", "wait", "fields"})) co_return *e;
  const auto base64 = flag(query, "base64_encoded");
  if (!base64) co_return base64.error();
  const auto wait = flag(query, "wait");
  if (!wait) co_return wait.error();
  auto it = query.find("fields");
  const auto fields = judge0::parse_fields(it == query.end() ? nullptr : &it->second);
  if (!fields) co_return error(400, fields.error());
  auto doc = parse_body(content_type, body);
  if (!doc) co_return doc.error();
  auto request = judge0::parse_submission(*doc, *base64, load_catalogue(ctx.store), ctx.limits);
  if (!request) co_return ok(422, std::move(request.error()));
  const Submission s = queued(std::move(*request));
  if (!*wait) {
    try {
      ctx.store.insert(s, ctx.max_queue);
    } catch (const QueueFullError&) {
      co_return error(503, std::string(kQueueFull));
    }
    co_return ok(201, json::object{{"token", s.id}});
  }
  std::optional<Submission> done;
  bool full = false;
  try {
    done = co_await ctx.insert_and_wait(s);
  } catch (const QueueFullError&) {
    full = true;
  }
  if (full) co_return error(503, std::string(kQueueFull));
  // Past the server's wait bound the answer is the state so far (In Queue or Processing).
  auto rendered = judge0::render(done ? *done : s, *fields, *base64);
  if (!rendered->has_value())
    co_return ok(201, json::object{{"token", s.id}, {"error", rendered->error()}});
  co_return ok(201, std::move(**rendered));
}

Judge0Answer get_submission(const Judge0Context& ctx, const std::string& token,
                            const std::map<std::string, std::string>& query) {
  if (auto e = only(query, {"base64_encoded", "fields"})) return *e;
  const auto base64 = flag(query, "base64_encoded");
  if (!base64) return base64.error();
  auto it = query.find("fields");
  const auto fields = judge0::parse_fields(it == query.end() ? nullptr : &it->second);
  if (!fields) return error(400, fields.error());
  auto rendered = find_rendered(ctx.store, token, *fields, *base64);
  if (!rendered) return {404, std::nullopt};
  if (!rendered->has_value()) return error(400, rendered->error());
  return ok(200, std::move(**rendered));
}

Judge0Answer post_batch(const Judge0Context& ctx, const std::map<std::string, std::string>& query,
                        std::string_view content_type, std::string_view body) {
  if (query.contains("wait"))
    return error(400, "wait is not allowed for batched submissions; poll GET /submissions/batch");
  if (auto e = only(query, {"base64_encoded"})) return *e;
  const auto base64 = flag(query, "base64_encoded");
  if (!base64) return base64.error();
  auto doc = parse_body(content_type, body);
  if (!doc) return doc.error();
  const json::value* items =
      doc->is_object() ? doc->get_object().if_contains("submissions") : nullptr;
  if (items == nullptr || !items->is_array())
    return error(400, "the body must be {\"submissions\": [submission, ...]}");
  const json::array& list = items->get_array();
  if (list.empty()) return error(400, "number of submissions in a batch should be at least 1");
  if (static_cast<int64_t>(list.size()) > kMaxBatch)
    return error(400, fmt::format("number of submissions in a batch should be less than or "
                                  "equal to {}",
                                  kMaxBatch));
  const std::vector<Runtime> runtimes = load_catalogue(ctx.store);
  std::vector<std::expected<Submission, json::object>> parsed;
  int64_t valid = 0;
  for (const json::value& item : list) {
    auto r = judge0::parse_submission(item, *base64, runtimes, ctx.limits);
    if (r) {
      parsed.emplace_back(queued(std::move(*r)));
      ++valid;
    } else {
      parsed.emplace_back(std::unexpected(std::move(r.error())));
    }
  }
  // Judge0 checks the queue once for the whole batch: all of it is queued or none.
  if (ctx.max_queue > 0 && ctx.store.count_unfinished() + valid > ctx.max_queue)
    return error(503, std::string(kQueueFull));
  json::array out;
  for (auto& p : parsed) {
    if (!p) {
      out.emplace_back(std::move(p.error()));
      continue;
    }
    ctx.store.insert(*p, 0);  // bounded above
    out.push_back(json::object{{"token", p->id}});
  }
  return ok(201, std::move(out));
}

Judge0Answer get_batch(const Judge0Context& ctx, const std::map<std::string, std::string>& query) {
  if (auto e = only(query, {"tokens", "base64_encoded", "fields"})) return *e;
  const auto base64 = flag(query, "base64_encoded");
  if (!base64) return base64.error();
  auto f = query.find("fields");
  const auto fields = judge0::parse_fields(f == query.end() ? nullptr : &f->second);
  if (!fields) return error(400, fields.error());
  auto t = query.find("tokens");
  if (t == query.end() || t->second.empty()) return error(400, "tokens is required");
  std::vector<std::string> tokens;
  for (size_t start = 0; start <= t->second.size();) {
    const size_t comma = t->second.find(',', start);
    tokens.push_back(t->second.substr(start, comma == std::string::npos ? comma : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (static_cast<int64_t>(tokens.size()) > kMaxBatch)
    return error(400, fmt::format("number of submissions in a batch should be less than or "
                                  "equal to {}",
                                  kMaxBatch));
  json::array out;
  for (const std::string& token : tokens) {
    auto rendered = find_rendered(ctx.store, token, *fields, *base64);
    if (!rendered) {
      out.emplace_back(nullptr);  // Judge0: an unknown token is null in its place
      continue;
    }
    if (!rendered->has_value())
      return error(400,
                   "some attributes for one or more submissions cannot be converted to UTF-8, "
                   "use base64_encoded=true query parameter");
    out.emplace_back(std::move(**rendered));
  }
  return ok(200, json::object{{"submissions", std::move(out)}});
}

json::object config_info(const Judge0Context& ctx) {
  const SandboxLimits& def = ctx.limits.default_for(Stage::kRun);
  const SandboxLimits& max = ctx.limits.max_for(Stage::kRun);
  const auto seconds = [](int64_t ms) { return judge0::seconds_text(ms * 1000); };
  json::object o;
  o["maintenance_mode"] = false;
  o["enable_wait_result"] = true;
  o["enable_compiler_options"] = false;
  o["allowed_languages_for_compile_options"] = json::array();
  o["enable_command_line_arguments"] = true;
  o["enable_submission_delete"] = false;
  o["enable_callbacks"] = false;
  o["callbacks_max_tries"] = 0;
  o["callbacks_timeout"] = "0.0";
  o["enable_additional_files"] = true;
  o["max_queue_size"] = ctx.max_queue;
  o["cpu_time_limit"] = seconds(def.cpu_time_ms);
  o["max_cpu_time_limit"] = seconds(max.cpu_time_ms);
  o["cpu_extra_time"] = "0.0";
  o["max_cpu_extra_time"] = seconds(max.cpu_time_ms);
  o["wall_time_limit"] = seconds(def.wall_time_ms);
  o["max_wall_time_limit"] = seconds(max.wall_time_ms);
  o["memory_limit"] = def.memory_bytes / 1024;
  o["max_memory_limit"] = max.memory_bytes / 1024;
  o["stack_limit"] = nullptr;
  o["max_stack_limit"] = nullptr;
  o["max_processes_and_or_threads"] = def.processes;
  o["max_max_processes_and_or_threads"] = max.processes;
  o["enable_per_process_and_thread_time_limit"] = false;
  o["allow_enable_per_process_and_thread_time_limit"] = false;
  o["enable_per_process_and_thread_memory_limit"] = false;
  o["allow_enable_per_process_and_thread_memory_limit"] = false;
  o["max_file_size"] = def.file_size_bytes / 1024;
  o["max_max_file_size"] = max.file_size_bytes / 1024;
  o["number_of_runs"] = 1;
  o["max_number_of_runs"] = 1;
  o["redirect_stderr_to_stdout"] = false;
  o["max_extract_size"] = 0;
  o["enable_batched_submissions"] = true;
  o["max_submission_batch_size"] = kMaxBatch;
  o["submission_cache_duration"] = "0.0";
  o["use_docs_as_homepage"] = false;
  o["allow_enable_network"] = false;
  o["enable_network"] = false;
  return o;
}

Judge0Answer info_endpoint(const Judge0Context& ctx, std::string_view path) {
  if (path == "/statuses") {
    json::array out;
    for (int id = 1; id <= judge0::kStatusCount; ++id)
      out.push_back(json::object{{"id", id}, {"description", judge0::status_description(id)}});
    return ok(200, std::move(out));
  }
  if (path == "/about")
    return ok(200, json::object{{"version", ctx.version},
                                {"homepage", nullptr},
                                {"source_code", nullptr},
                                {"maintainer", nullptr}});
  if (path == "/config_info") return ok(200, config_info(ctx));
  const std::vector<Runtime> runtimes = load_catalogue(ctx.store);
  const std::vector<judge0::Language> langs = judge0::languages(runtimes);
  if (path == "/languages" || path == "/languages/all") {
    json::array out;
    for (const auto& l : langs) {
      json::object item{{"id", l.id}, {"name", l.name}};
      if (path == "/languages/all") item["is_archived"] = false;
      out.push_back(std::move(item));
    }
    return ok(200, std::move(out));
  }
  const std::string_view id_text = path.substr(std::string_view("/languages/").size());
  int64_t id = 0;
  const bool digits = !id_text.empty() && id_text.size() <= 10 &&
                      id_text.find_first_not_of("0123456789") == std::string_view::npos;
  if (digits) id = std::stoll(std::string(id_text));
  const judge0::Language* lang = digits ? judge0::find_language(langs, id) : nullptr;
  if (lang == nullptr) return error(404, fmt::format("language with id {} doesn't exist", id_text));
  return ok(200, judge0::language_detail(*lang));
}

}  // namespace

bool is_judge0_path(std::string_view path) {
  for (std::string_view root : {"/submissions", "/languages"})
    if (path == root || (path.starts_with(root) && path[root.size()] == '/')) return true;
  return path == "/statuses" || path == "/about" || path == "/config_info";
}

boost::asio::awaitable<Judge0Answer> handle_judge0(const Judge0Context& ctx,
                                                   std::string_view method, std::string_view path,
                                                   const std::map<std::string, std::string>& query,
                                                   std::string_view content_type,
                                                   std::string_view body) {
  const bool get = method == "GET";
  const bool post = method == "POST";
  const auto not_allowed = [&](std::string_view allow) {
    return error(405, fmt::format("{} {} is not allowed; use {}", method, path, allow));
  };
  if (path == "/submissions") {
    if (post) co_return co_await post_submission(ctx, query, content_type, body);
    if (get)
      co_return error(403,
                      "listing submissions is not allowed; GET /api/v1/submissions lists "
                      "them");
    co_return not_allowed("POST");
  }
  if (path == "/submissions/batch") {
    if (post) co_return post_batch(ctx, query, content_type, body);
    if (get) co_return get_batch(ctx, query);
    co_return not_allowed("GET or POST");
  }
  if (path.starts_with("/submissions/")) {
    const std::string token(path.substr(std::string_view("/submissions/").size()));
    if (!get) co_return not_allowed("GET");
    co_return get_submission(ctx, token, query);
  }
  if (!get) co_return not_allowed("GET");
  if (auto e = only(query, {})) co_return *e;
  co_return info_endpoint(ctx, path);
}

}  // namespace cutor
