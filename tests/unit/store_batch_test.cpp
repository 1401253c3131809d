// The store's batched writes (advance, finish_with_stages) and its group commit: concurrent
// durable commits sharing fsyncs, and a durable commit that cannot be synced said so.
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "store/submission_store.h"

namespace cutor {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/cutor-store-batch-test-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

Submission make_submission() {
  Submission s;
  s.id = new_uuid();
  s.created_at_ms = now_unix_ms();
  s.request.files.push_back({"run.sh", "echo hi\n"});
  return s;
}

StageResult with_status(StageStatus status, const std::string& out = "") {
  StageResult r;
  r.status = status;
  r.stdout_data = out;
  r.output = out;
  if (status == StageStatus::kOk) r.code = 0;
  r.wall_time_us = 42;
  return r;
}

int open_fd_count() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  while (readdir(d)) ++n;
  closedir(d);
  return n;
}

using Event = std::pair<std::string, SubmissionStatus>;

class StoreBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = open_sqlite_store({.path = dir_.file("cutor.db")});
    listener_ = store_->add_listener([this](const std::string& id, SubmissionStatus st) {
      std::lock_guard lock(mu_);
      events_.emplace_back(id, st);
    });
  }
  void TearDown() override {
    if (store_) store_->remove_listener(listener_);
  }
  std::vector<Event> take_events() {
    std::lock_guard lock(mu_);
    return std::exchange(events_, {});
  }
  // Inserted and claimed, the events of both taken.
  Submission claimed() {
    Submission s = make_submission();
    store_->insert(s, 0);
    std::stop_source never;
    auto got = store_->claim_next(never.get_token());
    if (!got || got->id != s.id) throw std::runtime_error("claim did not return the insert");
    take_events();
    return s;
  }

  TempDir dir_;
  std::unique_ptr<SubmissionStore> store_;
  int listener_ = 0;
  std::mutex mu_;
  std::vector<Event> events_;
};

TEST_F(StoreBatchTest, AdvanceWritesStatusAndStagesAsOneChange) {
  Submission s = claimed();
  ASSERT_TRUE(store_->advance(s.id, SubmissionStatus::kBuilding,
                              {{Stage::kEnvironment, with_status(StageStatus::kSkipped)},
                               {Stage::kBuild, with_status(StageStatus::kRunning)}}));
  auto got = store_->get(s.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, SubmissionStatus::kBuilding);
  EXPECT_EQ(got->stage(Stage::kEnvironment).status, StageStatus::kSkipped);
  EXPECT_EQ(got->stage(Stage::kBuild).status, StageStatus::kRunning);
  EXPECT_EQ(got->stage(Stage::kRun).status, StageStatus::kPending);
  // One notification for the whole batch, with the new status.
  EXPECT_EQ(take_events(), (std::vector<Event>{{s.id, SubmissionStatus::kBuilding}}));
}

TEST_F(StoreBatchTest, AdvanceWithoutStatusKeepsTheStatus) {
  Submission s = claimed();
  ASSERT_TRUE(store_->advance(s.id, std::nullopt,
                              {{Stage::kBuild, with_status(StageStatus::kOk, "built\n")}}));
  auto got = store_->get(s.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, SubmissionStatus::kQueued);
  EXPECT_EQ(got->stage(Stage::kBuild).stdout_data, "built\n");
  EXPECT_EQ(take_events(), (std::vector<Event>{{s.id, SubmissionStatus::kQueued}}));
}

TEST_F(StoreBatchTest, AdvanceIsRefusedOnceFinishedAndWritesNothing) {
  Submission s = claimed();
  ASSERT_TRUE(store_->advance(s.id, SubmissionStatus::kRunning,
                              {{Stage::kRun, with_status(StageStatus::kRunning)}}));
  ASSERT_EQ(store_->cancel(s.id), CancelOutcome::kCancelled);
  take_events();
  EXPECT_FALSE(store_->advance(s.id, SubmissionStatus::kRunning,
                               {{Stage::kRun, with_status(StageStatus::kOk, "late\n")}}));
  auto got = store_->get(s.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, SubmissionStatus::kFinished);
  EXPECT_EQ(got->result, Result::kCancelled);
  EXPECT_EQ(got->stage(Stage::kRun).status, StageStatus::kSignaled);
  EXPECT_EQ(got->stage(Stage::kRun).stdout_data, "");
  EXPECT_TRUE(take_events().empty());
  EXPECT_FALSE(store_->advance(new_uuid(), SubmissionStatus::kRunning, {}));  // unknown id
}

TEST_F(StoreBatchTest, AdvanceToFinishedIsAnError) {
  Submission s = claimed();
  EXPECT_THROW(store_->advance(s.id, SubmissionStatus::kFinished, {}), std::invalid_argument);
  EXPECT_EQ(store_->get(s.id)->status, SubmissionStatus::kQueued);
}

TEST_F(StoreBatchTest, FinishWithStagesKeepsThemAndSkipsTheRest) {
  Submission s = claimed();
  ASSERT_TRUE(store_->advance(s.id, SubmissionStatus::kRunning,
                              {{Stage::kBuild, with_status(StageStatus::kOk)},
                               {Stage::kRun, with_status(StageStatus::kRunning, "partial")}}));
  take_events();
  ASSERT_TRUE(store_->finish_with_stages(s.id, Result::kOk,
                                         {{Stage::kRun, with_status(StageStatus::kOk, "hi\n")}}));
  auto got = store_->get(s.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, SubmissionStatus::kFinished);
  EXPECT_EQ(got->result, Result::kOk);
  EXPECT_TRUE(got->finished_at_ms);
  EXPECT_EQ(got->stage(Stage::kRun).status, StageStatus::kOk);
  EXPECT_EQ(got->stage(Stage::kRun).stdout_data, "hi\n");
  EXPECT_EQ(got->stage(Stage::kBuild).status, StageStatus::kOk);
  // Never written: SKIPPED, as finish() does.
  EXPECT_EQ(got->stage(Stage::kEnvironment).status, StageStatus::kSkipped);
  EXPECT_EQ(got->stage(Stage::kCompile).status, StageStatus::kSkipped);
  EXPECT_EQ(take_events(), (std::vector<Event>{{s.id, SubmissionStatus::kFinished}}));
}

TEST_F(StoreBatchTest, FinishWithStagesAfterACancelWritesNothing) {
  Submission s = claimed();
  ASSERT_TRUE(store_->advance(s.id, SubmissionStatus::kRunning,
                              {{Stage::kRun, with_status(StageStatus::kRunning, "so far")}}));
  ASSERT_EQ(store_->cancel(s.id), CancelOutcome::kCancelled);
  take_events();
  EXPECT_FALSE(store_->finish_with_stages(
      s.id, Result::kOk, {{Stage::kRun, with_status(StageStatus::kOk, "all of it")}}));
  auto got = store_->get(s.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->result, Result::kCancelled);
  EXPECT_EQ(got->stage(Stage::kRun).status, StageStatus::kSignaled);
  EXPECT_EQ(got->stage(Stage::kRun).stdout_data, "so far");
  EXPECT_TRUE(take_events().empty());
}

// Many threads making durable commits at once (they share fdatasyncs): every one is there
// after the store is closed and opened again, and closing leaks no descriptor.
TEST(StoreGroupCommitTest, ConcurrentDurableCommitsAllSurviveAReopen) {
  TempDir dir;
  const int fds_before = open_fd_count();
  constexpr int kThreads = 8, kEach = 25;
  std::vector<std::vector<std::string>> ids(kThreads);
  {
    auto store = open_sqlite_store({.path = dir.file("cutor.db")});
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        try {
          for (int i = 0; i < kEach; ++i) {
            Submission s = make_submission();
            store->insert(s, 0);
            ids[t].push_back(s.id);
            // Half of them finished too (a second durable commit per submission).
            if (i % 2 == 0 && !store->finish(s.id, Result::kOk)) ++failures;
          }
        } catch (const std::exception&) {
          ++failures;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
  }
  EXPECT_EQ(open_fd_count(), fds_before);
  auto store = open_sqlite_store({.path = dir.file("cutor.db")});
  EXPECT_EQ(store->count_all(), kThreads * kEach);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kEach; ++i) {
      auto got = store->get(ids[t][i]);
      ASSERT_TRUE(got) << ids[t][i];
      if (i % 2 == 0) {
        EXPECT_EQ(got->status, SubmissionStatus::kFinished);
        EXPECT_EQ(got->result, Result::kOk);
      } else {
        EXPECT_EQ(got->status, SubmissionStatus::kQueued);
      }
    }
  }
}

// The WAL file removed behind the store's back: SQLite keeps writing to the unlinked file,
// so nothing is durable any more. A durable commit must say so instead of returning as if
// its row were on disk, and a finish still wakes its listeners (the row is committed).
TEST(StoreGroupCommitTest, ACommitThatCannotBeSyncedFailsLoudly) {
  TempDir dir;
  auto store = open_sqlite_store({.path = dir.file("cutor.db")});
  Submission first = make_submission();
  store->insert(first, 0);  // creates the WAL file
  ASSERT_TRUE(std::filesystem::exists(dir.file("cutor.db-wal")));
  std::vector<Event> events;
  std::mutex mu;
  int handle = store->add_listener([&](const std::string& id, SubmissionStatus st) {
    std::lock_guard lock(mu);
    events.emplace_back(id, st);
  });
  ASSERT_EQ(::unlink(dir.file("cutor.db-wal").c_str()), 0);

  try {
    store->insert(make_submission(), 0);
    ADD_FAILURE() << "insert returned although its commit cannot be synced";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("cutor.db-wal"), std::string::npos) << e.what();
  }
  EXPECT_THROW(store->finish(first.id, Result::kOk), StoreError);
  {
    std::lock_guard lock(mu);
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back(), (Event{first.id, SubmissionStatus::kFinished}));
  }
  store->remove_listener(handle);
}

// insert_unsynced: committed and claimable at once, bounded by max_queue like insert(), and
// sync_committed() then makes it durable, or says it could not.
TEST(StoreGroupCommitTest, UnsyncedInsertIsCommittedAndSyncedOnRequest) {
  TempDir dir;
  {
    auto store = open_sqlite_store({.path = dir.file("cutor.db")});
    store->sync_committed();  // nothing committed yet: returns at once
    Submission s = make_submission();
    store->insert_unsynced(s, 1);
    auto got = store->get(s.id);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->status, SubmissionStatus::kQueued);
    EXPECT_THROW(store->insert_unsynced(make_submission(), 1), QueueFullError);
    std::stop_source never;
    auto claimed = store->claim_next(never.get_token());
    ASSERT_TRUE(claimed);
    EXPECT_EQ(claimed->id, s.id);
    store->sync_committed();
  }
  auto store = open_sqlite_store({.path = dir.file("cutor.db")});
  EXPECT_EQ(store->count_all(), 1);

  store->insert_unsynced(make_submission(), 0);
  ASSERT_EQ(::unlink(dir.file("cutor.db-wal").c_str()), 0);
  store->insert_unsynced(make_submission(), 0);  // no fsync asked for: no error yet
  EXPECT_THROW(store->sync_committed(), StoreError);
}

// Without fsync (synchronous_full=false) there is nothing to fail: the same removal goes
// unnoticed, as it always did.
TEST(StoreGroupCommitTest, WithoutFsyncTheWalIsNotChecked) {
  TempDir dir;
  auto store = open_sqlite_store({.path = dir.file("cutor.db"), .synchronous_full = false});
  store->insert(make_submission(), 0);
  ASSERT_EQ(::unlink(dir.file("cutor.db-wal").c_str()), 0);
  EXPECT_NO_THROW(store->insert(make_submission(), 0));
}

}  // namespace
}  // namespace cutor
