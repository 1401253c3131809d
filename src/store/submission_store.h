// The request store: submissions and their progress, durable, with change notification.
//
// The API inserts and reads; the executor claims work and writes each status change
// and stage result as it happens. Implementations: SqliteSubmissionStore (embedded,
// WAL); a PostgreSQL one can follow the same interface. All methods are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <vector>

#include "model/submission.h"

namespace cutor {

// The store could not do what was asked (I/O error, disk full, read-only data dir...).
class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// insert() refused: the queue already holds max_queue unfinished submissions.
class QueueFullError : public StoreError {
 public:
  using StoreError::StoreError;
};

struct SubmissionPage {
  std::vector<Submission> submissions;     // newest first
  std::optional<std::string> next_cursor;  // opaque; absent on the last page
};

// One runtime catalogue entry (issue 15): its key and its definition as JSON text (the
// store keeps it opaque; src/runtimes parses it).
struct StoredRuntime {
  std::string name;
  std::string version;
  std::string definition_json;
  // Given by the store at the first put of (name, version), kept when it is replaced and
  // never given to another entry, even after a delete (Judge0 language ids, envicutor's
  // runtime ids). Ignored in put_runtime.
  int64_t id = 0;
};

enum class CancelOutcome { kCancelled, kAlreadyFinished, kNotFound };

// Called after a submission's row changed (any status or stage write, cancel, insert).
// Runs on the writer's thread, after commit: keep it short and never call back into
// the store from it.
using ChangeListener = std::function<void(const std::string& id, SubmissionStatus status)>;

class SubmissionStore {
 public:
  virtual ~SubmissionStore() = default;

  // Durability: insert, finish, cancel and requeue_unfinished are fsynced before they
  // return (they survive a power loss); claims, statuses and stage results survive a crash
  // of the process but a power loss may take the last of them, and then the submission
  // runs again from the start, as SPEC §1 allows.
  //
  // Durably stores a new QUEUED submission (id, created_at_ms and request set by the
  // caller; stages PENDING). Returns after the commit. Throws QueueFullError when
  // `max_queue` > 0 and that many submissions are unfinished, StoreError on failure.
  // Assigns and returns seq.
  virtual int64_t insert(const Submission& s, int64_t max_queue) = 0;
  // insert() that returns once committed, before the fsync: the row is claimable and
  // readable at once, but survives a power loss only once sync_committed() has returned.
  // For a caller that answers later (POST ?wait=true answers when the run is over), so one
  // fsync after the run covers both the insert and the result. The default is insert().
  virtual void insert_unsynced(const Submission& s, int64_t max_queue);
  // Returns once every write committed so far is durable (at once when it already is, or
  // for a store that does not fsync). Throws StoreError when that fsync failed.
  virtual void sync_committed();

  virtual std::optional<Submission> get(const std::string& id) = 0;

  // Newest first. `cursor` is a value from a previous page's next_cursor; throws
  // std::invalid_argument for a cursor this store did not produce.
  virtual SubmissionPage list(std::optional<SubmissionStatus> status, int limit,
                              const std::optional<std::string>& cursor) = 0;

  // Blocks until a QUEUED submission can be claimed (oldest first) or `stop` is
  // requested (then returns nullopt). A claimed submission stays QUEUED in status but is
  // leased to this process: no other claim returns it until it finishes or is requeued.
  virtual std::optional<Submission> claim_next(std::stop_token stop) = 0;

  // Moves a claimed submission forward. Ignored (returns false) once it is FINISHED,
  // e.g. after a cancel.
  virtual bool set_status(const std::string& id, SubmissionStatus status) = 0;
  // Writes one stage's result (also used for RUNNING with output so far). Ignored
  // (returns false) once the submission is FINISHED.
  virtual bool set_stage(const std::string& id, Stage stage, const StageResult& r) = 0;
  // Terminal write: status FINISHED, `result`, finished_at; every stage still PENDING or
  // RUNNING becomes SKIPPED. Exactly once: returns false if it was already FINISHED.
  virtual bool finish(const std::string& id, Result result) = 0;

  // Batched forms of the writes above, for the executor: one transaction (and one
  // notification) instead of one per write. The defaults make the single calls in order;
  // SqliteSubmissionStore commits each batch at once.
  struct StageWrite {
    Stage stage;
    StageResult result;
  };
  // `status` (if set; never FINISHED), then each stage result in order. Ignored (returns
  // false) once the submission is FINISHED.
  virtual bool advance(const std::string& id, std::optional<SubmissionStatus> status,
                       const std::vector<StageWrite>& stages);
  // Each stage result, then finish(id, result), as one durable commit. Returns false (and
  // writes nothing) if it was already FINISHED.
  virtual bool finish_with_stages(const std::string& id, Result result,
                                  const std::vector<StageWrite>& stages);

  // Records finished test cases (TestWrite::index into request.tests). A test without a
  // record reads PENDING, or SKIPPED once the submission is FINISHED; requeue forgets them.
  // Ignored (returns false) once the submission is FINISHED.
  struct TestWrite {
    int index;
    TestResult result;
  };
  virtual bool write_tests(const std::string& id, const std::vector<TestWrite>& tests) = 0;

  // Cancels: a QUEUED one never runs, a running one is marked FINISHED/CANCELLED at
  // once (its RUNNING stage becomes SIGNALED with SIGKILL, PENDING ones SKIPPED) and
  // listeners are told, so the executor kills its sandbox.
  virtual CancelOutcome cancel(const std::string& id) = 0;

  // On start: every unfinished submission (claimed or half-run by a process that
  // died) goes back to QUEUED with its stages PENDING. Returns how many.
  virtual int64_t requeue_unfinished() = 0;

  // Retention: deletes up to `limit` FINISHED submissions that finished before
  // `finished_before_ms` (Unix ms), oldest finish first, with their requests and stage
  // outputs, in one transaction. Returns how many; fewer than `limit` means none is left.
  // Unfinished submissions are never deleted. Throws StoreError on failure.
  virtual int64_t delete_finished_before(int64_t finished_before_ms, int limit) = 0;

  // Counts for /metrics and /info.
  virtual int64_t count_all() = 0;
  virtual int64_t count_unfinished() = 0;  // queue depth: QUEUED and running
  virtual std::vector<std::pair<std::string, int64_t>> count_by_status() = 0;
  virtual std::vector<std::pair<std::string, int64_t>> count_by_result() = 0;

  // Registers a listener for the store's lifetime. Returns a handle for remove_listener.
  virtual int add_listener(ChangeListener l) = 0;
  virtual void remove_listener(int handle) = 0;

  // Wakes claim_next() callers so they can see their stop token.
  virtual void wake_all() = 0;

  // The runtime catalogue, kept durably in the store (runtimes added through the API
  // survive a restart; shipped ones are put again at every start). put_runtime inserts or
  // replaces (name, version) and returns its id; list_runtimes answers every entry sorted
  // by name then version; delete_runtime answers whether one was there.
  virtual int64_t put_runtime(const StoredRuntime& r) = 0;
  virtual std::vector<StoredRuntime> list_runtimes() = 0;
  virtual bool delete_runtime(const std::string& name, const std::string& version) = 0;
};

struct SqliteStoreOptions {
  std::string path;  // database file; ":memory:" for a private in-memory store
  // fsync the durable commits (insert, finish, cancel, requeue) before they return, several
  // concurrent ones sharing one fdatasync; false: they survive a crash, not a power loss.
  bool synchronous_full = true;
  // Commits never checkpoint (wal_autocheckpoint is off); a thread of the store's own
  // runs a PASSIVE checkpoint every checkpoint_interval after commits, or at once when the
  // WAL reaches checkpoint_at_wal_frames frames, and a TRUNCATE one once an interval
  // passed without commits.
  std::chrono::milliseconds checkpoint_interval{1000};
  int64_t checkpoint_at_wal_frames = 1000;
};

// Opens (creating if needed) the SQLite store. Throws StoreError with the path and
// SQLite's message on failure.
std::unique_ptr<SubmissionStore> open_sqlite_store(const SqliteStoreOptions& options);

}  // namespace cutor
