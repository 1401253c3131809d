// Opens the environment cache for `serve` and `worker`, or says why there is none.
#pragma once

#include <memory>
#include <string>

#include "envcache/nix_environment_cache.h"

namespace cutor {

struct OpenedNixCache {
  std::unique_ptr<NixEnvironmentCache> cache;  // null when Nix cannot build here
  std::string problem;                         // why not (for the executor and /info)
};

// `options.nix_path` empty: $NIX_PATH. A failure is logged, never thrown: submissions
// without cutor.nix still run, those with one end INTERNAL_ERROR with `problem`.
OpenedNixCache open_nix_cache_or_say_why(NixCacheOptions options);

}  // namespace cutor
