// Internal to cutor_store: what both stores share about rows: list cursors and enum
// values read back from the database.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store/submission_store.h"

namespace cutor::store_rows {

// Enums are stored as their integer values; these pin them, so reordering an enum in
// src/model breaks the build instead of old databases.
static_assert(static_cast<int>(SubmissionStatus::kQueued) == 0);
static_assert(static_cast<int>(SubmissionStatus::kFinished) == 5);
static_assert(static_cast<int>(StageStatus::kPending) == 0);
static_assert(static_cast<int>(StageStatus::kRunning) == 1);
static_assert(static_cast<int>(StageStatus::kSkipped) == 2);
static_assert(static_cast<int>(StageStatus::kSignaled) == 5);
static_assert(static_cast<int>(StageStatus::kInternalError) == 10);
static_assert(static_cast<int>(Result::kCancelled) == 8);
static_assert(static_cast<int>(Result::kInternalError) == 9);
static_assert(static_cast<int>(Result::kCheckerError) == 12);
static_assert(static_cast<int>(Verdict::kSkipped) == 8);
static_assert(static_cast<int>(Stage::kRun) == 3);

template <typename Enum>
Enum enum_from_db(int64_t v, int64_t max, const char* what) {
  if (v < 0 || v > max)
    throw StoreError(std::string("corrupt row: ") + what + " " + std::to_string(v) +
                     " out of range");
  return static_cast<Enum>(v);
}

// Fills s.tests from the request's tests and the stored results `rows` (one per test,
// empty where none is stored): PENDING, or SKIPPED once the submission is FINISHED.
void complete_tests(Submission& s, std::vector<std::optional<TestResult>> rows);

// "c<seq>": the cursor of the page that starts below `seq`.
std::string make_cursor(int64_t seq);
// Throws std::invalid_argument for anything make_cursor() did not produce.
int64_t parse_cursor(const std::string& cursor);

}  // namespace cutor::store_rows
