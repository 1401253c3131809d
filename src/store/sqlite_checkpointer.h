// Internal to cutor_store: checkpoints a SQLite database's WAL on a thread of its own, so
// no commit ever runs a checkpoint (or waits on its fsyncs).
//
//   PRAGMA wal_autocheckpoint = 0 on the writer, then
//   sqlite::WalCheckpointer checkpointer(writer, path, {});  // takes the writer's wal hook
//
// Policy: after commits, a PASSIVE checkpoint (it never blocks readers or writers) every
// `interval`, or at once when the WAL holds `passive_at_frames` frames; once a whole
// interval passed without a commit, one TRUNCATE checkpoint empties the -wal file. The
// destructor stops and joins the thread.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "store/sqlite_connection.h"

namespace cutor::sqlite {

struct CheckpointPolicy {
  std::chrono::milliseconds interval{1000};
  int64_t passive_at_frames = 1000;  // SQLite's own autocheckpoint threshold
};

class WalCheckpointer {
 public:
  // `writer` (the store's only writing connection) must outlive this object; its wal hook
  // is replaced by one that counts commits. `path` is the database file, opened again
  // here for the checkpoints. Throws StoreError when it cannot be opened.
  WalCheckpointer(sqlite3* writer, const std::string& path, CheckpointPolicy policy);
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

 private:
  static int on_commit(void* self, sqlite3* db, const char* name, int frames);
  void run();
  // One checkpoint of `mode`; true when it copied every frame (for TRUNCATE: and
  // emptied the file). Busy is not an error: the next round tries again.
  bool checkpoint(int mode);

  sqlite3* const writer_;
  const CheckpointPolicy policy_;
  Connection conn_;
  std::atomic<uint64_t> commits_{0};
  std::atomic<int64_t> wal_frames_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace cutor::sqlite
