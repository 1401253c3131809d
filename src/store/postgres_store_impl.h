// Internal to cutor_store: PostgresSubmissionStore's declaration, shared by its two
// files: postgres_submission_store.cpp (schema, reads and writes) and
// postgres_store_events.cpp (leases, LISTEN/NOTIFY, local listeners).
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "store/pg_connection.h"
#include "store/postgres_submission_store.h"

namespace cutor::pg_store {

class PostgresSubmissionStore final : public SubmissionStore {
 public:
  explicit PostgresSubmissionStore(const PostgresStoreOptions& options);
  ~PostgresSubmissionStore() override;

  int64_t insert(const Submission& s, int64_t max_queue) override;
  std::optional<Submission> get(const std::string& id) override;
  SubmissionPage list(std::optional<SubmissionStatus> status, int limit,
                      const std::optional<std::string>& cursor) override;
  std::optional<Submission> claim_next(std::stop_token stop) override;
  bool set_status(const std::string& id, SubmissionStatus status) override;
  bool set_stage(const std::string& id, Stage stage, const StageResult& r) override;
  bool finish(const std::string& id, Result result) override;
  bool advance(const std::string& id, std::optional<SubmissionStatus> status,
               const std::vector<StageWrite>& stages) override;
  bool finish_with_stages(const std::string& id, Result result,
                          const std::vector<StageWrite>& stages) override;
  bool write_tests(const std::string& id, const std::vector<TestWrite>& tests) override;
  int64_t put_runtime(const StoredRuntime& r) override;
  std::vector<StoredRuntime> list_runtimes() override;
  bool delete_runtime(const std::string& name, const std::string& version) override;
  CancelOutcome cancel(const std::string& id) override;
  int64_t requeue_unfinished() override;
  int64_t delete_finished_before(int64_t finished_before_ms, int limit) override;
  int64_t count_all() override;
  int64_t count_unfinished() override;
  std::vector<std::pair<std::string, int64_t>> count_by_status() override;
  std::vector<std::pair<std::string, int64_t>> count_by_result() override;
  int add_listener(ChangeListener l) override;
  void remove_listener(int handle) override;
  void wake_all() override;

 private:
  // A pooled connection for one call; back to the pool on exit if still fit.
  class Conn {
   public:
    explicit Conn(PostgresSubmissionStore& store);
    ~Conn();
    pg::Connection* operator->() { return c_.get(); }
    pg::Connection& operator*() { return *c_; }

   private:
    PostgresSubmissionStore& store_;
    std::unique_ptr<pg::Connection> c_;
  };

  void create_or_check_schema();
  // "<status>|<owner>|<id>": what the listening connections receive.
  std::string payload(const std::string& id, SubmissionStatus status) const;
  // The attempt of this store's lease on `id`, or nullopt when it holds none.
  std::optional<int64_t> held_attempt(const std::string& id);
  void drop_lease(const std::string& id);
  std::optional<Submission> try_claim();
  // Puts back the submissions whose lease expired; tells everyone. Returns how many.
  int64_t requeue_expired();
  void renew_leases();
  void lease_loop(std::stop_token stop);
  void listen_loop(std::stop_token stop, std::unique_ptr<pg::Connection> first);
  // Waits on `c`'s notifications until it fails (throws) or stop is requested.
  void listen_on(pg::Connection& c, std::stop_token stop);
  void on_notification(const std::string& payload);
  void catch_up(int64_t since_ms);
  void notify_claimers();
  void notify_listeners(const std::string& id, SubmissionStatus status);

  const PostgresStoreOptions options_;
  const std::string owner_;  // this store instance: lease owner and notification origin

  std::mutex pool_mu_;
  std::vector<std::unique_ptr<pg::Connection>> idle_;

  std::mutex leases_mu_;
  std::unordered_map<std::string, int64_t> leases_;  // id -> attempt, claims held here

  std::mutex claim_mu_;
  std::condition_variable_any claim_cv_;
  uint64_t claim_generation_ = 0;

  std::mutex listeners_mu_;
  std::condition_variable listener_done_cv_;  // a listener call ended
  int next_listener_ = 1;
  std::vector<std::pair<int, std::shared_ptr<const ChangeListener>>> listeners_;

  int wake_fd_ = -1;  // eventfd: stops the listening thread's poll()
  std::jthread lease_thread_;
  std::jthread listen_thread_;
};

}  // namespace cutor::pg_store
