// SQLite checkpoints happen off the commit path (issue 12): with the store's checkpointer
// held back, commits grow the WAL and leave the database file untouched (no commit ran a
// checkpoint); with it running, the WAL is copied into the database and emptied.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <limits>
#include <thread>

#include "store/submission_store.h"

namespace cutor {
namespace {

using namespace std::chrono_literals;

constexpr int kInserts = 200;
constexpr size_t kFileBytes = 100 * 1024;  // ~20 MB in all: 5,000 pages, past 1,000
constexpr int64_t kWritten = int64_t{kInserts} * kFileBytes;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/cutor-ckpt-test-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

int64_t file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

bool eventually(const std::function<bool()>& pred, std::chrono::seconds within) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

// Different bytes per submission, so nothing compresses away in the comparison.
std::vector<std::string> insert_many(SubmissionStore& store) {
  std::vector<std::string> ids;
  for (int i = 0; i < kInserts; ++i) {
    Submission s;
    s.id = new_uuid();
    s.created_at_ms = now_unix_ms();
    std::string content(kFileBytes, static_cast<char>('a' + i % 26));
    content.replace(0, s.id.size(), s.id);
    s.request.files.push_back({"run.sh", std::move(content)});
    store.insert(s, 0);
    ids.push_back(s.id);
  }
  return ids;
}

SqliteStoreOptions options_for(const std::string& path) {
  SqliteStoreOptions o;
  o.path = path;
  o.synchronous_full = false;  // the fsyncs are not what is measured here
  return o;
}

TEST(StoreCheckpointTest, CommitsNeverRunACheckpoint) {
  TempDir dir;
  const std::string db = dir.file("store.db");
  SqliteStoreOptions o = options_for(db);
  o.checkpoint_interval = 1h;  // the checkpointer stays asleep during the test
  o.checkpoint_at_wal_frames = std::numeric_limits<int64_t>::max();
  auto store = open_sqlite_store(o);
  const int64_t db_before = file_size(db);
  insert_many(*store);
  // SQLite's autocheckpoint would have copied the WAL at 1,000 frames (~4 MB) and then
  // reused it from its start: the WAL would stay near 4 MB and the database would grow.
  EXPECT_GE(file_size(db + "-wal"), kWritten) << "the WAL was reset: a commit checkpointed";
  EXPECT_EQ(file_size(db), db_before) << "the database file was written by a commit";
}

TEST(StoreCheckpointTest, CheckpointerCopiesAndEmptiesTheWalWhenIdle) {
  TempDir dir;
  const std::string db = dir.file("store.db");
  SqliteStoreOptions o = options_for(db);
  o.checkpoint_interval = 50ms;
  o.checkpoint_at_wal_frames = std::numeric_limits<int64_t>::max();  // the timer alone
  auto store = open_sqlite_store(o);
  const auto ids = insert_many(*store);
  // Idle after the inserts: a PASSIVE round, then a TRUNCATE one empties the -wal file.
  EXPECT_TRUE(eventually([&] { return file_size(db + "-wal") == 0; }, 20s))
      << "WAL still " << file_size(db + "-wal") << " bytes";
  EXPECT_GE(file_size(db), kWritten) << "the WAL's pages did not reach the database file";
  for (const auto& id : {ids.front(), ids.back()}) EXPECT_TRUE(store->get(id)) << id;
}

TEST(StoreCheckpointTest, AFullWalIsCheckpointedWhileCommitsGoOn) {
  TempDir dir;
  const std::string db = dir.file("store.db");
  SqliteStoreOptions o = options_for(db);
  o.checkpoint_interval = 1h;  // only the frame threshold can wake the checkpointer
  o.checkpoint_at_wal_frames = 1000;
  auto store = open_sqlite_store(o);
  const int64_t db_before = file_size(db);
  insert_many(*store);
  EXPECT_TRUE(eventually([&] { return file_size(db) > db_before + kWritten / 4; }, 20s))
      << "no checkpoint copied the WAL past 1,000 frames; database " << file_size(db);
}

}  // namespace
}  // namespace cutor
