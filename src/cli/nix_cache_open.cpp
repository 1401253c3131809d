#include "cli/nix_cache_open.h"

#include <spdlog/spdlog.h>

#include <cstdlib>

namespace cutor {

OpenedNixCache open_nix_cache_or_say_why(NixCacheOptions options) {
  if (options.nix_path.empty())
    if (const char* np = std::getenv("NIX_PATH")) options.nix_path = np;
  OpenedNixCache opened;
  try {
    opened.cache = open_nix_environment_cache(options);
  } catch (const std::exception& e) {
    opened.problem = e.what();
    spdlog::error("no Nix environment cache: {}; submissions with cutor.nix end INTERNAL_ERROR",
                  opened.problem);
  }
  return opened;
}

}  // namespace cutor
