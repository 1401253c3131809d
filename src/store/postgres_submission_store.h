// The request store on PostgreSQL, for a fleet: one API server and workers on many hosts
// share one database.
//
// Claims take the oldest QUEUED row with FOR UPDATE SKIP LOCKED, so concurrent claimers on
// any host never wait on or share a row. Each claim is a lease (owner, attempt, heartbeat
// time): a background thread renews this store's leases every lease_timeout/3 and puts
// back to QUEUED every submission whose lease nobody renewed for lease_timeout (its worker
// died), bumping the attempt. Writes for a submission this store claimed carry the
// attempt, so a late result from a lease that was lost is refused (the write returns false,
// as after a cancel) instead of overwriting the run that replaced it.
//
// Change notification crosses processes with LISTEN/NOTIFY: every write notifies in its
// transaction; one connection per store listens, wakes claim_next() and tells the local
// listeners of changes made elsewhere (changes made here are told directly after commit,
// as in the SQLite store). A lost listening connection reconnects, listens again and then
// catches up: claimers look again and listeners hear of every unfinished submission and
// every one finished since the connection was lost.
//
// requeue_unfinished() puts back only the submissions whose lease expired (a fleet's
// other workers are alive), not every unfinished one as the single-box SQLite store does.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "store/submission_store.h"

namespace cutor {

struct PostgresStoreOptions {
  std::string url;  // libpq connection URI, "postgresql://..." or "postgres://..."
  // A claimed submission whose lease is not renewed for this long is queued again.
  int64_t lease_timeout_ms = 30'000;
};

// True for a --store value that names PostgreSQL.
bool is_postgres_url(const std::string& store);

// Connects, creates or checks the schema (refusing one newer than this build knows) and
// starts listening. Throws StoreError naming the server (never its password) and why.
std::unique_ptr<SubmissionStore> open_postgres_store(const PostgresStoreOptions& options);

}  // namespace cutor
