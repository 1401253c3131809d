// open_chosen_store: SQLite under --data by default, PostgreSQL for a postgresql:// URL.
#include "cli/store_option.h"

#include <filesystem>
#include <stdexcept>

#include "store/postgres_submission_store.h"

namespace cutor {

std::unique_ptr<SubmissionStore> open_chosen_store(const StoreChoice& choice) {
  if (choice.store.empty()) {
    std::filesystem::create_directories(choice.data_dir);
    return open_sqlite_store({.path = choice.data_dir + "/cutor.db", .synchronous_full = true});
  }
  if (!is_postgres_url(choice.store))
    throw std::runtime_error("--store " + choice.store +
                             ": expected a postgresql://... URL (without --store, the store is"
                             " SQLite under --data)");
  return open_postgres_store(
      {.url = choice.store,
       .lease_timeout_ms = static_cast<int64_t>(choice.lease_timeout_s * 1000.0)});
}

}  // namespace cutor
