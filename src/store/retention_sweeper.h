// Retention (issue 12): deletes FINISHED submissions older than a duration, with their
// requests and outputs, on a thread of its own, a small batch per transaction, so neither
// the request path nor the executor's writes wait long behind it.
//
//   RetentionSweeper sweeper(store, {.retention = std::chrono::hours(24 * 7)});
//   ...                                   // the destructor stops and joins the thread
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "store/submission_store.h"

namespace cutor {

struct RetentionOptions {
  std::chrono::milliseconds retention;  // finished longer ago than this: deleted
  int batch = 500;                      // submissions per transaction
  // Time between sweeps; 0: retention / 4, within 100 ms .. 60 s.
  std::chrono::milliseconds period{0};
};

class RetentionSweeper {
 public:
  // `store` must outlive the sweeper. The first sweep runs one period after start.
  RetentionSweeper(SubmissionStore& store, RetentionOptions options);
  ~RetentionSweeper();
  RetentionSweeper(const RetentionSweeper&) = delete;
  RetentionSweeper& operator=(const RetentionSweeper&) = delete;

  // Submissions deleted so far.
  int64_t deleted() const { return deleted_.load(); }

 private:
  void run(std::stop_token stop);
  void sweep(std::stop_token stop);

  SubmissionStore& store_;
  const RetentionOptions options_;
  std::atomic<int64_t> deleted_{0};
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::jthread thread_;  // last: stopped before the members above go
};

}  // namespace cutor
