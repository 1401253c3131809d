// The SubmissionStore interface's defaults: batched writes as the single writes in order,
// insert_unsynced() as a durable insert().
#include "store/submission_store.h"

#include <charconv>
#include <stdexcept>

#include "store/store_rows.h"

namespace cutor {

void SubmissionStore::insert_unsynced(const Submission& s, int64_t max_queue) {
  insert(s, max_queue);
}

void SubmissionStore::sync_committed() {}

bool SubmissionStore::advance(const std::string& id, std::optional<SubmissionStatus> status,
                              const std::vector<StageWrite>& stages) {
  if (status && !set_status(id, *status)) return false;
  for (const StageWrite& w : stages)
    if (!set_stage(id, w.stage, w.result)) return false;
  return true;
}

bool SubmissionStore::finish_with_stages(const std::string& id, Result result,
                                         const std::vector<StageWrite>& stages) {
  for (const StageWrite& w : stages)
    if (!set_stage(id, w.stage, w.result)) return false;
  return finish(id, result);
}

namespace store_rows {

void complete_tests(Submission& s, std::vector<std::optional<TestResult>> rows) {
  s.tests.clear();
  s.tests.reserve(s.request.tests.size());
  for (size_t i = 0; i < s.request.tests.size(); ++i) {
    if (i < rows.size() && rows[i]) {
      s.tests.push_back(std::move(*rows[i]));
      continue;
    }
    TestResult t;
    t.name = s.request.tests[i].name;
    const bool finished = s.status == SubmissionStatus::kFinished;
    t.verdict = finished ? Verdict::kSkipped : Verdict::kPending;
    t.run.status = finished ? StageStatus::kSkipped : StageStatus::kPending;
    s.tests.push_back(std::move(t));
  }
}

std::string make_cursor(int64_t seq) {
  std::string cursor = "c";
  cursor += std::to_string(seq);
  return cursor;
}

int64_t parse_cursor(const std::string& cursor) {
  // "c" then a positive decimal seq with no sign, spaces or leading zeros.
  if (cursor.size() < 2 || cursor.size() > 20 || cursor[0] != 'c' || cursor[1] == '0')
    throw std::invalid_argument("malformed cursor");
  int64_t seq = 0;
  const char* begin = cursor.data() + 1;
  const char* end = cursor.data() + cursor.size();
  auto [ptr, ec] = std::from_chars(begin, end, seq);
  if (ec != std::errc() || ptr != end || seq <= 0) throw std::invalid_argument("malformed cursor");
  return seq;
}

}  // namespace store_rows

}  // namespace cutor
