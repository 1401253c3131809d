// The SQLite request store: round trips, the status machine's edges, claiming under
// concurrency, crash recovery, paging, back-pressure and listeners.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "store/submission_store.h"
#include "store_test_util.h"

namespace cutor {
namespace {

using namespace std::chrono_literals;
using testing_util::same_request;

// A private directory under /tmp, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/cutor-store-test-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Requests stop when it goes out of scope: declared after a claimer's future, it lets
// that future's destructor return even when an assertion failed first.
struct StopOnExit {
  std::stop_source& source;
  ~StopOnExit() { source.request_stop(); }
};

Submission make_submission(const std::string& content = "print(1)") {
  Submission s;
  s.id = new_uuid();
  s.created_at_ms = now_unix_ms();
  s.request.files.push_back({"run.sh", "python3 main.py \"$@\"\n"});
  s.request.files.push_back({"main.py", content});
  s.request.stdin_data = "hello";
  s.request.args = {"a", "b"};
  s.request.env = {{"KEY", "value"}};
  s.request.limits[static_cast<int>(Stage::kRun)] = {.cpu_time_ms = 5000,
                                                     .wall_time_ms = 10000,
                                                     .memory_bytes = 1 << 28,
                                                     .processes = 64,
                                                     .output_bytes = 1 << 20,
                                                     .file_size_bytes = 1 << 26};
  return s;
}

StageResult make_stage(StageStatus status, const std::string& out) {
  StageResult r;
  r.status = status;
  r.stdout_data = out;
  r.stderr_data = std::string("err\0\xff", 5);
  r.output = out + r.stderr_data;
  if (status == StageStatus::kOk) r.code = 0;
  r.wall_time_us = 1234;
  r.cpu_time_us = 567;
  r.memory_bytes = 1 << 20;
  r.truncated = true;
  return r;
}

const StageResult kEmptyPending{};

StageResult empty_skipped() {
  StageResult r;
  r.status = StageStatus::kSkipped;
  return r;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { open(); }
  void open() { store_ = open_sqlite_store({.path = dir_.file("cutor.db")}); }
  void reopen() {
    store_.reset();
    open();
  }

  TempDir dir_;
  std::unique_ptr<SubmissionStore> store_;
};

TEST_F(StoreTest, InsertThenGetRoundTripsBinaryRequest) {
  Submission s = make_submission(std::string("a\0b\xff\xfe\x00z", 7));
  s.request.stdin_data = std::string("\0\0\xff", 3);
  s.request.files.push_back({"empty.txt", ""});
  s.request.limits[static_cast<int>(Stage::kCompile)].memory_bytes = int64_t{8} << 30;
  int64_t seq = store_->insert(s, 0);
  EXPECT_GT(seq, 0);

  auto got = store_->get(s.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->id, s.id);
  EXPECT_EQ(got->seq, seq);
  EXPECT_EQ(got->status, SubmissionStatus::kQueued);
  EXPECT_FALSE(got->result);
  EXPECT_EQ(got->created_at_ms, s.created_at_ms);
  EXPECT_FALSE(got->finished_at_ms);
  EXPECT_TRUE(same_request(got->request, s.request));
  for (Stage st : kAllStages) EXPECT_EQ(got->stage(st), kEmptyPending);

  EXPECT_FALSE(store_->get("no-such-id"));
  EXPECT_GT(store_->insert(make_submission(), 0), seq);
}

TEST_F(StoreTest, InsertIgnoresCallerStatusAndStages) {
  Submission s = make_submission();
  s.status = SubmissionStatus::kRunning;
  s.result = Result::kOk;
  s.stage(Stage::kRun) = make_stage(StageStatus::kOk, "x");
  store_->insert(s, 0);
  auto got = store_->get(s.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, SubmissionStatus::kQueued);
  EXPECT_FALSE(got->result);
  EXPECT_EQ(got->stage(Stage::kRun), kEmptyPending);
}

TEST_F(StoreTest, DuplicateIdIsAStoreError) {
  Submission s = make_submission();
  store_->insert(s, 0);
  EXPECT_THROW(store_->insert(s, 0), StoreError);
  EXPECT_EQ(store_->count_all(), 1);
}

TEST_F(StoreTest, StageResultsRoundTrip) {
  Submission s = make_submission();
  store_->insert(s, 0);
  StageResult build = make_stage(StageStatus::kOk, "");
  StageResult run = make_stage(StageStatus::kSignaled, std::string("out\0put\xff\x80", 9));
  run.code.reset();
  run.signal = 11;
  run.memory_bytes = int64_t{5} << 30;
  EXPECT_TRUE(store_->set_status(s.id, SubmissionStatus::kBuilding));
  EXPECT_TRUE(store_->set_stage(s.id, Stage::kBuild, build));
  EXPECT_TRUE(store_->set_status(s.id, SubmissionStatus::kRunning));
  EXPECT_TRUE(store_->set_stage(s.id, Stage::kRun, run));

  auto got = store_->get(s.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, SubmissionStatus::kRunning);
  EXPECT_EQ(got->stage(Stage::kBuild), build);
  EXPECT_EQ(got->stage(Stage::kRun), run);
  EXPECT_EQ(got->stage(Stage::kEnvironment), kEmptyPending);

  // A later write replaces the stage (RUNNING with output so far, then the end).
  StageResult final_run = make_stage(StageStatus::kNonzeroExit, "done");
  final_run.code = 3;
  final_run.truncated = false;
  EXPECT_TRUE(store_->set_stage(s.id, Stage::kRun, final_run));
  EXPECT_EQ(store_->get(s.id)->stage(Stage::kRun), final_run);
}

TEST_F(StoreTest, LargeOutputRoundTrips) {
  Submission s = make_submission();
  store_->insert(s, 0);
  std::string big(5 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131);
  StageResult r = make_stage(StageStatus::kOutputLimitExceeded, big);
  EXPECT_TRUE(store_->set_stage(s.id, Stage::kRun, r));
  EXPECT_EQ(store_->get(s.id)->stage(Stage::kRun), r);
}

TEST_F(StoreTest, FinishIsTerminalAndHappensOnce) {
  Submission s = make_submission();
  store_->insert(s, 0);
  StageResult build = make_stage(StageStatus::kOk, "built");
  StageResult compile = make_stage(StageStatus::kRunning, "half");
  store_->set_status(s.id, SubmissionStatus::kCompiling);
  store_->set_stage(s.id, Stage::kBuild, build);
  store_->set_stage(s.id, Stage::kCompile, compile);
  int64_t before = now_unix_ms();

  EXPECT_TRUE(store_->finish(s.id, Result::kInternalError));
  EXPECT_FALSE(store_->finish(s.id, Result::kOk));
  EXPECT_FALSE(store_->set_status(s.id, SubmissionStatus::kRunning));
  EXPECT_FALSE(store_->set_stage(s.id, Stage::kRun, make_stage(StageStatus::kOk, "late")));

  auto got = store_->get(s.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, SubmissionStatus::kFinished);
  EXPECT_EQ(got->result, Result::kInternalError);
  ASSERT_TRUE(got->finished_at_ms);
  EXPECT_GE(*got->finished_at_ms, before);
  EXPECT_EQ(got->stage(Stage::kBuild), build);                  // finished stages kept
  EXPECT_EQ(got->stage(Stage::kCompile), empty_skipped());      // RUNNING -> SKIPPED
  EXPECT_EQ(got->stage(Stage::kEnvironment), empty_skipped());  // PENDING -> SKIPPED
  EXPECT_EQ(got->stage(Stage::kRun), empty_skipped());          // late write ignored
}

TEST_F(StoreTest, FinishRacesFromManyThreadsSucceedOnce) {
  Submission s = make_submission();
  store_->insert(s, 0);
  std::atomic<int> wins = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&] {
      if (store_->finish(s.id, Result::kOk)) ++wins;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins, 1);
}

TEST_F(StoreTest, WritesToUnknownIdsAreIgnored) {
  EXPECT_FALSE(store_->set_status("nope", SubmissionStatus::kBuilding));
  EXPECT_FALSE(store_->set_stage("nope", Stage::kRun, make_stage(StageStatus::kOk, "")));
  EXPECT_FALSE(store_->finish("nope", Result::kOk));
  EXPECT_EQ(store_->count_all(), 0);
}

TEST_F(StoreTest, SetStatusFinishedIsRefused) {
  Submission s = make_submission();
  store_->insert(s, 0);
  EXPECT_THROW(store_->set_status(s.id, SubmissionStatus::kFinished), std::invalid_argument);
  EXPECT_EQ(store_->get(s.id)->status, SubmissionStatus::kQueued);
}

TEST_F(StoreTest, CancelQueuedNeverRuns) {
  Submission a = make_submission(), b = make_submission(), c = make_submission();
  store_->insert(a, 0);
  store_->insert(b, 0);
  store_->insert(c, 0);
  // b is claimed but not started; a is not even claimed.
  std::stop_source never;
  auto claimed = store_->claim_next(never.get_token());
  ASSERT_TRUE(claimed);
  EXPECT_EQ(claimed->id, a.id);
  EXPECT_EQ(store_->cancel(b.id), CancelOutcome::kCancelled);
  EXPECT_EQ(store_->cancel(a.id), CancelOutcome::kCancelled);

  for (const auto& id : {a.id, b.id}) {
    auto got = store_->get(id);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->status, SubmissionStatus::kFinished);
    EXPECT_EQ(got->result, Result::kCancelled);
    EXPECT_TRUE(got->finished_at_ms);
    for (Stage st : kAllStages) EXPECT_EQ(got->stage(st), empty_skipped());
  }
  // The executor holding a's claim learns of it by being refused.
  EXPECT_FALSE(store_->set_status(a.id, SubmissionStatus::kBuilding));
  // The cancelled b is never handed out: the next claim skips to c.
  auto next = store_->claim_next(never.get_token());
  ASSERT_TRUE(next);
  EXPECT_EQ(next->id, c.id);
}

TEST_F(StoreTest, CancelRunningSignalsTheRunningStage) {
  Submission s = make_submission();
  store_->insert(s, 0);
  std::vector<std::pair<std::string, SubmissionStatus>> events;
  std::mutex mu;
  store_->add_listener([&](const std::string& id, SubmissionStatus st) {
    std::lock_guard lock(mu);
    events.emplace_back(id, st);
  });
  std::stop_source never;
  ASSERT_TRUE(store_->claim_next(never.get_token()));
  StageResult build = make_stage(StageStatus::kOk, "built");
  StageResult running = make_stage(StageStatus::kRunning, std::string("partial\0", 8));
  running.truncated = false;
  store_->set_status(s.id, SubmissionStatus::kBuilding);
  store_->set_stage(s.id, Stage::kBuild, build);
  store_->set_stage(s.id, Stage::kCompile, make_stage(StageStatus::kSkipped, ""));
  store_->set_status(s.id, SubmissionStatus::kRunning);
  store_->set_stage(s.id, Stage::kRun, running);

  EXPECT_EQ(store_->cancel(s.id), CancelOutcome::kCancelled);
  auto got = store_->get(s.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, SubmissionStatus::kFinished);
  EXPECT_EQ(got->result, Result::kCancelled);
  EXPECT_EQ(got->stage(Stage::kBuild), build);
  EXPECT_EQ(got->stage(Stage::kEnvironment), empty_skipped());
  const StageResult& run = got->stage(Stage::kRun);
  EXPECT_EQ(run.status, StageStatus::kSignaled);
  EXPECT_EQ(run.signal, 9);
  EXPECT_FALSE(run.code);
  EXPECT_EQ(run.stdout_data, running.stdout_data);  // output so far is kept
  EXPECT_EQ(run.output, running.output);
  EXPECT_EQ(run.wall_time_us, running.wall_time_us);

  // Late writes from the worker that is being killed change nothing.
  EXPECT_FALSE(store_->set_stage(s.id, Stage::kRun, make_stage(StageStatus::kOk, "late")));
  EXPECT_FALSE(store_->finish(s.id, Result::kOk));
  EXPECT_EQ(store_->get(s.id)->result, Result::kCancelled);

  std::lock_guard lock(mu);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back(), std::make_pair(s.id, SubmissionStatus::kFinished));
}

TEST_F(StoreTest, CancelFinishedAndUnknown) {
  Submission s = make_submission();
  store_->insert(s, 0);
  store_->finish(s.id, Result::kOk);
  EXPECT_EQ(store_->cancel(s.id), CancelOutcome::kAlreadyFinished);
  EXPECT_EQ(store_->get(s.id)->result, Result::kOk);
  EXPECT_EQ(store_->cancel("00000000-0000-4000-8000-000000000000"), CancelOutcome::kNotFound);
  EXPECT_EQ(store_->cancel(""), CancelOutcome::kNotFound);
}

TEST_F(StoreTest, ClaimsOldestFirstAndKeepsStatusQueued) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    Submission s = make_submission();
    ids.push_back(s.id);
    store_->insert(s, 0);
  }
  std::stop_source never;
  for (const auto& id : ids) {
    auto c = store_->claim_next(never.get_token());
    ASSERT_TRUE(c);
    EXPECT_EQ(c->id, id);
    EXPECT_EQ(c->status, SubmissionStatus::kQueued);
    EXPECT_EQ(store_->get(id)->status, SubmissionStatus::kQueued);
    EXPECT_TRUE(same_request(c->request, store_->get(id)->request));
  }
}

TEST_F(StoreTest, ClaimBlocksUntilInsert) {
  std::stop_source stop;
  auto claimed =
      std::async(std::launch::async, [&] { return store_->claim_next(stop.get_token()); });
  StopOnExit stop_on_exit{stop};
  // Nothing to claim: still waiting after a while, even when woken.
  EXPECT_EQ(claimed.wait_for(100ms), std::future_status::timeout);
  store_->wake_all();
  EXPECT_EQ(claimed.wait_for(50ms), std::future_status::timeout);

  Submission s = make_submission();
  store_->insert(s, 0);
  ASSERT_EQ(claimed.wait_for(10s), std::future_status::ready);
  auto got = claimed.get();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->id, s.id);
}

TEST_F(StoreTest, ClaimReturnsNulloptOnStop) {
  // On the heap: GCC 12 at -O1 wrongly warns that a stack stop_source in this function
  // "may be used uninitialized" (its constructor passes *this to its state).
  auto owned_stop = std::make_unique<std::stop_source>();
  std::stop_source& stop = *owned_stop;
  const std::stop_token token = stop.get_token();
  auto claimed = std::async(std::launch::async, [&] { return store_->claim_next(token); });
  StopOnExit stop_on_exit{stop};
  EXPECT_EQ(claimed.wait_for(50ms), std::future_status::timeout);
  stop.request_stop();
  ASSERT_EQ(claimed.wait_for(10s), std::future_status::ready);
  EXPECT_FALSE(claimed.get());

  // Already stopped: returns at once, without claiming the queued row.
  Submission s = make_submission();
  store_->insert(s, 0);
  EXPECT_FALSE(store_->claim_next(token));
  std::stop_source fresh;
  auto c = store_->claim_next(fresh.get_token());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->id, s.id);
}

TEST_F(StoreTest, ClaimsAreNeverHandedOutTwice) {
  constexpr int kRows = 300, kThreads = 6;
  auto owned_stop = std::make_unique<std::stop_source>();  // see ClaimReturnsNulloptOnStop
  std::stop_source& stop = *owned_stop;
  const std::stop_token token = stop.get_token();
  std::mutex mu;
  std::multiset<std::string> claimed;
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t)
    workers.emplace_back([&] {
      while (auto s = store_->claim_next(token)) {
        std::lock_guard lock(mu);
        claimed.insert(s->id);
      }
    });
  // Inserts race with the claims: half before the workers find the queue, half during.
  std::set<std::string> inserted;
  for (int i = 0; i < kRows; ++i) {
    Submission s = make_submission();
    inserted.insert(s.id);
    store_->insert(s, 0);
  }
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(mu);
      if (claimed.size() >= kRows) break;
    }
    std::this_thread::sleep_for(5ms);
  }
  stop.request_stop();
  for (auto& w : workers) w.join();
  ASSERT_EQ(claimed.size(), static_cast<size_t>(kRows));
  EXPECT_EQ(std::set<std::string>(claimed.begin(), claimed.end()), inserted);
}

TEST_F(StoreTest, ClaimsSurviveReopenButAreNotReissued) {
  Submission a = make_submission(), b = make_submission();
  store_->insert(a, 0);
  store_->insert(b, 0);
  std::stop_source never;
  ASSERT_EQ(store_->claim_next(never.get_token())->id, a.id);
  reopen();  // a lease is durable: without a requeue, a stays claimed
  auto c = store_->claim_next(never.get_token());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->id, b.id);
}

TEST_F(StoreTest, RequeueUnfinishedAfterACrash) {
  Submission done = make_submission(), claimed = make_submission(), half = make_submission(),
             waiting = make_submission(), cancelled = make_submission();
  StageResult done_run = make_stage(StageStatus::kOk, "42\n");
  store_.reset();  // the "server" that crashes is a child process with its own store
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto store = open_sqlite_store({.path = dir_.file("cutor.db")});
    std::stop_source never;
    for (auto* s : {&done, &claimed, &half, &waiting, &cancelled}) store->insert(*s, 0);
    store->claim_next(never.get_token());  // done
    store->set_status(done.id, SubmissionStatus::kRunning);
    store->set_stage(done.id, Stage::kRun, done_run);
    store->finish(done.id, Result::kOk);
    store->claim_next(never.get_token());  // claimed: leased, never started
    store->claim_next(never.get_token());  // half: in the middle of its run
    store->set_status(half.id, SubmissionStatus::kBuilding);
    store->set_stage(half.id, Stage::kBuild, make_stage(StageStatus::kOk, "b"));
    store->set_status(half.id, SubmissionStatus::kRunning);
    store->set_stage(half.id, Stage::kRun, make_stage(StageStatus::kRunning, "so far"));
    store->cancel(cancelled.id);
    raise(SIGKILL);  // no destructors, no clean close
    _exit(99);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;

  open();
  std::vector<std::pair<std::string, SubmissionStatus>> events;
  store_->add_listener(
      [&](const std::string& id, SubmissionStatus st) { events.emplace_back(id, st); });
  EXPECT_EQ(store_->requeue_unfinished(), 3);
  EXPECT_EQ(events.size(), 3u);
  for (const auto& [id, st] : events) EXPECT_EQ(st, SubmissionStatus::kQueued);

  for (const auto& id : {claimed.id, half.id, waiting.id}) {
    auto got = store_->get(id);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->status, SubmissionStatus::kQueued);
    EXPECT_FALSE(got->result);
    for (Stage st : kAllStages) EXPECT_EQ(got->stage(st), kEmptyPending) << stage_name(st);
  }
  auto d = store_->get(done.id);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, SubmissionStatus::kFinished);
  EXPECT_EQ(d->result, Result::kOk);
  EXPECT_EQ(d->stage(Stage::kRun), done_run);
  EXPECT_EQ(store_->get(cancelled.id)->result, Result::kCancelled);

  // They run again, oldest first; finished ones never come back.
  std::stop_source stop;
  for (const auto& id : {claimed.id, half.id, waiting.id}) {
    auto c = store_->claim_next(stop.get_token());
    ASSERT_TRUE(c);
    EXPECT_EQ(c->id, id);
  }
  EXPECT_EQ(store_->count_unfinished(), 3);
  EXPECT_EQ(store_->requeue_unfinished(), 3);  // idempotent: still the same three
}

TEST_F(StoreTest, ListPagesNewestFirstWithStatusFilter) {
  std::vector<std::string> ids;  // insert order
  for (int i = 0; i < 23; ++i) {
    Submission s = make_submission("n" + std::to_string(i));
    ids.push_back(s.id);
    store_->insert(s, 0);
    if (i % 3 == 0) store_->finish(s.id, Result::kOk);
  }
  // Everything, 10 a page.
  std::vector<std::string> seen;
  std::optional<std::string> cursor;
  int pages = 0;
  do {
    SubmissionPage page = store_->list(std::nullopt, 10, cursor);
    ++pages;
    for (const auto& s : page.submissions) seen.push_back(s.id);
    cursor = page.next_cursor;
  } while (cursor);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, std::vector<std::string>(ids.rbegin(), ids.rend()));

  // Whole submissions come back, stages included.
  SubmissionPage first = store_->list(std::nullopt, 1, std::nullopt);
  ASSERT_EQ(first.submissions.size(), 1u);
  EXPECT_EQ(first.submissions[0].request.files[1].content, "n22");
  ASSERT_TRUE(first.next_cursor);

  // Filtered: the 8 finished ones (i = 0, 3, ..., 21), 4 a page: exactly two pages.
  SubmissionPage p1 = store_->list(SubmissionStatus::kFinished, 4, std::nullopt);
  ASSERT_EQ(p1.submissions.size(), 4u);
  ASSERT_TRUE(p1.next_cursor);
  EXPECT_EQ(p1.submissions[0].id, ids[21]);
  EXPECT_EQ(p1.submissions[0].stage(Stage::kRun), empty_skipped());
  SubmissionPage p2 = store_->list(SubmissionStatus::kFinished, 4, p1.next_cursor);
  ASSERT_EQ(p2.submissions.size(), 4u);
  EXPECT_EQ(p2.submissions[3].id, ids[0]);
  EXPECT_FALSE(p2.next_cursor);  // a full last page has no next page
  for (const auto& s : p2.submissions) EXPECT_EQ(s.status, SubmissionStatus::kFinished);

  EXPECT_EQ(store_->list(SubmissionStatus::kQueued, 1000, std::nullopt).submissions.size(), 15u);
  EXPECT_TRUE(store_->list(SubmissionStatus::kRunning, 10, std::nullopt).submissions.empty());
  EXPECT_FALSE(store_->list(SubmissionStatus::kRunning, 10, std::nullopt).next_cursor);
}

TEST_F(StoreTest, BadCursorsAndLimitsAreRefused) {
  store_->insert(make_submission(), 0);
  const std::vector<std::string> bads = {"",
                                         "c",
                                         "x1",
                                         "1",
                                         "c-1",
                                         "c0",
                                         "c01",
                                         "c1a",
                                         "c 1",
                                         "C1",
                                         "c99999999999999999999",
                                         "c9223372036854775808",
                                         std::string("c1\0", 3)};
  for (const std::string& bad : bads)
    EXPECT_THROW(store_->list(std::nullopt, 10, bad), std::invalid_argument) << bad;
  EXPECT_THROW(store_->list(std::nullopt, 0, std::nullopt), std::invalid_argument);
  EXPECT_THROW(store_->list(std::nullopt, -5, std::nullopt), std::invalid_argument);
  // A well-formed cursor past every row is simply an empty page.
  EXPECT_TRUE(store_->list(std::nullopt, 10, "c1").submissions.empty());
}

TEST_F(StoreTest, QueueFullRefusesWithNothingStored) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    Submission s = make_submission();
    ids.push_back(s.id);
    store_->insert(s, 3);
  }
  Submission extra = make_submission();
  EXPECT_THROW(store_->insert(extra, 3), QueueFullError);
  try {
    store_->insert(extra, 3);
  } catch (const StoreError& e) {  // a QueueFullError is a StoreError
    EXPECT_NE(std::string(e.what()).find("queue full"), std::string::npos);
  }
  EXPECT_FALSE(store_->get(extra.id));
  EXPECT_EQ(store_->count_all(), 3);
  // Running ones count too; finished and cancelled ones free a place.
  store_->set_status(ids[0], SubmissionStatus::kRunning);
  EXPECT_THROW(store_->insert(extra, 3), QueueFullError);
  store_->cancel(ids[1]);
  EXPECT_NO_THROW(store_->insert(extra, 3));
  EXPECT_THROW(store_->insert(make_submission(), 3), QueueFullError);
  EXPECT_NO_THROW(store_->insert(make_submission(), 0));  // 0: unbounded
  EXPECT_EQ(store_->count_unfinished(), 4);
}

TEST_F(StoreTest, ListenersSeeEveryChangeAfterCommit) {
  std::vector<std::pair<std::string, SubmissionStatus>> events;
  std::mutex mu;
  bool visible_on_call = true;
  // Runs outside the store's locks: reading the store from it must not deadlock, and
  // the change it is told about is already committed.
  int handle = store_->add_listener([&](const std::string& id, SubmissionStatus st) {
    auto got = store_->get(id);
    std::lock_guard lock(mu);
    if (!got || got->status != st) visible_on_call = false;
    events.emplace_back(id, st);
  });
  int thrower = store_->add_listener(
      [](const std::string&, SubmissionStatus) { throw std::runtime_error("listener bug"); });

  Submission s = make_submission(), t = make_submission();
  store_->insert(s, 0);
  store_->insert(t, 0);
  store_->set_status(s.id, SubmissionStatus::kBuilding);
  store_->set_stage(s.id, Stage::kBuild, make_stage(StageStatus::kOk, ""));
  store_->finish(s.id, Result::kOk);
  store_->finish(s.id, Result::kOk);  // refused: no event
  store_->cancel(t.id);
  store_->remove_listener(handle);
  store_->remove_listener(thrower);
  store_->insert(make_submission(), 0);  // after removal: no event

  std::vector<std::pair<std::string, SubmissionStatus>> expected = {
      {s.id, SubmissionStatus::kQueued},   {t.id, SubmissionStatus::kQueued},
      {s.id, SubmissionStatus::kBuilding}, {s.id, SubmissionStatus::kBuilding},
      {s.id, SubmissionStatus::kFinished}, {t.id, SubmissionStatus::kFinished}};
  std::lock_guard lock(mu);
  EXPECT_EQ(events, expected);
  EXPECT_TRUE(visible_on_call);
}

TEST_F(StoreTest, CountsNameEveryStatusAndResult) {
  auto by_status = store_->count_by_status();
  ASSERT_EQ(by_status.size(), 6u);
  for (const auto& [name, n] : by_status) EXPECT_EQ(n, 0) << name;
  EXPECT_EQ(by_status[0].first, "QUEUED");
  EXPECT_EQ(by_status[5].first, "FINISHED");
  auto by_result = store_->count_by_result();
  ASSERT_EQ(by_result.size(), static_cast<size_t>(kResultCount));
  for (const auto& [name, n] : by_result) EXPECT_EQ(n, 0) << name;

  Submission a = make_submission(), b = make_submission(), c = make_submission(),
             d = make_submission();
  for (auto* s : {&a, &b, &c, &d}) store_->insert(*s, 0);
  store_->set_status(b.id, SubmissionStatus::kCompiling);
  store_->finish(c.id, Result::kRuntimeError);
  store_->cancel(d.id);
  EXPECT_EQ(store_->count_all(), 4);
  EXPECT_EQ(store_->count_unfinished(), 2);
  std::map<std::string, int64_t> st(by_status.begin(), by_status.end());
  for (const auto& [name, n] : store_->count_by_status()) st[name] = n;
  EXPECT_EQ(st["QUEUED"], 1);
  EXPECT_EQ(st["COMPILING"], 1);
  EXPECT_EQ(st["FINISHED"], 2);
  EXPECT_EQ(st["RUNNING"], 0);
  std::map<std::string, int64_t> res;
  for (const auto& [name, n] : store_->count_by_result()) res[name] = n;
  EXPECT_EQ(res.size(), static_cast<size_t>(kResultCount));
  EXPECT_EQ(res["RUNTIME_ERROR"], 1);
  EXPECT_EQ(res["CANCELLED"], 1);
  EXPECT_EQ(res["OK"], 0);
}

TEST_F(StoreTest, DataSurvivesCloseAndReopen) {
  Submission s = make_submission(std::string("\0\xff", 2));
  int64_t seq = store_->insert(s, 0);
  StageResult run = make_stage(StageStatus::kOk, "out");
  store_->set_status(s.id, SubmissionStatus::kRunning);
  store_->set_stage(s.id, Stage::kRun, run);
  store_->finish(s.id, Result::kOk);
  reopen();
  auto got = store_->get(s.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->seq, seq);
  EXPECT_EQ(got->result, Result::kOk);
  EXPECT_EQ(got->stage(Stage::kRun), run);
  EXPECT_TRUE(same_request(got->request, s.request));
  EXPECT_GT(store_->insert(make_submission(), 0), seq);  // seq keeps growing
}

TEST_F(StoreTest, CommittedDataSurvivesAKill) {
  // insert() returning means committed: a SIGKILL right after loses nothing.
  store_.reset();
  Submission s = make_submission();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto store = open_sqlite_store({.path = dir_.file("cutor.db"), .synchronous_full = false});
    store->insert(s, 0);
    store->set_stage(s.id, Stage::kBuild, make_stage(StageStatus::kOk, "x"));
    raise(SIGKILL);
    _exit(99);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  open();
  auto got = store_->get(s.id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->stage(Stage::kBuild).stdout_data, "x");
}

TEST(StoreMemory, InMemoryStoreWorks) {
  auto store = open_sqlite_store({.path = ":memory:"});
  Submission s = make_submission();
  store->insert(s, 0);
  ASSERT_TRUE(store->get(s.id));
  std::stop_source never;
  EXPECT_EQ(store->claim_next(never.get_token())->id, s.id);
  EXPECT_TRUE(store->finish(s.id, Result::kOk));
  EXPECT_EQ(store->list(std::nullopt, 5, std::nullopt).submissions.size(), 1u);
  // Two in-memory stores are separate databases.
  auto other = open_sqlite_store({.path = ":memory:"});
  EXPECT_FALSE(other->get(s.id));
}

// Writes raw SQL into a store's file, as corruption or an old/new version would.
void raw_exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

TEST(StoreOpen, UnknownSchemaVersionIsRefused) {
  TempDir dir;
  open_sqlite_store({.path = dir.file("db")}).reset();
  raw_exec(dir.file("db"), "PRAGMA user_version = 99");
  try {
    open_sqlite_store({.path = dir.file("db")});
    FAIL() << "opened a database of schema version 99";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("db")), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("99"), std::string::npos) << e.what();
  }
}

// A version 1 database (before test cases) is migrated in place, its rows kept.
TEST(StoreOpen, SchemaVersionOneIsMigrated) {
  TempDir dir;
  Submission old;
  old.id = new_uuid();
  old.request.files.push_back({"run.sh", "echo"});
  {
    auto store = open_sqlite_store({.path = dir.file("db")});
    store->insert(old, 0);
  }
  raw_exec(dir.file("db"),
           "DROP TABLE test_results; DROP TABLE runtimes; DROP TABLE submission_counts;"
           " DROP TRIGGER submission_counts_insert; DROP TRIGGER submission_counts_delete;"
           " DROP TRIGGER submission_counts_update;"
           " PRAGMA user_version = 1");
  auto store = open_sqlite_store({.path = dir.file("db")});
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

TEST(StoreOpen, CorruptRowsGiveStoreErrors) {
  TempDir dir;
  auto store = open_sqlite_store({.path = dir.file("db")});
  Submission a = make_submission(), b = make_submission();
  store->insert(a, 0);
  store->insert(b, 0);
  raw_exec(dir.file("db"),
           "UPDATE requests SET body = x'01ff' WHERE seq = 1;"
           "UPDATE submissions SET status = 42 WHERE seq = 2");
  EXPECT_THROW(store->get(a.id), StoreError);
  EXPECT_THROW(store->get(b.id), StoreError);
  EXPECT_THROW(store->list(std::nullopt, 10, std::nullopt), StoreError);
  // The store is still usable afterwards.
  Submission c = make_submission();
  store->insert(c, 0);
  EXPECT_TRUE(store->get(c.id));
}

TEST(StoreOpen, UnopenablePathIsAStoreErrorNamingIt) {
  try {
    open_sqlite_store({.path = "/nonexistent-dir-cutor/sub/db"});
    FAIL() << "opened a database in a missing directory";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir-cutor/sub/db"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace cutor

namespace cutor {
namespace {

int64_t count_rows(const std::string& path, const std::string& table) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
    throw std::runtime_error("open " + path);
  sqlite3_stmt* st = nullptr;
  const std::string sql = "SELECT count(*) FROM " + table;
  int64_t n = -1;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

TEST_F(StoreTest, RetentionLeavesNoRowOfADeletedSubmission) {
  Submission s = make_submission();
  s.request.tests.push_back({.name = "a"});
  s.request.tests.push_back({.name = "b"});
  store_->insert(s, 0);
  TestResult t;
  t.name = "a";
  t.verdict = Verdict::kAccepted;
  ASSERT_TRUE(store_->write_tests(s.id, {{0, t}}));
  ASSERT_TRUE(store_->finish_with_stages(s.id, Result::kOk,
                                         {{Stage::kRun, make_stage(StageStatus::kOk, "out")}}));
  const std::string db = dir_.file("cutor.db");
  for (const char* table : {"submissions", "requests", "stages", "test_results"})
    ASSERT_GT(count_rows(db, table), 0) << table;  // else the check below proves nothing
  EXPECT_EQ(store_->delete_finished_before(now_unix_ms() + 1, 500), 1);
  for (const char* table : {"submissions", "requests", "stages", "test_results"})
    EXPECT_EQ(count_rows(db, table), 0) << table;
}

}  // namespace
}  // namespace cutor
