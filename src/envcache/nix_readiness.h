// Whether Nix can build here as configured, asked once at start by `serve`, `run`, `deps`
// and `doctor`, so that a host without build users (Debian's nix-bin makes none) is told
// what is missing instead of failing every cutor.nix build, and so that Nix is never run
// as root with builds running as root.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace cutor {

// The part of Nix's configuration in force (`nix show-config --json`) that readiness needs.
struct NixConfig {
  std::string build_users_group;
  std::vector<std::string> substituters;
  std::string sandbox;  // "true", "false" or "relaxed"
};

// What the host says about that configuration; gathered by check_nix_readiness().
struct NixHostFacts {
  bool is_root = false;
  bool group_exists = false;
  int group_members = 0;      // members of build_users_group that exist as users
  std::string store_problem;  // why the store cannot be written; empty when it can
};

struct NixReadiness {
  NixConfig config;
  int build_users = 0;  // members of build_users_group that are users
  // What is missing and how to fix it; empty when Nix can build.
  std::string problem;
  bool ok() const { return problem.empty(); }
  // One line for logs and `cutor doctor`: the configuration, or the problem.
  std::string summary() const;
};

// The verdict on `config` and `facts` (no I/O; unit tested).
NixReadiness assess_nix_readiness(const NixConfig& config, const NixHostFacts& facts);

// Asks `<nix_bin_dir>/nix show-config` (with `--option substituters VALUE` when
// `substituters` is set, in environment `env`) and the host (the group database, the
// store's directories) and assesses them. Nix not starting is a problem, not a throw.
NixReadiness check_nix_readiness(const std::string& nix_bin_dir,
                                 const std::optional<std::string>& substituters,
                                 const std::vector<std::string>& env);

}  // namespace cutor
