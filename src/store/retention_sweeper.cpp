#include "store/retention_sweeper.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace cutor {
namespace {
using std::chrono::milliseconds;

milliseconds period_for(const RetentionOptions& o) {
  if (o.period > milliseconds(0)) return o.period;
  return std::clamp(o.retention / 4, milliseconds(100), milliseconds(60'000));
}
}  // namespace

RetentionSweeper::RetentionSweeper(SubmissionStore& store, RetentionOptions options)
    : store_(store), options_(options) {
  thread_ = std::jthread([this](std::stop_token stop) {
    ::pthread_setname_np(::pthread_self(), "cutor-retain");
    run(stop);
  });
}

RetentionSweeper::~RetentionSweeper() {
  thread_.request_stop();
  if (thread_.joinable()) thread_.join();
}

void RetentionSweeper::run(std::stop_token stop) {
  const milliseconds period = period_for(options_);
  std::unique_lock lock(mu_);
  while (!stop.stop_requested()) {
    cv_.wait_for(lock, stop, period, [] { return false; });
    if (stop.stop_requested()) break;
    lock.unlock();
    sweep(stop);
    lock.lock();
  }
}

void RetentionSweeper::sweep(std::stop_token stop) {
  const int64_t cutoff = now_unix_ms() - options_.retention.count();
  try {
    // Batch after batch until one comes back short; each is its own transaction, so
    // other writers get the store between them.
    while (!stop.stop_requested()) {
      const int64_t n = store_.delete_finished_before(cutoff, options_.batch);
      deleted_ += n;
      if (n > 0) spdlog::debug("retention: deleted {} finished submissions", n);
      if (n < options_.batch) break;
    }
  } catch (const StoreError& e) {
    spdlog::warn("retention: sweep failed, trying again in the next one: {}", e.what());
  }
}

}  // namespace cutor
