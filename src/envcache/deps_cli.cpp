// `cutor deps ...`; see deps_cli.h.
#include "envcache/deps_cli.h"

#include <boost/json.hpp>
#include <fstream>
#include <sstream>

namespace cutor {

namespace json = boost::json;

boost::json::object environment_entry_to_json(const EnvironmentEntry& e) {
  json::array packages;
  for (const auto& p : e.packages)
    packages.push_back(json::object{
        {"name", p.name}, {"version", p.version}, {"path", p.path}, {"size_bytes", p.size_bytes}});
  json::object o;
  o["key"] = e.key;
  o["state"] = environment_state_name(e.state);
  o["store_path"] = e.store_path ? json::value(*e.store_path) : json::value(nullptr);
  o["packages"] = std::move(packages);
  o["size_bytes"] = e.size_bytes ? json::value(*e.size_bytes) : json::value(nullptr);
  o["created_at"] = format_rfc3339_ms(e.created_at_ms);
  o["last_used_at"] =
      e.last_used_at_ms ? json::value(format_rfc3339_ms(*e.last_used_at_ms)) : json::value(nullptr);
  o["use_count"] = e.use_count;
  o["error"] = e.error ? json::value(*e.error) : json::value(nullptr);
  return o;
}

int run_deps_command(const std::vector<std::string>& args, const NixCacheOptions& options,
                     std::ostream& out, std::ostream& err) {
  const char* usage = "usage: cutor deps list | build FILE | rm KEY | gc\n";
  if (args.empty()) {
    err << usage;
    return 2;
  }
  const std::string& cmd = args[0];
  const size_t want = (cmd == "build" || cmd == "rm") ? 2 : 1;
  if ((cmd != "list" && cmd != "build" && cmd != "rm" && cmd != "gc") || args.size() != want) {
    err << usage;
    return 2;
  }
  std::string nix;
  if (cmd == "build") {
    std::ifstream in(args[1], std::ios::binary);
    if (!in) {
      err << "cutor deps build: cannot read " << args[1] << "\n";
      return 2;
    }
    std::ostringstream buf;
    buf << in.rdbuf();
    nix = buf.str();
  }

  std::unique_ptr<NixEnvironmentCache> cache;
  try {
    cache = open_nix_environment_cache(options);
  } catch (const std::exception& e) {
    err << "cutor deps: " << e.what() << "\n";
    return 1;
  }

  if (cmd == "list") {
    json::array list;
    for (const auto& e : cache->list()) list.push_back(environment_entry_to_json(e));
    out << json::serialize(json::object{{"dependencies", std::move(list)}}) << "\n";
    return 0;
  }
  if (cmd == "build") {
    EnvironmentOutcome outcome = cache->prepare(
        nix, LimitTable::builtin().default_for(Stage::kEnvironment), std::stop_token{});
    const std::string key = cache->key_for(nix);
    if (outcome.environment) cache->release(key);
    auto entry = cache->get(key);
    if (entry) out << json::serialize(environment_entry_to_json(*entry)) << "\n";
    if (outcome.stage.status != StageStatus::kOk) {
      err << outcome.stage.stderr_data;
      return 1;
    }
    return 0;
  }
  if (cmd == "rm") {
    switch (cache->evict(args[1])) {
      case EvictResult::kEvicted:
        return 0;
      case EvictResult::kNotFound:
        err << "cutor deps rm: no environment " << args[1] << "\n";
        return 1;
      case EvictResult::kInUse:
        err << "cutor deps rm: " << args[1] << " is in use\n";
        return 3;
    }
  }
  json::array evicted;
  for (const auto& key : cache->gc()) evicted.push_back(json::string(key));
  out << json::serialize(json::object{{"evicted", std::move(evicted)}}) << "\n";
  return 0;
}

}  // namespace cutor
