// PostgresSubmissionStore: see postgres_submission_store.h for leases and notification.
//
// Schema (version 3, in table cutor_schema; version 2 added test_results and runtimes,
// version 3 submission_counts):
//   submissions  one row per submission, the request (request_codec's format) in it as
//                bytea: PostgreSQL keeps a large value out of line (TOAST), so status
//                writes do not copy it. Lease: lease_owner (a store instance), lease_at
//                (the server's clock, never a worker's), lease_attempt (bumped on every
//                claim and re-queue).
//   stages       (seq, stage) -> one stage's result; a missing row means PENDING.
//   test_results (seq, idx) -> one finished test (request_codec's test result format); a
//                missing row is a test not run yet.
//   runtimes     the runtime catalogue; ids from a sequence, never given again.
//   submission_counts  (status, result, shard) -> a part of the count of submissions,
//                kept by a trigger as rows change; a shard per backend (pid % 16) so
//                concurrent transactions rarely wait on one counter row.
// Every integer column is bigint so results read as one binary type.
#include "store/postgres_submission_store.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "store/pg_connection.h"
#include "store/postgres_store_impl.h"
#include "store/request_codec.h"
#include "store/store_rows.h"

namespace cutor::pg_store {
namespace {

using pg::Params;
using store_rows::enum_from_db;

constexpr int64_t kSchemaVersion = 3;
constexpr int64_t kSchemaLockKey = 0x637574'6f7201;  // pg_advisory_xact_lock keys
constexpr int64_t kInsertLockKey = 0x637574'6f7202;
constexpr size_t kMaxIdleConnections = 16;

// A new database gets version 1, then every migration: one definition of each table.
constexpr const char* kSchemaV1Sql = R"sql(
CREATE TABLE submissions (
  seq            bigserial PRIMARY KEY,
  id             text   NOT NULL UNIQUE,
  status         bigint NOT NULL,
  result         bigint,
  created_at_ms  bigint NOT NULL,
  finished_at_ms bigint,
  lease_owner    text,
  lease_at       timestamptz,
  lease_attempt  bigint NOT NULL DEFAULT 0,
  request        bytea  NOT NULL
);
CREATE INDEX submissions_by_status ON submissions(status, seq);
CREATE INDEX submissions_claimable ON submissions(seq) WHERE status = 0 AND lease_owner IS NULL;
CREATE INDEX submissions_leased ON submissions(lease_at) WHERE lease_owner IS NOT NULL;
CREATE INDEX submissions_by_finish ON submissions(finished_at_ms) WHERE finished_at_ms IS NOT NULL;
CREATE TABLE stages (
  seq          bigint NOT NULL REFERENCES submissions(seq) ON DELETE CASCADE,
  stage        bigint NOT NULL,
  status       bigint NOT NULL,
  code         bigint,
  signal       bigint,
  wall_time_us bigint NOT NULL DEFAULT 0,
  cpu_time_us  bigint NOT NULL DEFAULT 0,
  memory_bytes bigint NOT NULL DEFAULT 0,
  truncated    bigint NOT NULL DEFAULT 0,
  stdout       bytea  NOT NULL DEFAULT '',
  stderr       bytea  NOT NULL DEFAULT '',
  output       bytea  NOT NULL DEFAULT '',
  PRIMARY KEY (seq, stage)
);
INSERT INTO cutor_schema (version) VALUES (1);
)sql";

constexpr const char* kMigrateTo2Sql = R"sql(
CREATE TABLE test_results (
  seq    bigint NOT NULL REFERENCES submissions(seq) ON DELETE CASCADE,
  idx    bigint NOT NULL,
  result bytea  NOT NULL,
  PRIMARY KEY (seq, idx)
);
CREATE TABLE runtimes (
  id         bigserial PRIMARY KEY,
  name       text NOT NULL,
  version    text NOT NULL,
  definition text NOT NULL,
  UNIQUE (name, version)
);
INSERT INTO cutor_schema (version) VALUES (2);
)sql";

// submission_counts (result -1: none); see the schema comment above.
constexpr const char* kMigrateTo3Sql = R"sql(
CREATE TABLE submission_counts (
  status bigint NOT NULL,
  result bigint NOT NULL,
  shard  bigint NOT NULL,
  n      bigint NOT NULL,
  PRIMARY KEY (status, result, shard)
);
LOCK TABLE submissions IN SHARE MODE;
INSERT INTO submission_counts (status, result, shard, n)
  SELECT status, coalesce(result, -1), 0, count(*) FROM submissions GROUP BY 1, 2;
CREATE FUNCTION cutor_count_submissions() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  part bigint := pg_backend_pid() % 16;
BEGIN
  IF TG_OP <> 'INSERT' THEN
    INSERT INTO submission_counts VALUES (OLD.status, coalesce(OLD.result, -1), part, -1)
      ON CONFLICT (status, result, shard) DO UPDATE SET n = submission_counts.n - 1;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    INSERT INTO submission_counts VALUES (NEW.status, coalesce(NEW.result, -1), part, 1)
      ON CONFLICT (status, result, shard) DO UPDATE SET n = submission_counts.n + 1;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER submission_counts_insert_delete AFTER INSERT OR DELETE ON submissions
  FOR EACH ROW EXECUTE FUNCTION cutor_count_submissions();
CREATE TRIGGER submission_counts_update AFTER UPDATE OF status, result ON submissions
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.result IS DISTINCT FROM NEW.result)
  EXECUTE FUNCTION cutor_count_submissions();
INSERT INTO cutor_schema (version) VALUES (3);
)sql";

// A submission's columns then its stages' (LEFT JOIN: NULL stage columns for none);
// read_rows() decodes them. `s` is the submission row source.
#define CUTOR_PG_COLUMNS                                                           \
  "s.seq, s.id, s.status, s.result, s.created_at_ms, s.finished_at_ms, s.request," \
  " st.stage, st.status, st.code, st.signal, st.wall_time_us, st.cpu_time_us,"     \
  " st.memory_bytes, st.truncated, st.stdout, st.stderr, st.output"
#define CUTOR_PG_JOIN_STAGES " LEFT JOIN stages st ON st.seq = s.seq"
// Appended to an UPDATE's WHERE: $N is this store's lease attempt, NULL when it holds none.
#define CUTOR_PG_LEASE_HELD(n) " AND ($" n "::bigint IS NULL OR lease_attempt = $" n ")"

constexpr const char* kNotifySql = "SELECT pg_notify('cutor_changes', $1)";

// Rows of CUTOR_PG_COLUMNS, grouped by submission in the result's order.
std::vector<Submission> read_rows(const pg::Result& r) {
  std::vector<Submission> out;
  for (int row = 0; row < r.rows(); ++row) {
    int64_t seq = r.int64(row, 0);
    if (out.empty() || out.back().seq != seq) {
      Submission s;
      s.seq = seq;
      s.id = r.bytes(row, 1);
      s.status = enum_from_db<SubmissionStatus>(r.int64(row, 2), 5, "status");
      if (!r.is_null(row, 3))
        s.result = enum_from_db<Result>(r.int64(row, 3), kResultCount - 1, "result");
      s.created_at_ms = r.int64(row, 4);
      s.finished_at_ms = r.opt_int64(row, 5);
      try {
        s.request = decode_request(r.bytes(row, 6));
      } catch (const StoreError& e) {
        throw StoreError(std::string(e.what()) + " (submission " + s.id + ")");
      }
      out.push_back(std::move(s));
    }
    if (r.is_null(row, 7)) continue;
    int64_t index = r.int64(row, 7);
    if (index < 0 || index > 3) throw StoreError("corrupt row: stage " + std::to_string(index));
    StageResult& st = out.back().stages[index];
    st.status = enum_from_db<StageStatus>(r.int64(row, 8), 10, "stage status");
    if (auto c = r.opt_int64(row, 9)) st.code = static_cast<int>(*c);
    if (auto sg = r.opt_int64(row, 10)) st.signal = static_cast<int>(*sg);
    st.wall_time_us = r.int64(row, 11);
    st.cpu_time_us = r.int64(row, 12);
    st.memory_bytes = r.int64(row, 13);
    st.truncated = r.int64(row, 14) != 0;
    st.stdout_data = r.bytes(row, 15);
    st.stderr_data = r.bytes(row, 16);
    st.output = r.bytes(row, 17);
  }
  return out;
}

// Fills in the tests of each submission of `rows` that has any, from test_results.
void read_tests(pg::Connection& c, std::vector<Submission>& rows) {
  int64_t low = std::numeric_limits<int64_t>::max(), high = 0;
  for (const Submission& s : rows) {
    if (s.request.tests.empty()) continue;
    low = std::min(low, s.seq);
    high = std::max(high, s.seq);
  }
  if (high == 0) return;
  pg::Result r = c.exec("read test results",
                        "SELECT seq, idx, result FROM test_results WHERE seq BETWEEN $1 AND $2",
                        Params().add(low).add(high));
  std::unordered_map<int64_t, std::vector<std::optional<TestResult>>> by_seq;
  for (const Submission& s : rows)
    if (!s.request.tests.empty()) by_seq[s.seq].resize(s.request.tests.size());
  for (int row = 0; row < r.rows(); ++row) {
    auto it = by_seq.find(r.int64(row, 0));
    if (it == by_seq.end()) continue;  // a submission in the range but not in `rows`
    const int64_t index = r.int64(row, 1);
    if (index < 0 || index >= static_cast<int64_t>(it->second.size()))
      throw StoreError("corrupt row: test index " + std::to_string(index));
    it->second[index] = decode_test_result(r.bytes(row, 2));
  }
  for (Submission& s : rows)
    if (!s.request.tests.empty()) store_rows::complete_tests(s, std::move(by_seq[s.seq]));
}

void write_stage(pg::Connection& c, int64_t seq, Stage stage, const StageResult& r) {
  Params p;
  p.add(seq).add(static_cast<int64_t>(stage)).add(static_cast<int64_t>(r.status));
  p.add(r.code ? std::optional<int64_t>(*r.code) : std::nullopt);
  p.add(r.signal ? std::optional<int64_t>(*r.signal) : std::nullopt);
  p.add(r.wall_time_us).add(r.cpu_time_us).add(r.memory_bytes).add(int64_t{r.truncated});
  p.add_bytea(r.stdout_data).add_bytea(r.stderr_data).add_bytea(r.output);
  c.exec("write stage",
         "INSERT INTO stages (seq, stage, status, code, signal, wall_time_us, cpu_time_us,"
         " memory_bytes, truncated, stdout, stderr, output)"
         " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
         " ON CONFLICT (seq, stage) DO UPDATE SET status = EXCLUDED.status,"
         " code = EXCLUDED.code, signal = EXCLUDED.signal,"
         " wall_time_us = EXCLUDED.wall_time_us, cpu_time_us = EXCLUDED.cpu_time_us,"
         " memory_bytes = EXCLUDED.memory_bytes, truncated = EXCLUDED.truncated,"
         " stdout = EXCLUDED.stdout, stderr = EXCLUDED.stderr, output = EXCLUDED.output",
         p);
}

void skip_unfinished_stages(pg::Connection& c, int64_t seq) {
  // A skipped stage shows nothing (SPEC §3), even if it had printed while RUNNING.
  c.exec("skip unfinished stages",
         "UPDATE stages SET status = 2, code = NULL, signal = NULL, wall_time_us = 0,"
         " cpu_time_us = 0, memory_bytes = 0, truncated = 0, stdout = '', stderr = '',"
         " output = '' WHERE seq = $1 AND status IN (0, 1)",
         Params().add(seq));
  c.exec("skip missing stages",
         "INSERT INTO stages (seq, stage, status) SELECT $1, g, 2 FROM generate_series(0, 3) g"
         " ON CONFLICT (seq, stage) DO NOTHING",
         Params().add(seq));
}

}  // namespace

PostgresSubmissionStore::PostgresSubmissionStore(const PostgresStoreOptions& options)
    : options_(options), owner_("pid" + std::to_string(getpid()) + "-" + new_uuid()) {
  if (options_.lease_timeout_ms < 100)
    throw std::invalid_argument("lease timeout must be at least 100 ms");
  create_or_check_schema();
  // Listening before open returns: no change after it can be missed.
  auto listening = std::make_unique<pg::Connection>(options_.url);
  listening->exec("listen", "LISTEN cutor_changes");
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw StoreError("postgresql store: eventfd failed");
  listen_thread_ = std::jthread([this, first = std::move(listening)](std::stop_token st) mutable {
    listen_loop(st, std::move(first));
  });
  lease_thread_ = std::jthread([this](std::stop_token st) { lease_loop(st); });
}

PostgresSubmissionStore::~PostgresSubmissionStore() {
  lease_thread_.request_stop();
  listen_thread_.request_stop();
  uint64_t one = 1;
  if (::write(wake_fd_, &one, sizeof one) < 0) { /* the thread also sees the stop token */
  }
  lease_thread_ = {};
  listen_thread_ = {};
  ::close(wake_fd_);
}

PostgresSubmissionStore::Conn::Conn(PostgresSubmissionStore& store) : store_(store) {
  for (;;) {
    {
      std::lock_guard lock(store_.pool_mu_);
      if (store_.idle_.empty()) break;
      c_ = std::move(store_.idle_.back());
      store_.idle_.pop_back();
    }
    // An idle pooled connection has nothing to read; a server that restarted has closed
    // it (readable: its goodbye and EOF). So a call after a restart connects again
    // instead of failing on a dead connection.
    pollfd p{PQsocket(c_->handle()), POLLIN, 0};
    if (p.fd >= 0 && ::poll(&p, 1, 0) == 0) return;
    c_.reset();
  }
  c_ = std::make_unique<pg::Connection>(store_.options_.url);
}

PostgresSubmissionStore::Conn::~Conn() {
  // A connection that broke (server restarted) or was left in a transaction is dropped.
  if (!c_->reusable()) return;
  std::lock_guard lock(store_.pool_mu_);
  if (store_.idle_.size() < kMaxIdleConnections) store_.idle_.push_back(std::move(c_));
}

void PostgresSubmissionStore::create_or_check_schema() {
  Conn c(*this);
  pg::Transaction tx(*c);
  // Several processes may start at once: one creates, the others then see it.
  c->exec("lock schema", "SELECT pg_advisory_xact_lock($1)", Params().add(kSchemaLockKey));
  c->exec("create schema table",
          "CREATE TABLE IF NOT EXISTS cutor_schema (version bigint NOT NULL)");
  pg::Result r = c->exec("read schema version", "SELECT max(version) FROM cutor_schema");
  std::optional<int64_t> version = r.opt_int64(0, 0);
  if (!version) {
    c->exec_script("create schema", kSchemaV1Sql);
    version = 1;
  }
  if (*version > kSchemaVersion) {
    throw StoreError(c->label() + ": schema version " + std::to_string(*version) +
                     " is newer than the " + std::to_string(kSchemaVersion) +
                     " this build knows; upgrade cutor");
  }
  if (*version == 1) {
    c->exec_script("migrate schema 1 to 2", kMigrateTo2Sql);
    version = 2;
  }
  if (*version == 2) c->exec_script("migrate schema 2 to 3", kMigrateTo3Sql);
  tx.commit();
}

std::string PostgresSubmissionStore::payload(const std::string& id, SubmissionStatus status) const {
  return std::to_string(static_cast<int>(status)) + "|" + owner_ + "|" + id;
}

std::optional<int64_t> PostgresSubmissionStore::held_attempt(const std::string& id) {
  std::lock_guard lock(leases_mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return std::nullopt;
  return it->second;
}

void PostgresSubmissionStore::drop_lease(const std::string& id) {
  std::lock_guard lock(leases_mu_);
  leases_.erase(id);
}

int64_t PostgresSubmissionStore::insert(const Submission& s, int64_t max_queue) {
  std::string body = encode_request(s.request);
  int64_t seq = 0;
  {
    Conn c(*this);
    pg::Transaction tx(*c);
    if (max_queue > 0) {
      // Inserts queue up here so two hosts cannot both take the last place.
      c->exec("lock inserts", "SELECT pg_advisory_xact_lock($1)", Params().add(kInsertLockKey));
      pg::Result r =
          c->exec("count unfinished", "SELECT count(*)::bigint FROM submissions WHERE status < 5");
      int64_t unfinished = r.int64(0, 0);
      if (unfinished >= max_queue)
        throw QueueFullError("queue full: " + std::to_string(unfinished) +
                             " unfinished submissions (max " + std::to_string(max_queue) + ")");
    }
    pg::Result r = c->exec("insert submission",
                           "INSERT INTO submissions (id, status, created_at_ms, request)"
                           " VALUES ($1, 0, $2, $3) RETURNING seq",
                           Params().add_text(s.id).add(s.created_at_ms).add_bytea(body));
    seq = r.int64(0, 0);
    c->exec("notify", kNotifySql, Params().add_text(payload(s.id, SubmissionStatus::kQueued)));
    tx.commit();
  }
  notify_claimers();
  notify_listeners(s.id, SubmissionStatus::kQueued);
  return seq;
}

std::optional<Submission> PostgresSubmissionStore::get(const std::string& id) {
  Conn c(*this);
  // One statement: the row and its stages come from one snapshot.
  pg::Result r = c->exec("get",
                         "SELECT " CUTOR_PG_COLUMNS " FROM submissions s" CUTOR_PG_JOIN_STAGES
                         " WHERE s.id = $1",
                         Params().add_text(id));
  auto rows = read_rows(r);
  if (rows.empty()) return std::nullopt;
  read_tests(*c, rows);
  return std::move(rows.front());
}

SubmissionPage PostgresSubmissionStore::list(std::optional<SubmissionStatus> status, int limit,
                                             const std::optional<std::string>& cursor) {
  if (limit < 1) throw std::invalid_argument("list limit must be at least 1");
  int64_t before = cursor ? store_rows::parse_cursor(*cursor) : std::numeric_limits<int64_t>::max();
  Conn c(*this);
  // One row more than asked tells whether another page exists.
  Params p;
  p.add(before)
      .add(int64_t{limit} + 1)
      .add(status ? std::optional<int64_t>(static_cast<int64_t>(*status)) : std::nullopt);
  pg::Result r = c->exec(
      "list",
      "SELECT " CUTOR_PG_COLUMNS
      " FROM (SELECT * FROM submissions WHERE seq < $1"
      " AND ($3::bigint IS NULL OR status = $3) ORDER BY seq DESC LIMIT $2) s" CUTOR_PG_JOIN_STAGES
      " ORDER BY s.seq DESC, st.stage",
      p);
  SubmissionPage page;
  page.submissions = read_rows(r);
  if (page.submissions.size() > static_cast<size_t>(limit)) {
    page.submissions.resize(limit);
    page.next_cursor = store_rows::make_cursor(page.submissions.back().seq);
  }
  read_tests(*c, page.submissions);
  return page;
}

std::optional<Submission> PostgresSubmissionStore::try_claim() {
  Conn c(*this);
  // SKIP LOCKED: a row another claimer is taking right now is passed over, not waited on.
  pg::Result r =
      c->exec("claim",
              "WITH s AS (UPDATE submissions SET lease_owner = $1, lease_at = now(),"
              " lease_attempt = lease_attempt + 1"
              " WHERE seq = (SELECT seq FROM submissions WHERE status = 0 AND lease_owner IS NULL"
              "              ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)"
              " RETURNING *)"
              " SELECT " CUTOR_PG_COLUMNS ", s.lease_attempt FROM s" CUTOR_PG_JOIN_STAGES,
              Params().add_text(owner_));
  if (r.rows() == 0) return std::nullopt;
  int64_t attempt = r.int64(0, 18);
  auto rows = read_rows(r);
  store_rows::complete_tests(rows.front(), {});  // a claimed submission has run no test
  {
    std::lock_guard lock(leases_mu_);
    leases_[rows.front().id] = attempt;
  }
  return std::move(rows.front());
}

std::optional<Submission> PostgresSubmissionStore::claim_next(std::stop_token stop) {
  std::unique_lock lock(claim_mu_);
  while (!stop.stop_requested()) {
    uint64_t seen = claim_generation_;
    lock.unlock();
    if (auto s = try_claim()) return s;
    lock.lock();
    // Woken by an insert or re-queue here or (through NOTIFY) anywhere, or by `stop`.
    if (!claim_cv_.wait(lock, stop, [&] { return claim_generation_ != seen; })) break;
  }
  return std::nullopt;
}

bool PostgresSubmissionStore::set_status(const std::string& id, SubmissionStatus status) {
  if (status == SubmissionStatus::kFinished)
    throw std::invalid_argument("set_status(FINISHED): use finish(), which records the result");
  return advance(id, status, {});
}

bool PostgresSubmissionStore::set_stage(const std::string& id, Stage stage, const StageResult& r) {
  return advance(id, std::nullopt, {{stage, r}});
}

bool PostgresSubmissionStore::advance(const std::string& id, std::optional<SubmissionStatus> status,
                                      const std::vector<StageWrite>& stages) {
  if (status == SubmissionStatus::kFinished)
    throw std::invalid_argument("advance(FINISHED): use finish(), which records the result");
  SubmissionStatus now;
  {
    Conn c(*this);
    pg::Transaction tx(*c);
    pg::Result r = c->exec(
        "find unfinished",
        "SELECT seq, status FROM submissions WHERE id = $1 AND status != 5" CUTOR_PG_LEASE_HELD(
            "2") " FOR UPDATE",
        Params().add_text(id).add(held_attempt(id)));
    if (r.rows() == 0) return false;
    int64_t seq = r.int64(0, 0);
    now = enum_from_db<SubmissionStatus>(r.int64(0, 1), 5, "status");
    if (status && *status != now) {
      c->exec("set status", "UPDATE submissions SET status = $2 WHERE seq = $1",
              Params().add(seq).add(static_cast<int64_t>(*status)));
      now = *status;
    }
    for (const StageWrite& w : stages) write_stage(*c, seq, w.stage, w.result);
    c->exec("notify", kNotifySql, Params().add_text(payload(id, now)));
    tx.commit();
  }
  notify_listeners(id, now);
  return true;
}

bool PostgresSubmissionStore::write_tests(const std::string& id,
                                          const std::vector<TestWrite>& tests) {
  SubmissionStatus now;
  {
    Conn c(*this);
    pg::Transaction tx(*c);
    pg::Result r = c->exec(
        "find unfinished",
        "SELECT seq, status FROM submissions WHERE id = $1 AND status != 5" CUTOR_PG_LEASE_HELD(
            "2") " FOR UPDATE",
        Params().add_text(id).add(held_attempt(id)));
    if (r.rows() == 0) return false;
    int64_t seq = r.int64(0, 0);
    now = enum_from_db<SubmissionStatus>(r.int64(0, 1), 5, "status");
    for (const TestWrite& w : tests)
      c->exec("write test result",
              "INSERT INTO test_results (seq, idx, result) VALUES ($1, $2, $3)"
              " ON CONFLICT (seq, idx) DO UPDATE SET result = EXCLUDED.result",
              Params()
                  .add(seq)
                  .add(static_cast<int64_t>(w.index))
                  .add_bytea(encode_test_result(w.result)));
    c->exec("notify", kNotifySql, Params().add_text(payload(id, now)));
    tx.commit();
  }
  notify_listeners(id, now);
  return true;
}

int64_t PostgresSubmissionStore::put_runtime(const StoredRuntime& r) {
  Conn c(*this);
  pg::Result res = c->exec(
      "put runtime",
      "INSERT INTO runtimes (name, version, definition) VALUES ($1, $2, $3)"
      " ON CONFLICT (name, version) DO UPDATE SET definition = EXCLUDED.definition RETURNING id",
      Params().add_text(r.name).add_text(r.version).add_text(r.definition_json));
  return res.int64(0, 0);
}

std::vector<StoredRuntime> PostgresSubmissionStore::list_runtimes() {
  Conn c(*this);
  pg::Result r = c->exec("list runtimes",
                         "SELECT name, version, definition, id FROM runtimes"
                         " ORDER BY name COLLATE \"C\", version COLLATE \"C\"");
  std::vector<StoredRuntime> out;
  for (int i = 0; i < r.rows(); ++i)
    out.push_back({r.bytes(i, 0), r.bytes(i, 1), r.bytes(i, 2), r.int64(i, 3)});
  return out;
}

bool PostgresSubmissionStore::delete_runtime(const std::string& name, const std::string& version) {
  Conn c(*this);
  pg::Result r = c->exec("delete runtime",
                         "DELETE FROM runtimes WHERE name = $1 AND version = $2 RETURNING id",
                         Params().add_text(name).add_text(version));
  return r.rows() == 1;
}

bool PostgresSubmissionStore::finish(const std::string& id, Result result) {
  return finish_with_stages(id, result, {});
}

bool PostgresSubmissionStore::finish_with_stages(const std::string& id, Result result,
                                                 const std::vector<StageWrite>& stages) {
  std::optional<int64_t> attempt = held_attempt(id);
  {
    Conn c(*this);
    pg::Transaction tx(*c);
    pg::Result r = c->exec(
        "finish",
        "UPDATE submissions SET status = 5, result = $2, finished_at_ms = $3,"
        " lease_owner = NULL, lease_at = NULL"
        " WHERE id = $1 AND status != 5" CUTOR_PG_LEASE_HELD("4") " RETURNING seq",
        Params().add_text(id).add(static_cast<int64_t>(result)).add(now_unix_ms()).add(attempt));
    if (r.rows() == 0) {
      drop_lease(id);  // finished elsewhere, cancelled, or our lease was lost
      return false;
    }
    int64_t seq = r.int64(0, 0);
    for (const StageWrite& w : stages) write_stage(*c, seq, w.stage, w.result);
    skip_unfinished_stages(*c, seq);
    c->exec("notify", kNotifySql, Params().add_text(payload(id, SubmissionStatus::kFinished)));
    tx.commit();
  }
  drop_lease(id);
  notify_listeners(id, SubmissionStatus::kFinished);
  return true;
}

CancelOutcome PostgresSubmissionStore::cancel(const std::string& id) {
  {
    Conn c(*this);
    pg::Transaction tx(*c);
    pg::Result r =
        c->exec("find for cancel", "SELECT seq, status FROM submissions WHERE id = $1 FOR UPDATE",
                Params().add_text(id));
    if (r.rows() == 0) return CancelOutcome::kNotFound;
    int64_t seq = r.int64(0, 0);
    auto status = enum_from_db<SubmissionStatus>(r.int64(0, 1), 5, "status");
    if (status == SubmissionStatus::kFinished) return CancelOutcome::kAlreadyFinished;
    c->exec("cancel",
            "UPDATE submissions SET status = 5, result = 8, finished_at_ms = $2,"
            " lease_owner = NULL, lease_at = NULL WHERE seq = $1",
            Params().add(seq).add(now_unix_ms()));
    if (status == SubmissionStatus::kQueued) {
      // Never ran (even if claimed): nothing it may have written is shown.
      c->exec("delete stages", "DELETE FROM stages WHERE seq = $1", Params().add(seq));
      c->exec("delete test results", "DELETE FROM test_results WHERE seq = $1", Params().add(seq));
    } else {
      // The sandbox is about to be killed: its stage ends SIGKILLed with its output so far.
      c->exec("signal running stage",
              "UPDATE stages SET status = 5, signal = 9, code = NULL WHERE seq = $1 AND status = 1",
              Params().add(seq));
    }
    skip_unfinished_stages(*c, seq);
    c->exec("notify", kNotifySql, Params().add_text(payload(id, SubmissionStatus::kFinished)));
    tx.commit();
  }
  notify_listeners(id, SubmissionStatus::kFinished);
  return CancelOutcome::kCancelled;
}

int64_t PostgresSubmissionStore::requeue_unfinished() {
  return requeue_expired();
}

int64_t PostgresSubmissionStore::delete_finished_before(int64_t finished_before_ms, int limit) {
  Conn c(*this);
  // Stages go with their submission (ON DELETE CASCADE); the request is in the row.
  return c
      ->exec("delete expired",
             "DELETE FROM submissions WHERE seq IN (SELECT seq FROM submissions"
             " WHERE finished_at_ms < $1 AND status = 5 ORDER BY finished_at_ms LIMIT $2)",
             Params().add(finished_before_ms).add(int64_t{limit}))
      .affected();
}

int64_t PostgresSubmissionStore::count_all() {
  Conn c(*this);
  return c->exec("count all", "SELECT coalesce(sum(n), 0)::bigint FROM submission_counts")
      .int64(0, 0);
}

int64_t PostgresSubmissionStore::count_unfinished() {
  Conn c(*this);
  return c
      ->exec("count unfinished",
             "SELECT coalesce(sum(n), 0)::bigint FROM submission_counts WHERE status < 5")
      .int64(0, 0);
}

std::vector<std::pair<std::string, int64_t>> PostgresSubmissionStore::count_by_status() {
  std::vector<std::pair<std::string, int64_t>> counts;
  for (int i = 0; i <= static_cast<int>(SubmissionStatus::kFinished); ++i)
    counts.emplace_back(status_name(static_cast<SubmissionStatus>(i)), 0);
  Conn c(*this);
  pg::Result r = c->exec("count by status",
                         "SELECT status, sum(n)::bigint FROM submission_counts GROUP BY status");
  for (int i = 0; i < r.rows(); ++i)
    counts[static_cast<int>(enum_from_db<SubmissionStatus>(r.int64(i, 0), 5, "status"))].second =
        r.int64(i, 1);
  return counts;
}

std::vector<std::pair<std::string, int64_t>> PostgresSubmissionStore::count_by_result() {
  std::vector<std::pair<std::string, int64_t>> counts;
  for (int i = 0; i < kResultCount; ++i)
    counts.emplace_back(result_name(static_cast<Result>(i)), 0);
  Conn c(*this);
  pg::Result r = c->exec("count by result",
                         "SELECT result, sum(n)::bigint FROM submission_counts"
                         " WHERE result >= 0 GROUP BY result");
  for (int i = 0; i < r.rows(); ++i)
    counts[static_cast<int>(enum_from_db<Result>(r.int64(i, 0), kResultCount - 1, "result"))]
        .second = r.int64(i, 1);
  return counts;
}

#undef CUTOR_PG_COLUMNS
#undef CUTOR_PG_JOIN_STAGES
#undef CUTOR_PG_LEASE_HELD

}  // namespace cutor::pg_store

namespace cutor {

bool is_postgres_url(const std::string& store) {
  return store.starts_with("postgresql://") || store.starts_with("postgres://");
}

std::unique_ptr<SubmissionStore> open_postgres_store(const PostgresStoreOptions& options) {
  return std::make_unique<pg_store::PostgresSubmissionStore>(options);
}

}  // namespace cutor
