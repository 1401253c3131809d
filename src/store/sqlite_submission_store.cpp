// SqliteSubmissionStore: the request store on an embedded SQLite database in WAL mode.
//
// Schema (version 2, PRAGMA user_version; a version 1 database gains test_results):
//   submissions  one small row per submission: seq, id, status, result, times, lease.
//                Status writes touch only this row, never the (possibly large) request.
//   requests     seq -> the request, one BLOB in request_codec's binary format.
//   stages       key = seq*4 + stage -> one stage's result, raw output as BLOBs. A
//                missing row means PENDING with nothing in it, so an insert writes no
//                stage rows at all.
//   test_results (seq, index) -> one finished test's result (request_codec's test result
//                BLOB); a missing row is a test not run yet (SKIPPED once FINISHED).
//   runtimes     the runtime catalogue: (name, version) -> its definition (JSON text);
//                AUTOINCREMENT, so a deleted entry's id is never given again.
// Enums are stored as their integer values; the static_asserts below pin them, so
// reordering an enum in src/model breaks the build instead of old databases.
//
// Concurrency: one writer connection behind writer_mu_; reads use a pool of read-only
// connections (WAL lets them run beside the writer) or, for ":memory:", the writer.
// Listeners and claim wake-ups run after the commit, outside every database mutex.
//
// Durability by group commit: the writer runs with synchronous = NORMAL, so a commit only
// write()s its WAL frames. A commit that must survive a power loss (insert, finish, cancel,
// requeue) takes a ticket under writer_mu_ and, after releasing it, waits in make_durable()
// until an fdatasync of the WAL file that started after its commit has returned. One
// caller at a time runs that fdatasync for every commit made so far; the callers that
// arrive meanwhile wait for it or for the next one. So concurrent requests share fsyncs,
// and no fsync is ever run with writer_mu_ held (other writers and the executor's progress
// writes go on meanwhile). What a caller is told is unchanged: when insert() returns, its
// row is on disk. Progress writes (claims, statuses, stage results) get no fsync of their
// own; the next durable commit's fdatasync carries them along.
//
// Checkpoints: wal_autocheckpoint is off, so no commit ever copies the WAL into the
// database (and waits on that copy's fsyncs); sqlite_checkpointer.h's thread does it.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <stdexcept>

#include "store/request_codec.h"
#include "store/sqlite_checkpointer.h"
#include "store/sqlite_connection.h"
#include "store/store_rows.h"
#include "store/submission_store.h"

namespace cutor {
namespace {

using sqlite::Connection;
using sqlite::Query;
using sqlite::Transaction;

constexpr int64_t kSchemaVersion = 3;
constexpr int kBusyTimeoutMs = 5000;
constexpr size_t kMaxIdleReaders = 16;
constexpr int kSigkill = 9;

// Literal SQL fragments must agree with these (the claimable index needs literals).
// A new database gets version 1, then every migration: one definition of each table.
constexpr const char* kSchemaV1Sql = R"sql(
CREATE TABLE submissions (
  seq            INTEGER PRIMARY KEY AUTOINCREMENT,
  id             TEXT    NOT NULL UNIQUE,
  status         INTEGER NOT NULL,
  result         INTEGER,
  created_at_ms  INTEGER NOT NULL,
  finished_at_ms INTEGER,
  lease_owner    TEXT,
  lease_at_ms    INTEGER
);
CREATE INDEX submissions_by_status ON submissions(status, seq);
CREATE INDEX submissions_claimable ON submissions(seq) WHERE status = 0 AND lease_owner IS NULL;
CREATE INDEX submissions_by_result ON submissions(result) WHERE result IS NOT NULL;
CREATE INDEX submissions_by_finish ON submissions(finished_at_ms) WHERE finished_at_ms IS NOT NULL;
CREATE TABLE requests (
  seq  INTEGER PRIMARY KEY,
  body BLOB NOT NULL
);
CREATE TABLE stages (
  key          INTEGER PRIMARY KEY,
  status       INTEGER NOT NULL,
  code         INTEGER,
  signal       INTEGER,
  wall_time_us INTEGER NOT NULL DEFAULT 0,
  cpu_time_us  INTEGER NOT NULL DEFAULT 0,
  memory_bytes INTEGER NOT NULL DEFAULT 0,
  truncated    INTEGER NOT NULL DEFAULT 0,
  stdout       BLOB    NOT NULL DEFAULT x'',
  stderr       BLOB    NOT NULL DEFAULT x'',
  output       BLOB    NOT NULL DEFAULT x''
);
PRAGMA user_version = 1;
)sql";

// Version 1 -> 2: test cases and the runtime catalogue.
constexpr const char* kMigrateTo2Sql = R"sql(
CREATE TABLE test_results (
  seq    INTEGER NOT NULL,
  idx    INTEGER NOT NULL,
  result BLOB    NOT NULL,
  PRIMARY KEY (seq, idx)
) WITHOUT ROWID;
CREATE TABLE runtimes (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  name       TEXT NOT NULL,
  version    TEXT NOT NULL,
  definition TEXT NOT NULL,
  UNIQUE (name, version)
);
PRAGMA user_version = 2;
)sql";

// Version 2 -> 3: counts of submissions by (status, result), kept by triggers as rows
// change, so /metrics and /info read a few rows instead of scanning every submission.
// result -1: none (not finished).
constexpr const char* kMigrateTo3Sql = R"sql(
CREATE TABLE submission_counts (
  status INTEGER NOT NULL,
  result INTEGER NOT NULL,
  n      INTEGER NOT NULL,
  PRIMARY KEY (status, result)
) WITHOUT ROWID;
INSERT INTO submission_counts (status, result, n)
  SELECT status, coalesce(result, -1), count(*) FROM submissions GROUP BY 1, 2;
CREATE TRIGGER submission_counts_insert AFTER INSERT ON submissions BEGIN
  INSERT INTO submission_counts VALUES (NEW.status, coalesce(NEW.result, -1), 1)
    ON CONFLICT (status, result) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER submission_counts_delete AFTER DELETE ON submissions BEGIN
  UPDATE submission_counts SET n = n - 1
    WHERE status = OLD.status AND result = coalesce(OLD.result, -1);
END;
CREATE TRIGGER submission_counts_update AFTER UPDATE OF status, result ON submissions
  WHEN OLD.status IS NOT NEW.status OR OLD.result IS NOT NEW.result BEGIN
  UPDATE submission_counts SET n = n - 1
    WHERE status = OLD.status AND result = coalesce(OLD.result, -1);
  INSERT INTO submission_counts VALUES (NEW.status, coalesce(NEW.result, -1), 1)
    ON CONFLICT (status, result) DO UPDATE SET n = n + 1;
END;
PRAGMA user_version = 3;
)sql";

constexpr const char* kFinishIndexSql =
    "CREATE INDEX IF NOT EXISTS submissions_by_finish ON submissions(finished_at_ms)"
    " WHERE finished_at_ms IS NOT NULL";

// Columns read for a submission (the request joined in); read_row() decodes them.
#define CUTOR_SELECT_SUBMISSION                                                       \
  "SELECT s.seq, s.id, s.status, s.result, s.created_at_ms, s.finished_at_ms, r.body" \
  " FROM submissions s JOIN requests r ON r.seq = s.seq"
constexpr const char* kStageSelect =
    "SELECT key, status, code, signal, wall_time_us, cpu_time_us, memory_bytes, truncated, "
    "stdout, stderr, output FROM stages WHERE key BETWEEN ?1 * 4 AND ?1 * 4 + 3";

bool is_memory_path(const std::string& path) {
  return path.empty() || path == ":memory:";
}

bool file_exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// "file:<path>?immutable=1" with the characters a URI path may not hold escaped.
std::string immutable_uri(const std::string& path) {
  std::string uri = "file:";
  for (char ch : path) {
    if (ch == '%' || ch == '?' || ch == '#') {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(ch));
      uri += buf;
    } else {
      uri += ch;
    }
  }
  return uri + "?immutable=1";
}

using store_rows::enum_from_db;
using store_rows::make_cursor;
using store_rows::parse_cursor;

class SqliteSubmissionStore final : public SubmissionStore {
 public:
  explicit SqliteSubmissionStore(const SqliteStoreOptions& options);
  ~SqliteSubmissionStore() override;

  int64_t insert(const Submission& s, int64_t max_queue) override;
  void insert_unsynced(const Submission& s, int64_t max_queue) override;
  void sync_committed() override;
  std::optional<Submission> get(const std::string& id) override;
  SubmissionPage list(std::optional<SubmissionStatus> status, int limit,
                      const std::optional<std::string>& cursor) override;
  std::optional<Submission> claim_next(std::stop_token stop) override;
  bool set_status(const std::string& id, SubmissionStatus status) override;
  bool set_stage(const std::string& id, Stage stage, const StageResult& r) override;
  bool finish(const std::string& id, Result result) override;
  bool advance(const std::string& id, std::optional<SubmissionStatus> status,
               const std::vector<StageWrite>& stages) override;
  bool finish_with_stages(const std::string& id, Result result,
                          const std::vector<StageWrite>& stages) override;
  bool write_tests(const std::string& id, const std::vector<TestWrite>& tests) override;
  int64_t put_runtime(const StoredRuntime& r) override;
  std::vector<StoredRuntime> list_runtimes() override;
  bool delete_runtime(const std::string& name, const std::string& version) override;
  CancelOutcome cancel(const std::string& id) override;
  int64_t requeue_unfinished() override;
  int64_t delete_finished_before(int64_t finished_before_ms, int limit) override;
  int64_t count_all() override;
  int64_t count_unfinished() override;
  std::vector<std::pair<std::string, int64_t>> count_by_status() override;
  std::vector<std::pair<std::string, int64_t>> count_by_result() override;
  int add_listener(ChangeListener l) override;
  void remove_listener(int handle) override;
  void wake_all() override;

 private:
  // A connection to read with, for one call: a pooled read-only connection, or the
  // writer (under its mutex) for an in-memory store. Returned to the pool on exit.
  class ReaderLease {
   public:
    explicit ReaderLease(SqliteSubmissionStore& store);
    ~ReaderLease();
    ReaderLease(const ReaderLease&) = delete;
    ReaderLease& operator=(const ReaderLease&) = delete;
    Connection& conn() { return owned_ ? *owned_ : *store_.writer_; }

   private:
    SqliteSubmissionStore& store_;
    std::unique_ptr<Connection> owned_;
    std::unique_lock<std::mutex> writer_lock_;
  };

  void configure_writer();
  void create_or_check_schema();
  // For a read-only database that SQLite cannot open in WAL mode (no -shm and no
  // right to create one): reopen it immutable. Only when no -wal file exists, so no
  // committed data can live outside the main file and nobody else can be writing.
  bool reopen_immutable_if_possible();
  std::unique_ptr<Connection> open_reader();

  // Readers of the current row set; `c` must be inside a transaction for consistency.
  static Submission read_row(Query& q);
  static void read_stages(Connection& c, Submission& s);
  static std::optional<Submission> read_by_id(Connection& c, const std::string& id);
  static int64_t count_unfinished_on(Connection& c);
  // Stage writes used by finish, cancel and requeue.
  static void write_stage(Connection& c, int64_t seq, Stage stage, const StageResult& r);
  static void skip_unfinished_stages(Connection& c, int64_t seq);
  static void delete_stages(Connection& c, int64_t seq);

  std::optional<Submission> try_claim();
  void notify_claimers();
  void notify_listeners(const std::string& id, SubmissionStatus status);

  const SqliteStoreOptions options_;
  const std::string lease_owner_;
  const bool memory_;
  // How reader connections open the file: the path read-only, or an immutable URI.
  std::string reader_path_;
  int reader_flags_ = SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX;

  // Group commit (see the top of this file). Commits that must survive a power loss
  // (insert, finish, cancel, requeue) call durable_ticket() with writer_mu_ held right after
  // their commit, then make_durable() with it after releasing writer_mu_. Progress writes
  // (claims, statuses, stage results) only survive a crash of the process: if a power loss
  // takes them, the submission simply runs again (SPEC §1 allows that).
  uint64_t durable_ticket();
  // The insert's transaction and notifications; `ticket` is its durable_ticket().
  int64_t insert_committed(const Submission& s, int64_t max_queue, uint64_t& ticket);
  // make_durable(), then tells the listeners even when that threw (the write is committed
  // and visible; a long-poll must not sleep on), then rethrows.
  void durable_then_notify(uint64_t ticket, const std::string& id, SubmissionStatus status);
  // Returns once every commit up to `ticket` is on disk. Throws StoreError (with the path
  // and errno) when the fdatasync that was to cover it failed: the commit is then in the
  // database but may not survive a power loss.
  void make_durable(uint64_t ticket);
  // fdatasync of the WAL file (opened on first use, again if SQLite replaced it; its
  // directory is fsynced whenever a new WAL file is opened). Called by one thread at a time.
  void sync_wal_file();

  std::mutex writer_mu_;
  std::unique_ptr<Connection> writer_;
  // After writer_: destroyed (stopped) before the writer closes. None for ":memory:" or a
  // read-only database.
  std::unique_ptr<sqlite::WalCheckpointer> checkpointer_;

  // Group commit state. commits_ counts durable commits (incremented under writer_mu_ in
  // commit order); synced_ is the highest ticket an fdatasync covered; the last failed
  // fdatasync was to cover the tickets after failed_after_ up to failed_through_.
  const bool group_sync_;  // fsync durable commits at all (synchronous_full, a file)
  std::atomic<uint64_t> commits_{0};
  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  bool syncing_ = false;
  uint64_t synced_ = 0;
  uint64_t failed_after_ = 0;
  uint64_t failed_through_ = 0;
  std::string sync_error_;
  int wal_fd_ = -1;  // only touched by the thread running sync_wal_file()
  dev_t wal_dev_ = 0;
  ino_t wal_ino_ = 0;

  std::mutex readers_mu_;
  std::vector<std::unique_ptr<Connection>> idle_readers_;

  std::mutex claim_mu_;
  std::condition_variable_any claim_cv_;
  uint64_t claim_generation_ = 0;  // bumped whenever something may have become claimable

  std::mutex listeners_mu_;
  int next_listener_ = 1;
  std::vector<std::pair<int, std::shared_ptr<const ChangeListener>>> listeners_;
};

SqliteSubmissionStore::SqliteSubmissionStore(const SqliteStoreOptions& options)
    : options_(options),
      // Unique per open store: a lease names the process incarnation that took it.
      lease_owner_("pid" + std::to_string(getpid()) + "-" + new_uuid()),
      memory_(is_memory_path(options.path)),
      group_sync_(options.synchronous_full && !is_memory_path(options.path)) {
  const std::string path = memory_ ? ":memory:" : options_.path;
  reader_path_ = path;
  writer_ = std::make_unique<Connection>(
      path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX);
  configure_writer();
  try {
    create_or_check_schema();
  } catch (const StoreError&) {
    if (!reopen_immutable_if_possible()) throw;
    create_or_check_schema();
  }
  if (!memory_ && !writer_->read_only())
    checkpointer_ = std::make_unique<sqlite::WalCheckpointer>(
        writer_->handle(), options_.path,
        sqlite::CheckpointPolicy{.interval = options_.checkpoint_interval,
                                 .passive_at_frames = options_.checkpoint_at_wal_frames});
}

SqliteSubmissionStore::~SqliteSubmissionStore() {
  if (wal_fd_ >= 0) ::close(wal_fd_);
}

bool SqliteSubmissionStore::reopen_immutable_if_possible() {
  if (memory_ || !writer_->read_only()) return false;
  if ((sqlite3_errcode(writer_->handle()) & 0xff) != SQLITE_CANTOPEN) return false;
  if (file_exists(options_.path + "-wal")) return false;
  reader_path_ = immutable_uri(options_.path);
  reader_flags_ = SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;
  writer_ = std::make_unique<Connection>(reader_path_, reader_flags_, options_.path);
  sqlite3_busy_timeout(writer_->handle(), kBusyTimeoutMs);
  return true;
}

void SqliteSubmissionStore::configure_writer() {
  Connection& c = *writer_;
  sqlite3_busy_timeout(c.handle(), kBusyTimeoutMs);
  if (c.read_only()) return;  // can neither change the journal mode nor write: reads only
  if (!memory_) {
    c.exec("PRAGMA journal_mode = WAL", "enable WAL");
    // The pragma answers the mode it ended in; anything else means no WAL (e.g. a
    // file system without shared memory) and readers would block the writer.
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(c.handle(), "PRAGMA journal_mode", -1, &st, nullptr);
    std::string mode;
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
      mode = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (mode != "wal")
      throw StoreError("sqlite store " + c.path() + ": could not enable WAL (journal mode is '" +
                       mode + "')");
    // Keep the WAL from staying huge after a burst of large outputs.
    c.exec("PRAGMA journal_size_limit = 67108864", "set journal_size_limit");
    // Checkpoints run on checkpointer_'s thread, never inside a commit.
    c.exec("PRAGMA wal_autocheckpoint = 0", "turn off wal_autocheckpoint");
  }
  // NORMAL: a commit does not fsync; durable commits are synced by make_durable(), many
  // at a time. Checkpoints still sync the WAL before and the database file after.
  c.exec("PRAGMA synchronous = NORMAL", "set synchronous");
}

void SqliteSubmissionStore::create_or_check_schema() {
  Connection& c = *writer_;
  int64_t version = c.query_int("PRAGMA user_version", "read schema version");
  if (version == kSchemaVersion) {
    // The retention sweep's index, which databases made before it lack (same schema:
    // an index changes no row).
    if (!c.read_only()) c.exec(kFinishIndexSql, "create the index of finish times");
    return;
  }
  if (version > kSchemaVersion)
    throw StoreError("sqlite store " + c.path() + ": schema version " + std::to_string(version) +
                     " is newer than the " + std::to_string(kSchemaVersion) +
                     " this build knows; run a newer cutor");
  if (c.read_only())
    throw StoreError("sqlite store " + c.path() + ": database is read-only and has schema " +
                     std::to_string(version) + ", not " + std::to_string(kSchemaVersion));
  Transaction tx(c, Transaction::Kind::kWrite);
  // Another process may have created or migrated it between the check and the lock.
  version = c.query_int("PRAGMA user_version", "read schema version");
  if (version == 0) {
    c.exec(kSchemaV1Sql, "create schema");
    version = 1;
  }
  if (version == 1) {
    c.exec(kMigrateTo2Sql, "migrate schema 1 to 2");
    c.exec(kFinishIndexSql, "create the index of finish times");
    version = 2;
  }
  if (version == 2) c.exec(kMigrateTo3Sql, "migrate schema 2 to 3");
  tx.commit();
}

uint64_t SqliteSubmissionStore::durable_ticket() {
  return commits_.fetch_add(1, std::memory_order_acq_rel) + 1;
}

void SqliteSubmissionStore::make_durable(uint64_t ticket) {
  if (!group_sync_) return;
  std::unique_lock lock(sync_mu_);
  for (;;) {
    // Checked first: a later fdatasync that succeeds does not bring back what the failed
    // one may have lost (the kernel may have dropped those dirty pages).
    if (ticket > failed_after_ && ticket <= failed_through_) throw StoreError(sync_error_);
    if (ticket <= synced_) return;
    if (syncing_) {
      // Someone's fdatasync is running; it may have started before our commit, so
      // when it ends, look again (and lead the next one if it did not cover us).
      sync_cv_.wait(lock);
      continue;
    }
    syncing_ = true;
    // Every commit counted here has already written its WAL frames (the count is taken
    // under writer_mu_ after the commit), so this fdatasync covers all of them.
    const uint64_t covers = commits_.load(std::memory_order_acquire);
    lock.unlock();
    std::string error;
    try {
      sync_wal_file();
    } catch (const StoreError& e) {
      error = e.what();
    }
    lock.lock();
    syncing_ = false;
    if (error.empty()) {
      synced_ = std::max(synced_, covers);
    } else {
      failed_after_ = synced_;
      failed_through_ = covers;
      sync_error_ = std::move(error);
    }
    sync_cv_.notify_all();
  }
}

void SqliteSubmissionStore::durable_then_notify(uint64_t ticket, const std::string& id,
                                                SubmissionStatus status) {
  std::exception_ptr not_durable;
  try {
    make_durable(ticket);
  } catch (const StoreError&) {
    not_durable = std::current_exception();
  }
  notify_listeners(id, status);
  if (not_durable) std::rethrow_exception(not_durable);
}

void SqliteSubmissionStore::sync_wal_file() {
  const std::string wal_path = options_.path + "-wal";
  auto fail = [&](const std::string& what, int err) {
    throw StoreError("sqlite store " + options_.path + ": " + what + " " + wal_path + ": " +
                     std::strerror(err) + " (errno " + std::to_string(err) + ")");
  };
  // SQLite keeps one WAL file while the writer is open, but check it is still the same
  // file, so a sync never goes to a replaced one.
  struct stat st;
  if (::stat(wal_path.c_str(), &st) != 0) fail("stat", errno);
  if (wal_fd_ >= 0 && (st.st_dev != wal_dev_ || st.st_ino != wal_ino_)) {
    ::close(wal_fd_);
    wal_fd_ = -1;
  }
  if (wal_fd_ < 0) {
    // fdatasync flushes the file's data whichever descriptor wrote it.
    int fd = ::open(wal_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("open", errno);
    struct stat opened;
    if (::fstat(fd, &opened) != 0) {
      int err = errno;
      ::close(fd);
      fail("fstat", err);
    }
    // A new WAL file's directory entry must reach the disk too.
    const size_t slash = options_.path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : options_.path.substr(0, slash + 1);
    int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0 || ::fsync(dir_fd) != 0) {
      int err = errno;
      if (dir_fd >= 0) ::close(dir_fd);
      ::close(fd);
      fail("fsync the directory of", err);
    }
    ::close(dir_fd);
    wal_fd_ = fd;
    wal_dev_ = opened.st_dev;
    wal_ino_ = opened.st_ino;
  }
  int rc;
  do rc = ::fdatasync(wal_fd_);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) fail("fdatasync", errno);
}

std::unique_ptr<Connection> SqliteSubmissionStore::open_reader() {
  auto c = std::make_unique<Connection>(reader_path_, reader_flags_, options_.path);
  sqlite3_busy_timeout(c->handle(), kBusyTimeoutMs);
  return c;
}

SqliteSubmissionStore::ReaderLease::ReaderLease(SqliteSubmissionStore& store) : store_(store) {
  if (store_.memory_) {
    writer_lock_ = std::unique_lock(store_.writer_mu_);
    return;
  }
  {
    std::lock_guard lock(store_.readers_mu_);
    if (!store_.idle_readers_.empty()) {
      owned_ = std::move(store_.idle_readers_.back());
      store_.idle_readers_.pop_back();
    }
  }
  if (!owned_) owned_ = store_.open_reader();
}

SqliteSubmissionStore::ReaderLease::~ReaderLease() {
  if (!owned_) return;
  // A connection left inside a transaction by an error would pin an old snapshot.
  if (!sqlite3_get_autocommit(owned_->handle())) return;  // drop it instead
  std::lock_guard lock(store_.readers_mu_);
  if (store_.idle_readers_.size() < kMaxIdleReaders)
    store_.idle_readers_.push_back(std::move(owned_));
}

Submission SqliteSubmissionStore::read_row(Query& q) {
  Submission s;
  s.seq = q.int64(0);
  s.id = q.text(1);
  s.status = enum_from_db<SubmissionStatus>(q.int64(2), 5, "status");
  if (!q.is_null(3)) s.result = enum_from_db<Result>(q.int64(3), kResultCount - 1, "result");
  s.created_at_ms = q.int64(4);
  s.finished_at_ms = q.opt_int64(5);
  try {
    s.request = decode_request(q.blob(6));
  } catch (const StoreError& e) {
    throw StoreError(std::string(e.what()) + " (submission " + s.id + ")");
  }
  return s;
}

void SqliteSubmissionStore::read_stages(Connection& c, Submission& s) {
  Query q(c.statement("read stages", kStageSelect));
  q.bind(1, s.seq);
  while (q.step()) {
    int64_t index = q.int64(0) - s.seq * 4;
    if (index < 0 || index > 3) continue;  // cannot happen: the range is the query's
    StageResult& r = s.stages[index];
    r.status = enum_from_db<StageStatus>(q.int64(1), 10, "stage status");
    if (!q.is_null(2)) r.code = static_cast<int>(q.int64(2));
    if (!q.is_null(3)) r.signal = static_cast<int>(q.int64(3));
    r.wall_time_us = q.int64(4);
    r.cpu_time_us = q.int64(5);
    r.memory_bytes = q.int64(6);
    r.truncated = q.int64(7) != 0;
    r.stdout_data = q.blob(8);
    r.stderr_data = q.blob(9);
    r.output = q.blob(10);
  }
  if (s.request.tests.empty()) return;
  std::vector<std::optional<TestResult>> rows(s.request.tests.size());
  Query t(c.statement("read test results",
                      "SELECT idx, result FROM test_results WHERE seq = ?1 ORDER BY idx"));
  t.bind(1, s.seq);
  while (t.step()) {
    const int64_t index = t.int64(0);
    if (index < 0 || index >= static_cast<int64_t>(rows.size()))
      throw StoreError("corrupt row: test index " + std::to_string(index) + " of submission " +
                       s.id);
    rows[index] = decode_test_result(t.blob(1));
  }
  store_rows::complete_tests(s, std::move(rows));
}

std::optional<Submission> SqliteSubmissionStore::read_by_id(Connection& c, const std::string& id) {
  std::optional<Submission> s;
  {
    Query q(c.statement("get by id", CUTOR_SELECT_SUBMISSION " WHERE s.id = ?1"));
    q.bind(1, id);
    if (!q.step()) return std::nullopt;
    s = read_row(q);
  }
  read_stages(c, *s);
  return s;
}

int64_t SqliteSubmissionStore::count_unfinished_on(Connection& c) {
  Query q(c.statement("count unfinished",
                      "SELECT coalesce(sum(n), 0) FROM submission_counts WHERE status < 5"));
  q.step();
  return q.int64(0);
}

void SqliteSubmissionStore::write_stage(Connection& c, int64_t seq, Stage stage,
                                        const StageResult& r) {
  Query q(c.statement("write stage",
                      "INSERT OR REPLACE INTO stages (key, status, code, signal, wall_time_us,"
                      " cpu_time_us, memory_bytes, truncated, stdout, stderr, output)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"));
  q.bind(1, seq * 4 + static_cast<int64_t>(stage));
  q.bind(2, static_cast<int64_t>(r.status));
  q.bind(3, r.code ? std::optional<int64_t>(*r.code) : std::nullopt);
  q.bind(4, r.signal ? std::optional<int64_t>(*r.signal) : std::nullopt);
  q.bind(5, r.wall_time_us).bind(6, r.cpu_time_us).bind(7, r.memory_bytes);
  q.bind(8, int64_t{r.truncated ? 1 : 0});
  q.bind_blob(9, r.stdout_data).bind_blob(10, r.stderr_data).bind_blob(11, r.output);
  q.run();
}

void SqliteSubmissionStore::skip_unfinished_stages(Connection& c, int64_t seq) {
  {
    // A skipped stage shows nothing (SPEC §3), even if it had printed while RUNNING.
    Query q(c.statement("skip unfinished stages",
                        "UPDATE stages SET status = 2, code = NULL, signal = NULL,"
                        " wall_time_us = 0, cpu_time_us = 0, memory_bytes = 0, truncated = 0,"
                        " stdout = x'', stderr = x'', output = x''"
                        " WHERE key BETWEEN ?1 * 4 AND ?1 * 4 + 3 AND status IN (0, 1)"));
    q.bind(1, seq).run();
  }
  // Stages never written (implicitly PENDING) get an explicit SKIPPED row.
  Query q(c.statement("skip missing stages",
                      "INSERT OR IGNORE INTO stages (key, status) VALUES"
                      " (?1 * 4, 2), (?1 * 4 + 1, 2), (?1 * 4 + 2, 2), (?1 * 4 + 3, 2)"));
  q.bind(1, seq).run();
}

void SqliteSubmissionStore::delete_stages(Connection& c, int64_t seq) {
  {
    Query q(
        c.statement("delete stages", "DELETE FROM stages WHERE key BETWEEN ?1 * 4 AND ?1 * 4 + 3"));
    q.bind(1, seq).run();
  }
  Query q(c.statement("delete test results", "DELETE FROM test_results WHERE seq = ?1"));
  q.bind(1, seq).run();
}

int64_t SqliteSubmissionStore::insert(const Submission& s, int64_t max_queue) {
  uint64_t ticket = 0;
  int64_t seq = insert_committed(s, max_queue, ticket);
  make_durable(ticket);
  return seq;
}

void SqliteSubmissionStore::insert_unsynced(const Submission& s, int64_t max_queue) {
  uint64_t ticket = 0;
  insert_committed(s, max_queue, ticket);
}

void SqliteSubmissionStore::sync_committed() {
  make_durable(commits_.load(std::memory_order_acquire));
}

int64_t SqliteSubmissionStore::insert_committed(const Submission& s, int64_t max_queue,
                                                uint64_t& ticket) {
  std::string body = encode_request(s.request);
  int64_t seq = 0;
  {
    std::lock_guard lock(writer_mu_);
    Connection& c = *writer_;
    Transaction tx(c, Transaction::Kind::kWrite);
    if (max_queue > 0) {
      int64_t unfinished = count_unfinished_on(c);
      if (unfinished >= max_queue)
        throw QueueFullError("queue full: " + std::to_string(unfinished) +
                             " unfinished submissions (max " + std::to_string(max_queue) + ")");
    }
    {
      Query q(c.statement("insert submission",
                          "INSERT INTO submissions (id, status, created_at_ms) VALUES (?1, 0, ?2)"
                          " RETURNING seq"));
      q.bind(1, s.id).bind(2, s.created_at_ms);
      q.step();
      seq = q.int64(0);
      q.run();
    }
    {
      Query q(c.statement("insert request", "INSERT INTO requests (seq, body) VALUES (?1, ?2)"));
      q.bind(1, seq).bind_blob(2, body).run();
    }
    tx.commit();
    ticket = durable_ticket();
  }
  // A worker may claim it while the fsync runs: the caller answers only after it.
  notify_claimers();
  notify_listeners(s.id, SubmissionStatus::kQueued);
  return seq;
}

std::optional<Submission> SqliteSubmissionStore::get(const std::string& id) {
  ReaderLease lease(*this);
  Transaction tx(lease.conn(), Transaction::Kind::kRead);
  auto s = read_by_id(lease.conn(), id);
  tx.commit();
  return s;
}

SubmissionPage SqliteSubmissionStore::list(std::optional<SubmissionStatus> status, int limit,
                                           const std::optional<std::string>& cursor) {
  if (limit < 1) throw std::invalid_argument("list limit must be at least 1");
  int64_t before = cursor ? parse_cursor(*cursor) : std::numeric_limits<int64_t>::max();
  SubmissionPage page;
  ReaderLease lease(*this);
  Connection& c = lease.conn();
  Transaction tx(c, Transaction::Kind::kRead);
  {
    // One row more than asked tells whether another page exists.
    sqlite::Statement& st =
        status ? c.statement("list by status", CUTOR_SELECT_SUBMISSION
                             " WHERE s.status = ?3 AND s.seq < ?1 ORDER BY s.seq DESC LIMIT ?2")
               : c.statement("list all", CUTOR_SELECT_SUBMISSION
                             " WHERE s.seq < ?1 ORDER BY s.seq DESC LIMIT ?2");
    Query q(st);
    q.bind(1, before).bind(2, int64_t{limit} + 1);
    if (status) q.bind(3, static_cast<int64_t>(*status));
    while (q.step()) {
      if (page.submissions.size() == static_cast<size_t>(limit)) {
        page.next_cursor = make_cursor(page.submissions.back().seq);
        break;
      }
      page.submissions.push_back(read_row(q));
    }
  }
  for (auto& s : page.submissions) read_stages(c, s);
  tx.commit();
  return page;
}

std::optional<Submission> SqliteSubmissionStore::try_claim() {
  std::lock_guard lock(writer_mu_);
  Connection& c = *writer_;
  Transaction tx(c, Transaction::Kind::kWrite);
  int64_t seq = 0;
  {
    // The literal "status = 0 AND lease_owner IS NULL" matches the partial index
    // submissions_claimable, so finding the oldest claimable row is one index probe
    // however many rows are claimed. Without statistics the planner would pick
    // submissions_by_status and step over every claimed row; INDEXED BY forbids that
    // (and makes prepare fail should the index ever stop matching).
    Query q(c.statement("claim",
                        "UPDATE submissions SET lease_owner = ?1, lease_at_ms = ?2"
                        " WHERE seq = (SELECT seq FROM submissions"
                        "              INDEXED BY submissions_claimable"
                        "              WHERE status = 0 AND lease_owner IS NULL"
                        "              ORDER BY seq LIMIT 1)"
                        " RETURNING seq"));
    q.bind(1, lease_owner_).bind(2, now_unix_ms());
    if (!q.step()) return std::nullopt;
    seq = q.int64(0);
    q.run();
  }
  std::optional<Submission> s;
  {
    Query q(c.statement("get by seq", CUTOR_SELECT_SUBMISSION " WHERE s.seq = ?1"));
    q.bind(1, seq);
    if (!q.step()) throw StoreError("sqlite store " + c.path() + ": claimed row vanished");
    s = read_row(q);
  }
  read_stages(c, *s);
  tx.commit();
  return s;
}

std::optional<Submission> SqliteSubmissionStore::claim_next(std::stop_token stop) {
  std::unique_lock lock(claim_mu_);
  while (!stop.stop_requested()) {
    // Read the generation before looking: an insert after the look bumps it, so the
    // wait below returns at once instead of missing the wake-up.
    uint64_t seen = claim_generation_;
    lock.unlock();
    if (auto s = try_claim()) return s;
    lock.lock();
    // Wakes on notify_claimers() or when `stop` is requested (no polling).
    if (!claim_cv_.wait(lock, stop, [&] { return claim_generation_ != seen; })) break;
  }
  return std::nullopt;
}

bool SqliteSubmissionStore::set_status(const std::string& id, SubmissionStatus status) {
  if (status == SubmissionStatus::kFinished)
    throw std::invalid_argument("set_status(FINISHED): use finish(), which records the result");
  bool changed = false;
  {
    std::lock_guard lock(writer_mu_);
    Connection& c = *writer_;
    Query q(c.statement("set status",
                        "UPDATE submissions SET status = ?2 WHERE id = ?1 AND status != 5"));
    q.bind(1, id).bind(2, static_cast<int64_t>(status)).run();
    changed = sqlite3_changes(c.handle()) == 1;
  }
  if (changed) notify_listeners(id, status);
  return changed;
}

bool SqliteSubmissionStore::set_stage(const std::string& id, Stage stage, const StageResult& r) {
  return advance(id, std::nullopt, {{stage, r}});
}

bool SqliteSubmissionStore::advance(const std::string& id, std::optional<SubmissionStatus> status,
                                    const std::vector<StageWrite>& stages) {
  if (status == SubmissionStatus::kFinished)
    throw std::invalid_argument("advance(FINISHED): use finish(), which records the result");
  SubmissionStatus now;
  {
    std::lock_guard lock(writer_mu_);
    Connection& c = *writer_;
    Transaction tx(c, Transaction::Kind::kWrite);
    int64_t seq = 0;
    {
      Query q(c.statement("find unfinished",
                          "SELECT seq, status FROM submissions WHERE id = ?1 AND status != 5"));
      q.bind(1, id);
      if (!q.step()) return false;
      seq = q.int64(0);
      now = enum_from_db<SubmissionStatus>(q.int64(1), 5, "status");
    }
    if (status && *status != now) {
      Query q(
          c.statement("set status by seq", "UPDATE submissions SET status = ?2 WHERE seq = ?1"));
      q.bind(1, seq).bind(2, static_cast<int64_t>(*status)).run();
      now = *status;
    }
    for (const StageWrite& w : stages) write_stage(c, seq, w.stage, w.result);
    tx.commit();
  }
  notify_listeners(id, now);
  return true;
}

bool SqliteSubmissionStore::write_tests(const std::string& id,
                                        const std::vector<TestWrite>& tests) {
  SubmissionStatus now;
  {
    std::lock_guard lock(writer_mu_);
    Connection& c = *writer_;
    Transaction tx(c, Transaction::Kind::kWrite);
    int64_t seq = 0;
    {
      Query q(c.statement("find unfinished",
                          "SELECT seq, status FROM submissions WHERE id = ?1 AND status != 5"));
      q.bind(1, id);
      if (!q.step()) return false;
      seq = q.int64(0);
      now = enum_from_db<SubmissionStatus>(q.int64(1), 5, "status");
    }
    for (const TestWrite& w : tests) {
      Query q(c.statement("write test result",
                          "INSERT OR REPLACE INTO test_results (seq, idx, result)"
                          " VALUES (?1, ?2, ?3)"));
      const std::string blob = encode_test_result(w.result);  // bound without a copy
      q.bind(1, seq).bind(2, static_cast<int64_t>(w.index)).bind_blob(3, blob);
      q.run();
    }
    tx.commit();
  }
  notify_listeners(id, now);
  return true;
}

int64_t SqliteSubmissionStore::put_runtime(const StoredRuntime& r) {
  uint64_t ticket = 0;
  int64_t id = 0;
  {
    std::lock_guard lock(writer_mu_);
    Connection& c = *writer_;
    Query q(
        c.statement("put runtime",
                    "INSERT INTO runtimes (name, version, definition) VALUES (?1, ?2, ?3)"
                    " ON CONFLICT (name, version) DO UPDATE SET definition = excluded.definition"
                    " RETURNING id"));
    q.bind(1, r.name).bind(2, r.version).bind(3, r.definition_json);
    q.step();
    id = q.int64(0);
    q.run();
    ticket = durable_ticket();
  }
  make_durable(ticket);
  return id;
}

std::vector<StoredRuntime> SqliteSubmissionStore::list_runtimes() {
  ReaderLease lease(*this);
  Query q(lease.conn().statement(
      "list runtimes",
      "SELECT name, version, definition, id FROM runtimes ORDER BY name, version"));
  std::vector<StoredRuntime> out;
  while (q.step()) out.push_back({q.text(0), q.text(1), q.text(2), q.int64(3)});
  return out;
}

bool SqliteSubmissionStore::delete_runtime(const std::string& name, const std::string& version) {
  uint64_t ticket = 0;
  bool deleted = false;
  {
    std::lock_guard lock(writer_mu_);
    Connection& c = *writer_;
    Query q(c.statement("delete runtime", "DELETE FROM runtimes WHERE name = ?1 AND version = ?2"));
    q.bind(1, name).bind(2, version).run();
    deleted = sqlite3_changes(c.handle()) == 1;
    ticket = durable_ticket();
  }
  make_durable(ticket);
  return deleted;
}

bool SqliteSubmissionStore::finish(const std::string& id, Result result) {
  return finish_with_stages(id, result, {});
}

bool SqliteSubmissionStore::finish_with_stages(const std::string& id, Result result,
                                               const std::vector<StageWrite>& stages) {
  uint64_t ticket = 0;
  {
    std::lock_guard lock(writer_mu_);
    Connection& c = *writer_;
    Transaction tx(c, Transaction::Kind::kWrite);
    int64_t seq = 0;
    {
      Query q(c.statement("finish",
                          "UPDATE submissions SET status = 5, result = ?2, finished_at_ms = ?3,"
                          " lease_owner = NULL, lease_at_ms = NULL"
                          " WHERE id = ?1 AND status != 5 RETURNING seq"));
      q.bind(1, id).bind(2, static_cast<int64_t>(result)).bind(3, now_unix_ms());
      if (!q.step()) return false;
      seq = q.int64(0);
      q.run();
    }
    for (const StageWrite& w : stages) write_stage(c, seq, w.stage, w.result);
    skip_unfinished_stages(c, seq);
    tx.commit();
    ticket = durable_ticket();
  }
  durable_then_notify(ticket, id, SubmissionStatus::kFinished);
  return true;
}

CancelOutcome SqliteSubmissionStore::cancel(const std::string& id) {
  uint64_t ticket = 0;
  {
    std::lock_guard lock(writer_mu_);
    Connection& c = *writer_;
    Transaction tx(c, Transaction::Kind::kWrite);
    int64_t seq = 0;
    SubmissionStatus status;
    {
      Query q(c.statement("find by id", "SELECT seq, status FROM submissions WHERE id = ?1"));
      q.bind(1, id);
      if (!q.step()) return CancelOutcome::kNotFound;
      seq = q.int64(0);
      status = enum_from_db<SubmissionStatus>(q.int64(1), 5, "status");
    }
    if (status == SubmissionStatus::kFinished) return CancelOutcome::kAlreadyFinished;
    {
      Query q(c.statement("cancel",
                          "UPDATE submissions SET status = 5, result = 8, finished_at_ms = ?2,"
                          " lease_owner = NULL, lease_at_ms = NULL WHERE seq = ?1"));
      q.bind(1, seq).bind(2, now_unix_ms()).run();
    }
    if (status == SubmissionStatus::kQueued) {
      // Never ran (even if claimed): nothing it may have written is shown.
      delete_stages(c, seq);
    } else {
      // The sandbox is about to be killed: the stage it was in ends SIGKILLed, with
      // the output it had printed so far.
      Query q(c.statement("signal running stage",
                          "UPDATE stages SET status = 5, signal = 9, code = NULL"
                          " WHERE key BETWEEN ?1 * 4 AND ?1 * 4 + 3 AND status = 1"));
      static_assert(kSigkill == 9);
      q.bind(1, seq).run();
    }
    skip_unfinished_stages(c, seq);
    tx.commit();
    ticket = durable_ticket();
  }
  durable_then_notify(ticket, id, SubmissionStatus::kFinished);
  return CancelOutcome::kCancelled;
}

int64_t SqliteSubmissionStore::requeue_unfinished() {
  std::vector<std::string> ids;
  uint64_t ticket = 0;
  {
    std::lock_guard lock(writer_mu_);
    Connection& c = *writer_;
    Transaction tx(c, Transaction::Kind::kWrite);
    std::vector<int64_t> seqs;
    {
      Query q(c.statement("list unfinished",
                          "SELECT seq, id FROM submissions WHERE status < 5 ORDER BY seq"));
      while (q.step()) {
        seqs.push_back(q.int64(0));
        ids.push_back(q.text(1));
      }
    }
    for (int64_t seq : seqs) delete_stages(c, seq);
    {
      Query q(c.statement("requeue",
                          "UPDATE submissions SET status = 0, lease_owner = NULL,"
                          " lease_at_ms = NULL WHERE status < 5"));
      q.run();
    }
    tx.commit();
    ticket = durable_ticket();
  }
  make_durable(ticket);
  if (!ids.empty()) notify_claimers();
  for (const auto& id : ids) notify_listeners(id, SubmissionStatus::kQueued);
  return static_cast<int64_t>(ids.size());
}

int64_t SqliteSubmissionStore::delete_finished_before(int64_t finished_before_ms, int limit) {
  std::lock_guard lock(writer_mu_);
  Connection& c = *writer_;
  Transaction tx(c, Transaction::Kind::kWrite);
  std::vector<int64_t> seqs;
  {
    Query q(c.statement("find expired",
                        "SELECT seq FROM submissions WHERE finished_at_ms < ?1 AND status = 5"
                        " ORDER BY finished_at_ms LIMIT ?2"));
    q.bind(1, finished_before_ms).bind(2, int64_t{limit});
    while (q.step()) seqs.push_back(q.int64(0));
  }
  for (int64_t seq : seqs) {
    delete_stages(c, seq);
    Query(c.statement("delete request", "DELETE FROM requests WHERE seq = ?1")).bind(1, seq).run();
    Query(c.statement("delete submission", "DELETE FROM submissions WHERE seq = ?1"))
        .bind(1, seq)
        .run();
  }
  // Not synced: a delete a power loss takes is simply made again by the next sweep.
  tx.commit();
  return static_cast<int64_t>(seqs.size());
}

int64_t SqliteSubmissionStore::count_all() {
  ReaderLease lease(*this);
  Query q(lease.conn().statement("count all", "SELECT coalesce(sum(n), 0) FROM submission_counts"));
  q.step();
  return q.int64(0);
}

int64_t SqliteSubmissionStore::count_unfinished() {
  ReaderLease lease(*this);
  return count_unfinished_on(lease.conn());
}

std::vector<std::pair<std::string, int64_t>> SqliteSubmissionStore::count_by_status() {
  std::vector<std::pair<std::string, int64_t>> counts;
  for (int i = 0; i <= static_cast<int>(SubmissionStatus::kFinished); ++i)
    counts.emplace_back(status_name(static_cast<SubmissionStatus>(i)), 0);
  ReaderLease lease(*this);
  Query q(lease.conn().statement("count by status",
                                 "SELECT status, sum(n) FROM submission_counts GROUP BY status"));
  while (q.step()) {
    auto st = enum_from_db<SubmissionStatus>(q.int64(0), 5, "status");
    counts[static_cast<int>(st)].second = q.int64(1);
  }
  return counts;
}

std::vector<std::pair<std::string, int64_t>> SqliteSubmissionStore::count_by_result() {
  std::vector<std::pair<std::string, int64_t>> counts;
  for (int i = 0; i < kResultCount; ++i)
    counts.emplace_back(result_name(static_cast<Result>(i)), 0);
  ReaderLease lease(*this);
  Query q(lease.conn().statement("count by result",
                                 "SELECT result, sum(n) FROM submission_counts"
                                 " WHERE result >= 0 GROUP BY result"));
  while (q.step()) {
    auto r = enum_from_db<Result>(q.int64(0), kResultCount - 1, "result");
    counts[static_cast<int>(r)].second = q.int64(1);
  }
  return counts;
}

int SqliteSubmissionStore::add_listener(ChangeListener l) {
  std::lock_guard lock(listeners_mu_);
  int handle = next_listener_++;
  listeners_.emplace_back(handle, std::make_shared<const ChangeListener>(std::move(l)));
  return handle;
}

void SqliteSubmissionStore::remove_listener(int handle) {
  std::lock_guard lock(listeners_mu_);
  std::erase_if(listeners_, [&](const auto& entry) { return entry.first == handle; });
}

void SqliteSubmissionStore::wake_all() {
  notify_claimers();
}

void SqliteSubmissionStore::notify_claimers() {
  {
    std::lock_guard lock(claim_mu_);
    ++claim_generation_;
  }
  claim_cv_.notify_all();
}

void SqliteSubmissionStore::notify_listeners(const std::string& id, SubmissionStatus status) {
  // Copy so a listener runs without listeners_mu_ held (it may take its own locks, and
  // another thread may add or remove listeners meanwhile). A listener removed during
  // this loop may still get this one call.
  std::vector<std::shared_ptr<const ChangeListener>> targets;
  {
    std::lock_guard lock(listeners_mu_);
    for (const auto& [handle, l] : listeners_) targets.push_back(l);
  }
  for (const auto& l : targets) {
    try {
      (*l)(id, status);
    } catch (const std::exception& e) {
      // The write is committed; failing the caller now would make it retry a done
      // write. Say so and carry on with the other listeners.
      std::fprintf(stderr, "cutor store: change listener threw for %s: %s\n", id.c_str(), e.what());
    } catch (...) {
      std::fprintf(stderr, "cutor store: change listener threw for %s\n", id.c_str());
    }
  }
}

#undef CUTOR_SELECT_SUBMISSION

}  // namespace

std::unique_ptr<SubmissionStore> open_sqlite_store(const SqliteStoreOptions& options) {
  return std::make_unique<SqliteSubmissionStore>(options);
}

}  // namespace cutor
