#include "envcache/nix_readiness.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "envcache/nix_process.h"

namespace cutor {
namespace {
namespace fs = std::filesystem;
namespace json = boost::json;

constexpr const char* kFix =
    "run scripts/setup-nix.sh as root (it adds the group nixbld and the build users "
    "nixbld1..nixbld10), or name a group of build users in build-users-group of "
    "/etc/nix/nix.conf";

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : " ") + s;
  return out;
}

// Why `path` cannot be written (or made, where it does not exist yet: Nix makes the store
// on first use); empty when it can.
std::string unwritable(const fs::path& path) {
  fs::path p = path;
  std::error_code ec;
  while (!fs::exists(p, ec) && p.has_parent_path() && p != p.parent_path()) p = p.parent_path();
  if (::access(p.c_str(), W_OK) == 0) return "";
  return p.string() + ": " + std::strerror(errno);
}

std::string config_string(const json::object& doc, const char* name) {
  const auto* setting = doc.if_contains(name);
  if (!setting || !setting->is_object()) return "";
  const auto* value = setting->as_object().if_contains("value");
  if (!value) return "";
  if (value->is_string()) return std::string(value->as_string());
  if (value->is_bool()) return value->as_bool() ? "true" : "false";
  return json::serialize(*value);
}

std::vector<std::string> config_list(const json::object& doc, const char* name) {
  std::vector<std::string> out;
  const auto* setting = doc.if_contains(name);
  if (!setting || !setting->is_object()) return out;
  const auto* value = setting->as_object().if_contains("value");
  if (value && value->is_array())
    for (const auto& v : value->as_array())
      if (v.is_string()) out.emplace_back(v.as_string());
  return out;
}

}  // namespace

std::string NixReadiness::summary() const {
  if (!ok()) return problem;
  std::string users = config.build_users_group.empty()
                          ? "builds as this user"
                          : "build users of group '" + config.build_users_group + "'";
  std::string subs = config.substituters.empty() ? "none (offline)" : join(config.substituters);
  return "can build: " + users + ", sandbox " + config.sandbox + ", substituters " + subs;
}

NixReadiness assess_nix_readiness(const NixConfig& config, const NixHostFacts& facts) {
  NixReadiness r;
  r.config = config;
  r.build_users = facts.group_members;
  const std::string& group = config.build_users_group;
  if (facts.is_root && group.empty()) {
    r.problem =
        "Nix would run builds as root: build-users-group is empty. Fix: " + std::string(kFix);
  } else if (facts.is_root && !facts.group_exists) {
    r.problem = "Nix cannot build: the group '" + group +
                "' named by build-users-group does not exist (Debian's nix-bin makes no build "
                "users). Fix: " +
                kFix;
  } else if (facts.is_root && facts.group_members == 0) {
    r.problem = "Nix cannot build: the group '" + group +
                "' named by build-users-group has no members that are users. Fix: " + kFix;
  } else if (!facts.store_problem.empty()) {
    r.problem = "Nix cannot write its store (" + facts.store_problem +
                "). Fix: run as root, or make /nix/store and /nix/var/nix writable by this user";
  }
  return r;
}

NixReadiness check_nix_readiness(const std::string& nix_bin_dir,
                                 const std::optional<std::string>& substituters,
                                 const std::vector<std::string>& env) {
  NixProcessSpec spec;
  spec.argv = {nix_bin_dir + "/nix", "--extra-experimental-features", "nix-command", "show-config",
               "--json"};
  if (substituters) spec.argv.insert(spec.argv.end(), {"--option", "substituters", *substituters});
  spec.env = env;
  spec.wall_time_ms = 30'000;
  NixReadiness failed;
  NixProcessResult shown;
  try {
    shown = run_nix_process(spec);
  } catch (const std::exception& e) {
    failed.problem =
        "Nix cannot start: " + std::string(e.what()) + ". Fix: apt-get install nix-bin";
    return failed;
  }
  if (!shown.ok()) {
    std::string why = shown.stderr_data.empty() ? "no message" : shown.stderr_data;
    while (!why.empty() && why.back() == '\n') why.pop_back();
    failed.problem = "Nix cannot start: `" + spec.argv[0] + " show-config` failed: " + why +
                     ". Fix: apt-get install nix-bin";
    return failed;
  }
  NixConfig config;
  try {
    json::object doc = json::parse(shown.stdout_data).as_object();
    config.build_users_group = config_string(doc, "build-users-group");
    config.substituters = config_list(doc, "substituters");
    config.sandbox = config_string(doc, "sandbox");
  } catch (const std::exception& e) {
    failed.problem = "Nix's show-config answered what cutor cannot read: " + std::string(e.what());
    return failed;
  }

  NixHostFacts facts;
  facts.is_root = ::geteuid() == 0;
  if (!config.build_users_group.empty()) {
    if (const group* g = ::getgrnam(config.build_users_group.c_str())) {
      facts.group_exists = true;
      for (char** m = g->gr_mem; m && *m; ++m)
        if (::getpwnam(*m)) ++facts.group_members;
    }
  }
  for (const char* dir : {"/nix/store", "/nix/var/nix/db"}) {
    std::string why = unwritable(dir);
    if (!why.empty()) {
      facts.store_problem = why;
      break;
    }
  }
  return assess_nix_readiness(config, facts);
}

}  // namespace cutor
