// Serves /api/v1/dependencies from the Nix environment cache.
#pragma once

#include "api/dependency_service.h"
#include "envcache/nix_environment_cache.h"
#include "model/limits.h"

namespace cutor {

class NixDependencyService final : public DependencyService {
 public:
  // Builds ahead of time run under `build_limits` (the environment stage's defaults).
  NixDependencyService(NixEnvironmentCache& cache, SandboxLimits build_limits)
      : cache_(cache), build_limits_(build_limits) {}
  std::vector<DependencyEntry> list() override;
  DependencyEntry build_ahead(const std::string& nix) override;
  EvictOutcome evict(const std::string& key, DependencyEntry& entry) override;

 private:
  NixEnvironmentCache& cache_;
  SandboxLimits build_limits_;
};

}  // namespace cutor
