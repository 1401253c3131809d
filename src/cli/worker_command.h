// `cutor worker`: runs submissions from a shared (PostgreSQL) store without serving HTTP.
#pragma once

#include <optional>
#include <string>

#include "cli/store_option.h"

namespace cutor {

struct WorkerCommandOptions {
  StoreChoice store;  // must name PostgreSQL; data_dir holds workspaces and the env cache
  int workers = 1;
  std::string nix_path;
  std::optional<std::string> substituters;
  int64_t cache_budget = 0;
  bool no_isolation = false;
  int prepared_boxes = -1;  // -1: one per worker, at most 8
};

// Runs until SIGTERM or SIGINT; returns the exit code.
int run_worker_command(const WorkerCommandOptions& o);

}  // namespace cutor
