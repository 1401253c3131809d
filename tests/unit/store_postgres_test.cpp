// What only the PostgreSQL store does: leases that expire and are taken over (a late
// result from the lost lease refused), notifications across store instances (processes
// and hosts share nothing else), reconnecting after a server restart, schema versions.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "store/postgres_submission_store.h"
#include "store_pg_cluster.h"

namespace cutor {
namespace {

using namespace std::chrono_literals;
using testing_util::PgCluster;

Submission make_submission() {
  Submission s;
  s.id = new_uuid();
  s.created_at_ms = now_unix_ms();
  s.request.files.push_back({"run.sh", "echo hi\n"});
  return s;
}

StageResult ok_stage(const std::string& out) {
  StageResult r;
  r.status = StageStatus::kOk;
  r.code = 0;
  r.stdout_data = out;
  r.output = out;
  return r;
}

// Polls `done` until it holds or `limit` passes; returns whether it held.
template <typename F>
bool eventually(F done, std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return done();
}

struct Events {
  std::mutex mu;
  std::vector<std::pair<std::string, SubmissionStatus>> seen;
  ChangeListener listener() {
    return [this](const std::string& id, SubmissionStatus st) {
      std::lock_guard lock(mu);
      seen.emplace_back(id, st);
    };
  }
  bool has(const std::string& id, SubmissionStatus st) {
    std::lock_guard lock(mu);
    for (const auto& e : seen)
      if (e.first == id && e.second == st) return true;
    return false;
  }
};

class PostgresStoreTest : public ::testing::Test {
 protected:
  std::string url_ = PgCluster::shared().new_database();
};

TEST_F(PostgresStoreTest, AnExpiredLeaseIsTakenOverAndTheLateResultRefused) {
  // `slow` renews its leases every 10 s; `fast` re-queues any lease older than 300 ms, so
  // slow's claim expires as if its worker had hung or lost the network.
  auto slow = open_postgres_store({.url = url_, .lease_timeout_ms = 30'000});
  auto fast = open_postgres_store({.url = url_, .lease_timeout_ms = 300});
  Submission s = make_submission();
  slow->insert(s, 0);
  std::stop_source never;
  auto claimed = slow->claim_next(never.get_token());
  ASSERT_TRUE(claimed);
  ASSERT_TRUE(slow->set_status(s.id, SubmissionStatus::kRunning));
  ASSERT_TRUE(slow->set_stage(s.id, Stage::kRun, ok_stage("first")));

  // fast's claim blocks until the expired lease is re-queued (woken, not polling).
  auto second = std::async(std::launch::async, [&] { return fast->claim_next(never.get_token()); });
  ASSERT_EQ(second.wait_for(10s), std::future_status::ready);
  auto retaken = second.get();
  ASSERT_TRUE(retaken);
  EXPECT_EQ(retaken->id, s.id);
  EXPECT_EQ(retaken->status, SubmissionStatus::kQueued);
  EXPECT_EQ(retaken->stage(Stage::kRun), StageResult{});  // the lost run's output is gone

  // The first worker comes back: every write of its lost lease is refused.
  EXPECT_FALSE(slow->set_stage(s.id, Stage::kRun, ok_stage("late")));
  EXPECT_FALSE(slow->finish(s.id, Result::kOk));
  ASSERT_TRUE(fast->set_stage(s.id, Stage::kRun, ok_stage("second")));
  ASSERT_TRUE(fast->finish(s.id, Result::kRuntimeError));
  auto got = slow->get(s.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->result, Result::kRuntimeError);
  EXPECT_EQ(got->stage(Stage::kRun).stdout_data, "second");
  EXPECT_FALSE(fast->finish(s.id, Result::kOk));  // exactly once
}

TEST_F(PostgresStoreTest, HeartbeatsKeepALiveLeaseAndAKilledWorkersIsRequeued) {
  Submission kept = make_submission(), lost = make_submission();
  Events events;
  auto api = open_postgres_store({.url = url_, .lease_timeout_ms = 600});
  api->insert(kept, 0);
  api->insert(lost, 0);
  auto live = open_postgres_store({.url = url_, .lease_timeout_ms = 600});
  std::stop_source never;
  ASSERT_EQ(live->claim_next(never.get_token())->id, kept.id);

  // A worker process claims `lost` and is killed -9: nobody renews its lease.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto worker = open_postgres_store({.url = url_, .lease_timeout_ms = 600});
    std::stop_source stop;
    auto c = worker->claim_next(stop.get_token());
    worker->set_status(c->id, SubmissionStatus::kRunning);
    raise(SIGKILL);
    _exit(99);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  api->add_listener(events.listener());
  ASSERT_TRUE(eventually([&] { return api->get(lost.id)->status == SubmissionStatus::kQueued; }));
  EXPECT_TRUE(eventually([&] { return events.has(lost.id, SubmissionStatus::kQueued); }));
  // Three lease timeouts later the live worker's lease still holds: it was renewed.
  std::this_thread::sleep_for(1800ms);
  EXPECT_TRUE(live->set_status(kept.id, SubmissionStatus::kRunning));
  auto next = live->claim_next(never.get_token());
  ASSERT_TRUE(next);
  EXPECT_EQ(next->id, lost.id);
  EXPECT_TRUE(live->finish(kept.id, Result::kOk));
  EXPECT_TRUE(live->finish(lost.id, Result::kOk));
}

TEST_F(PostgresStoreTest, ChangesReachListenersAndClaimersOfOtherStores) {
  Events at_api, at_worker;  // outlive the stores that call them
  auto api = open_postgres_store({.url = url_});
  auto worker = open_postgres_store({.url = url_});
  api->add_listener(at_api.listener());
  std::stop_source stop;
  auto claimed =
      std::async(std::launch::async, [&] { return worker->claim_next(stop.get_token()); });
  EXPECT_EQ(claimed.wait_for(100ms), std::future_status::timeout);
  Submission s = make_submission();
  api->insert(s, 0);
  ASSERT_EQ(claimed.wait_for(10s), std::future_status::ready);
  ASSERT_EQ(claimed.get()->id, s.id);
  worker->set_status(s.id, SubmissionStatus::kRunning);
  EXPECT_TRUE(eventually([&] { return at_api.has(s.id, SubmissionStatus::kRunning); }));

  // A cancel through the API reaches the worker holding it (so it kills the sandbox).
  worker->add_listener(at_worker.listener());
  EXPECT_EQ(api->cancel(s.id), CancelOutcome::kCancelled);
  EXPECT_TRUE(eventually([&] { return at_worker.has(s.id, SubmissionStatus::kFinished); }));
  EXPECT_FALSE(worker->finish(s.id, Result::kOk));
}

TEST_F(PostgresStoreTest, AServerRestartIsSurvivedAndMissedChangesCaughtUp) {
  Events at_api;
  auto api = open_postgres_store({.url = url_});
  auto worker = open_postgres_store({.url = url_});
  Submission before = make_submission();
  api->insert(before, 0);
  api->add_listener(at_api.listener());
  PgCluster::shared().restart();
  // Pooled connections died with the server: the next calls connect again.
  std::stop_source never;
  auto c = worker->claim_next(never.get_token());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->id, before.id);
  ASSERT_TRUE(worker->finish(before.id, Result::kOk));
  // The API's listening connection reconnects and catches up on what it may have missed.
  EXPECT_TRUE(eventually([&] { return at_api.has(before.id, SubmissionStatus::kFinished); }));
  Submission after = make_submission();
  api->insert(after, 0);
  auto next = worker->claim_next(never.get_token());
  ASSERT_TRUE(next);
  EXPECT_EQ(next->id, after.id);
}

TEST_F(PostgresStoreTest, ASchemaNewerThanThisBuildIsRefused) {
  { open_postgres_store({.url = url_}); }  // creates version 3
  std::string db = url_.substr(url_.find("@/") + 2);
  db = db.substr(0, db.find('?'));
  PgCluster::shared().psql("INSERT INTO cutor_schema (version) VALUES (4)", db);
  try {
    open_postgres_store({.url = url_});
    FAIL() << "opened a version 4 schema";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 4 is newer"), std::string::npos)
        << e.what();
  }
}

// A version 1 schema (before test cases) is migrated in place, its rows kept.
TEST_F(PostgresStoreTest, SchemaVersionOneIsMigrated) {
  Submission old;
  old.id = new_uuid();
  old.request.files.push_back({"run.sh", "echo"});
  { open_postgres_store({.url = url_})->insert(old, 0); }
  std::string db = url_.substr(url_.find("@/") + 2);
  db = db.substr(0, db.find('?'));
  PgCluster::shared().psql(
      "DROP TABLE test_results; DROP TABLE runtimes; DROP TABLE submission_counts;"
      " DROP FUNCTION cutor_count_submissions CASCADE; UPDATE cutor_schema SET version = 1",
      db);
  auto store = open_postgres_store({.url = url_});
  EXPECT_TRUE(store->get(old.id));
  Submission s;
  s.id = new_uuid();
  s.request.files.push_back({"run.sh", "cat"});
  s.request.tests.push_back({.name = "a"});
  store->insert(s, 0);
  TestResult t;
  t.name = "a";
  t.verdict = Verdict::kAccepted;
  EXPECT_TRUE(store->write_tests(s.id, {{0, t}}));
  EXPECT_EQ(store->get(s.id)->tests.at(0), t);
  EXPECT_EQ(store->count_all(), 2);  // the migration counted the old row
  EXPECT_EQ(store->count_unfinished(), 2);
}

TEST_F(PostgresStoreTest, AnUnreachableServerIsAStoreErrorWithoutThePassword) {
  try {
    open_postgres_store({.url = "postgresql://u:sekrit@/nodb?host=/nonexistent-dir"});
    FAIL() << "connected to nothing";
  } catch (const StoreError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("cannot connect"), std::string::npos) << what;
    EXPECT_EQ(what.find("sekrit"), std::string::npos) << what;
  }
  EXPECT_TRUE(is_postgres_url("postgresql://h/db"));
  EXPECT_TRUE(is_postgres_url("postgres://h/db"));
  EXPECT_FALSE(is_postgres_url("/var/lib/cutor"));
}

}  // namespace
}  // namespace cutor
