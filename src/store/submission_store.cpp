// The SubmissionStore interface's defaults: batched writes as the single writes in order,
// insert_unsynced() as a durable insert().
#include "store/submission_store.h"

#include <stdexcept>

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

}  // namespace cutor
