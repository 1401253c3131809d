#include "runtimes/runtime.h"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "runtimes/semver.h"

namespace cutor {
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

bool is_runtime_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::ranges::all_of(s, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '.' || c == '_' ||
           c == '-';
  });
}

// A plain file name at the workspace root that is not one of the special files.
std::string source_file_problem(std::string_view s) {
  if (s.empty() || s.size() > 255) return "must be 1 to 255 bytes";
  if (s == "." || s == "..") return "must be a file name";
  if (s.find_first_of(std::string_view("/\\\0", 3)) != std::string_view::npos)
    return "must be a file name at the root (no '/', '\\' or NUL)";
  if (s == "cutor.nix" || s == "compile.sh" || s == "run.sh") return "must not be a special file";
  return "";
}

std::optional<std::string> read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::expected<Runtime, RuntimeError> runtime_from_json(const json::object& o) {
  const auto fail = [](std::string field, std::string why) {
    return std::unexpected(RuntimeError{std::move(field), std::move(why)});
  };
  static const std::set<std::string_view> kKnown = {"name", "version",    "aliases", "source_file",
                                                    "nix",  "compile_sh", "run_sh"};
  for (const auto& kv : o)
    if (!kKnown.contains(kv.key())) return fail(kv.key(), "unknown field");
  Runtime r;
  const auto string_field = [&](std::string_view key, bool required,
                                std::optional<std::string>& out) -> std::optional<RuntimeError> {
    const json::value* v = o.if_contains(key);
    if (v == nullptr || (v->is_null() && !required)) {
      if (required) return RuntimeError{std::string(key), "is required"};
      return std::nullopt;
    }
    if (!v->is_string()) return RuntimeError{std::string(key), "must be a string"};
    out = std::string(v->get_string());
    return std::nullopt;
  };
  std::optional<std::string> name, version, source, run;
  for (auto [key, req, out] : {std::tuple{"name", true, &name},
                               {"version", true, &version},
                               {"source_file", true, &source},
                               {"nix", false, &r.nix},
                               {"compile_sh", false, &r.compile_sh},
                               {"run_sh", true, &run}})
    if (auto e = string_field(key, req, *out)) return std::unexpected(*e);
  if (!is_runtime_name(*name))
    return fail("name", "must be 1 to 64 of a-z, 0-9, '+', '.', '_', '-'");
  if (!parse_version(*version)) return fail("version", "must be MAJOR.MINOR.PATCH, e.g. 3.11.2");
  if (auto p = source_file_problem(*source); !p.empty()) return fail("source_file", p);
  if (run->empty()) return fail("run_sh", "must not be empty");
  if (r.nix && r.nix->empty()) return fail("nix", "must not be empty when given");
  if (const json::value* a = o.if_contains("aliases")) {
    if (!a->is_array()) return fail("aliases", "must be an array of strings");
    for (size_t i = 0; i < a->get_array().size(); ++i) {
      const json::value& item = a->get_array()[i];
      const std::string field = "aliases[" + std::to_string(i) + "]";
      if (!item.is_string() || !is_runtime_name(item.get_string()))
        return fail(field, "must be a name of 1 to 64 of a-z, 0-9, '+', '.', '_', '-'");
      r.aliases.emplace_back(item.get_string());
    }
  }
  r.name = std::move(*name);
  r.version = std::move(*version);
  r.source_file = std::move(*source);
  r.run_sh = std::move(*run);
  return r;
}

json::object runtime_to_json(const Runtime& r) {
  json::object o;
  o["name"] = r.name;
  o["version"] = r.version;
  json::array aliases;
  for (const auto& a : r.aliases) aliases.emplace_back(a);
  o["aliases"] = std::move(aliases);
  o["source_file"] = r.source_file;
  o["nix"] = r.nix ? json::value(*r.nix) : json::value(nullptr);
  o["compile_sh"] = r.compile_sh ? json::value(*r.compile_sh) : json::value(nullptr);
  o["run_sh"] = r.run_sh;
  return o;
}

Runtime load_runtime_dir(const std::string& dir) {
  const fs::path base(dir);
  const auto meta_text = read_text(base / "runtime.json");
  if (!meta_text) throw std::runtime_error(dir + "/runtime.json: cannot be read");
  boost::system::error_code ec;
  json::value meta = json::parse(*meta_text, ec);
  if (ec || !meta.is_object()) throw std::runtime_error(dir + "/runtime.json: not a JSON object");
  json::object o = meta.get_object();
  for (std::string_view key : {"nix", "compile_sh", "run_sh"})
    if (o.contains(key))
      throw std::runtime_error(dir + "/runtime.json: " + std::string(key) +
                               " belongs in its own file");
  for (auto [file, key] :
       {std::pair{"cutor.nix", "nix"}, {"compile.sh", "compile_sh"}, {"run.sh", "run_sh"}})
    if (auto text = read_text(base / file)) o[key] = *text;
  auto r = runtime_from_json(o);
  if (!r) throw std::runtime_error(dir + ": " + r.error().field + ": " + r.error().message);
  return *r;
}

std::vector<Runtime> load_runtime_folder(const std::string& folder) {
  std::vector<Runtime> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    if (!entry.is_directory() || !fs::exists(entry.path() / "runtime.json")) continue;
    out.push_back(load_runtime_dir(entry.path().string()));
  }
  if (ec) throw std::runtime_error(folder + ": " + ec.message());
  std::ranges::sort(out, [](const Runtime& a, const Runtime& b) {
    return std::tie(a.name, a.version) < std::tie(b.name, b.version);
  });
  for (size_t i = 1; i < out.size(); ++i)
    if (out[i].name == out[i - 1].name && out[i].version == out[i - 1].version)
      throw std::runtime_error(folder + ": runtime " + out[i].name + " " + out[i].version +
                               " appears twice");
  return out;
}

std::expected<const Runtime*, std::string> find_runtime(const std::vector<Runtime>& runtimes,
                                                        std::string_view name,
                                                        std::string_view range) {
  const Runtime* best = nullptr;
  std::optional<Version> best_version;
  for (const Runtime& r : runtimes) {
    if (r.name != name && std::ranges::find(r.aliases, name) == r.aliases.end()) continue;
    const auto v = parse_version(r.version);
    if (!v) continue;
    auto in = version_in_range(*v, range);
    if (!in) return std::unexpected(in.error());
    if (*in && (!best_version || *v > *best_version)) {
      best = &r;
      best_version = v;
    }
  }
  return best;
}

}  // namespace cutor
