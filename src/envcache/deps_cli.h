// `cutor deps list | build FILE | rm KEY | gc`, and the JSON shape of a cached environment.
//
// Wiring (the lead, in src/cli): give CLI11 a `deps` subcommand that collects its remaining
// arguments, fill NixCacheOptions from --data/--nix-path/--cache-budget, then
//   return cutor::run_deps_command(args, options, std::cout, std::cerr);
// where args = {"list"} | {"build", FILE} | {"rm", KEY} | {"gc"}.
#pragma once

#include <boost/json/object.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "envcache/environment_records.h"
#include "envcache/nix_environment_cache.h"

namespace cutor {

// One entry as GET /api/v1/dependencies shows it (SPEC §4): key, state, store_path,
// packages[{name, version, path, size_bytes}], size_bytes, created_at, last_used_at,
// use_count, error; timestamps in RFC 3339 with milliseconds, absent values null.
// The captured variables are not part of it.
boost::json::object environment_entry_to_json(const EnvironmentEntry& entry);

// Runs one deps subcommand and returns the process exit code:
//   list        prints {"dependencies": [...]}; 0
//   build FILE  builds FILE's cutor.nix now (the environment stage's default limits), prints
//               the entry; 0 when ready, 1 when the build failed (Nix's message on `err`)
//   rm KEY      evicts KEY: 0 evicted, 1 unknown key, 3 in use
//   gc          evicts least recently used environments past the budget; prints
//               {"evicted": [keys]}; 0
// Usage errors print to `err` and return 2; an unusable cache (Nix missing, data dir not
// writable) prints the reason and returns 1.
int run_deps_command(const std::vector<std::string>& args, const NixCacheOptions& options,
                     std::ostream& out, std::ostream& err);

}  // namespace cutor
