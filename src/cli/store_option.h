// The --store option shared by serve, worker and deps: which SubmissionStore to open.
#pragma once

#include <memory>
#include <string>

#include "store/submission_store.h"

namespace cutor {

struct StoreChoice {
  std::string store;              // "" (SQLite in data_dir) or a postgresql:// URL
  std::string data_dir;           // the SQLite store is data_dir/cutor.db
  double lease_timeout_s = 30.0;  // PostgreSQL: a silent worker's claims go back after this
};

// Opens the store `choice` names. Throws std::runtime_error for a --store that is neither
// empty nor a PostgreSQL URL, StoreError when the store cannot be opened.
std::unique_ptr<SubmissionStore> open_chosen_store(const StoreChoice& choice);

}  // namespace cutor
