#include "api/runtime_api.h"

#include <spdlog/spdlog.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "api/json_text.h"

namespace cutor {
namespace json = boost::json;

std::vector<Runtime> load_catalogue(SubmissionStore& store) {
  std::vector<Runtime> out;
  for (const StoredRuntime& s : store.list_runtimes()) {
    boost::system::error_code ec;
    json::value v = json::parse(s.definition_json, ec);
    auto r = (!ec && v.is_object()) ? runtime_from_json(v.get_object())
                                    : std::unexpected(RuntimeError{"", "not a JSON object"});
    if (!r) {
      spdlog::warn("runtimes: stored {} {} is unreadable: {}", s.name, s.version,
                   r.error().message);
      continue;
    }
    out.push_back(std::move(*r));
  }
  return out;
}

void put_runtimes(SubmissionStore& store, const std::vector<Runtime>& runtimes) {
  for (const Runtime& r : runtimes)
    store.put_runtime({r.name, r.version, json::serialize(runtime_to_json(r))});
}

json::object runtimes_to_json(const std::vector<Runtime>& runtimes) {
  json::array items;
  for (const Runtime& r : runtimes) items.push_back(runtime_to_json(r));
  return json::object{{"runtimes", std::move(items)}};
}

namespace {

std::expected<json::object, ApiError> parse_object(std::string_view body) {
  boost::system::error_code ec;
  json::value doc = json::parse(body, ec);
  if (ec)
    return std::unexpected(
        make_api_error(400, "invalid_json", "", "request body is not valid JSON: " + ec.message()));
  if (auto dup = find_duplicate_json_key(body))
    return std::unexpected(
        make_api_error(400, "invalid_request", *dup, "appears twice in one object"));
  if (!doc.is_object())
    return std::unexpected(
        make_api_error(400, "invalid_request", "", "request body must be a JSON object"));
  return std::move(doc.get_object());
}

}  // namespace

std::expected<json::object, ApiError> add_runtime(SubmissionStore& store, std::string_view body,
                                                  DependencyService* deps) {
  auto doc = parse_object(body);
  if (!doc) return std::unexpected(doc.error());
  auto r = runtime_from_json(*doc);
  if (!r)
    return std::unexpected(
        make_api_error(400, "invalid_request", r.error().field, r.error().message));
  for (const StoredRuntime& s : store.list_runtimes())
    if (s.name == r->name && s.version == r->version)
      return std::unexpected(make_api_error(
          409, "already_exists", "",
          "runtime " + r->name + " " + r->version + " exists; DELETE it first to replace it"));
  if (r->nix && deps != nullptr) {
    try {
      deps->build_ahead(*r->nix);
    } catch (const std::invalid_argument& e) {
      return std::unexpected(make_api_error(400, "invalid_request", "nix", e.what()));
    }
  }
  put_runtimes(store, {*r});
  return runtime_to_json(*r);
}

std::expected<void, ApiError> remove_runtime(SubmissionStore& store, const std::string& name,
                                             const std::string& version) {
  if (store.delete_runtime(name, version)) return {};
  return std::unexpected(
      make_api_error(404, "not_found", "", "no runtime " + name + " " + version));
}

std::expected<std::string, ApiError> expand_runtime_fields(
    std::string_view body, const std::function<std::vector<Runtime>()>& catalogue) {
  boost::system::error_code ec;
  json::value doc = json::parse(body, ec);
  // Anything that is not an object naming a runtime is the submission parser's to refuse.
  if (ec || !doc.is_object() || !doc.get_object().contains("runtime")) return std::string(body);
  if (auto dup = find_duplicate_json_key(body))
    return std::unexpected(
        make_api_error(400, "invalid_request", *dup, "appears twice in one object"));
  json::object& o = doc.get_object();
  const json::value& name = o.at("runtime");
  if (!name.is_string())
    return std::unexpected(make_api_error(400, "invalid_request", "runtime", "must be a string"));
  std::string range = "*";
  if (const json::value* v = o.if_contains("version")) {
    if (!v->is_string())
      return std::unexpected(
          make_api_error(400, "invalid_request", "version", "must be a string (a semver range)"));
    range = std::string(v->get_string());
  }
  const std::vector<Runtime> runtimes = catalogue();
  auto found = find_runtime(runtimes, name.get_string(), range);
  if (!found)
    return std::unexpected(make_api_error(400, "invalid_request", "version", found.error()));
  if (*found == nullptr)
    return std::unexpected(make_api_error(400, "invalid_request", "runtime",
                                          "no runtime " + std::string(name.get_string()) +
                                              " with a version in '" + range +
                                              "' (GET /api/v1/runtimes lists them)"));
  const Runtime& rt = **found;
  json::value* files = o.if_contains("files");
  if (files == nullptr || !files->is_array()) return std::string(body);  // the parser says why
  json::array& list = files->get_array();
  for (size_t i = 0; i < list.size(); ++i) {
    const json::value* n = list[i].is_object() ? list[i].get_object().if_contains("name") : nullptr;
    if (n != nullptr && n->is_string() &&
        (n->get_string() == "cutor.nix" || n->get_string() == "compile.sh" ||
         n->get_string() == "run.sh"))
      return std::unexpected(make_api_error(
          400, "invalid_request", "files[" + std::to_string(i) + "].name",
          "is given by the runtime " + rt.name + "; leave it out or leave out \"runtime\""));
  }
  if (rt.nix) list.push_back(json::object{{"name", "cutor.nix"}, {"content", *rt.nix}});
  if (rt.compile_sh)
    list.push_back(json::object{{"name", "compile.sh"}, {"content", *rt.compile_sh}});
  list.push_back(json::object{{"name", "run.sh"}, {"content", rt.run_sh}});
  o.erase("runtime");
  o.erase("version");
  return json::serialize(doc);
}

}  // namespace cutor
