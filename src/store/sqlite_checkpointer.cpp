#include "store/sqlite_checkpointer.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

namespace cutor::sqlite {
namespace {
// A TRUNCATE waits this long for readers and the writer; past it, it is tried next round.
constexpr int kCheckpointBusyMs = 200;

const char* mode_name(int mode) {
  return mode == SQLITE_CHECKPOINT_TRUNCATE ? "TRUNCATE" : "PASSIVE";
}
}  // namespace

WalCheckpointer::WalCheckpointer(sqlite3* writer, const std::string& path, CheckpointPolicy policy)
    : writer_(writer), policy_(policy), conn_(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX) {
  sqlite3_busy_timeout(conn_.handle(), kCheckpointBusyMs);
  // A connection that has not read the database yet does not know it is in WAL mode, and
  // its checkpoints do nothing (they answer -1 frames).
  conn_.query_int("PRAGMA user_version", "open the database for checkpoints");
  sqlite3_wal_hook(writer_, &WalCheckpointer::on_commit, this);
  thread_ = std::thread([this] {
    ::pthread_setname_np(::pthread_self(), "cutor-ckpt");
    run();
  });
}

WalCheckpointer::~WalCheckpointer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  sqlite3_wal_hook(writer_, nullptr, nullptr);
}

// Runs on the committing thread, after its commit: only counts and maybe wakes.
int WalCheckpointer::on_commit(void* self, sqlite3*, const char*, int frames) {
  auto* me = static_cast<WalCheckpointer*>(self);
  me->wal_frames_.store(frames, std::memory_order_relaxed);
  me->commits_.fetch_add(1, std::memory_order_release);
  if (frames >= me->policy_.passive_at_frames) me->cv_.notify_one();
  return SQLITE_OK;
}

void WalCheckpointer::run() {
  uint64_t seen = 0;   // commits covered by the last checkpoint
  bool dirty = false;  // frames may remain since the last full TRUNCATE
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, policy_.interval, [&] {
      return stop_ || (commits_.load(std::memory_order_acquire) != seen &&
                       wal_frames_.load(std::memory_order_relaxed) >= policy_.passive_at_frames);
    });
    if (stop_) break;
    const uint64_t now = commits_.load(std::memory_order_acquire);
    lock.unlock();
    if (now != seen) {
      seen = now;
      checkpoint(SQLITE_CHECKPOINT_PASSIVE);
      dirty = true;
    } else if (dirty) {
      dirty = !checkpoint(SQLITE_CHECKPOINT_TRUNCATE);
    }
    lock.lock();
  }
}

bool WalCheckpointer::checkpoint(int mode) {
  int log_frames = 0, copied = 0;
  const int rc = sqlite3_wal_checkpoint_v2(conn_.handle(), nullptr, mode, &log_frames, &copied);
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) return false;
  if (rc != SQLITE_OK) {
    spdlog::warn("sqlite store {}: {} checkpoint: {} ({})", conn_.path(), mode_name(mode),
                 sqlite3_errmsg(conn_.handle()), sqlite3_errstr(rc));
    return false;
  }
  return log_frames >= 0 && copied == log_frames;
}

}  // namespace cutor::sqlite
