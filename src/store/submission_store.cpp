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

void SubmissionStore::put_runtime(const StoredRuntime& r) {
  std::lock_guard lock(runtimes_mutex_);
  runtimes_[{r.name, r.version}] = r.definition_json;
}

std::vector<StoredRuntime> SubmissionStore::list_runtimes() {
  std::lock_guard lock(runtimes_mutex_);
  std::vector<StoredRuntime> out;
  for (const auto& [key, text] : runtimes_) out.push_back({key.first, key.second, text});
  return out;
}

bool SubmissionStore::delete_runtime(const std::string& name, const std::string& version) {
  std::lock_guard lock(runtimes_mutex_);
  return runtimes_.erase({name, version}) > 0;
}

}  // namespace cutor
