#include "cli/dependency_adapter.h"

namespace cutor {
namespace {

DependencyEntry to_dependency(const EnvironmentEntry& e) {
  DependencyEntry d;
  d.key = e.key;
  switch (e.state) {
    case EnvironmentState::kBuilding:
      d.state = DependencyState::kBuilding;
      break;
    case EnvironmentState::kReady:
      d.state = DependencyState::kReady;
      break;
    case EnvironmentState::kFailed:
      d.state = DependencyState::kFailed;
      break;
    case EnvironmentState::kEvicting:
      d.state = DependencyState::kEvicting;
      break;
  }
  d.store_path = e.store_path;
  for (const auto& p : e.packages) d.packages.push_back({p.name, p.version, p.path, p.size_bytes});
  d.size_bytes = e.size_bytes;
  d.created_at_ms = e.created_at_ms;
  d.last_used_at_ms = e.last_used_at_ms;
  d.use_count = e.use_count;
  d.error = e.error;
  return d;
}

}  // namespace

std::vector<DependencyEntry> NixDependencyService::list() {
  std::vector<DependencyEntry> out;
  for (const auto& e : cache_.list()) out.push_back(to_dependency(e));
  return out;
}

DependencyEntry NixDependencyService::build_ahead(const std::string& nix) {
  return to_dependency(cache_.build_ahead(nix, build_limits_));
}

EvictOutcome NixDependencyService::evict(const std::string& key, DependencyEntry& entry) {
  auto [result, evicting] = cache_.start_evict(key);
  switch (result) {
    case EvictResult::kEvicted:
      entry = to_dependency(*evicting);
      return EvictOutcome::kStarted;
    case EvictResult::kInUse:
      return EvictOutcome::kInUse;
    case EvictResult::kNotFound:
      break;
  }
  return EvictOutcome::kNotFound;
}

}  // namespace cutor
