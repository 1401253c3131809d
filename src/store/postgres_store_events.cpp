// PostgresSubmissionStore's background work: lease renewal and expiry, the LISTEN
// connection (reconnect and catch-up), and telling local listeners and claimers.
#include <poll.h>

#include <chrono>
#include <cstdio>

#include "store/postgres_store_impl.h"
#include "store/store_rows.h"

namespace cutor::pg_store {

using pg::Params;
using store_rows::enum_from_db;

constexpr auto kReconnectDelay = std::chrono::seconds(1);

int64_t PostgresSubmissionStore::requeue_expired() {
  std::vector<std::string> ids;
  {
    Conn c(*this);
    // The server's clock decides expiry, so hosts' clocks need not agree.
    pg::Result r = c->exec(
        "requeue expired leases",
        "WITH expired AS (SELECT seq FROM submissions WHERE status < 5"
        "   AND lease_owner IS NOT NULL AND lease_at < now() - $1 * interval '1 millisecond'"
        "   FOR UPDATE SKIP LOCKED),"
        " cleared AS (DELETE FROM stages WHERE seq IN (SELECT seq FROM expired)),"
        " cleared_tests AS (DELETE FROM test_results WHERE seq IN (SELECT seq FROM expired)),"
        " requeued AS (UPDATE submissions s SET status = 0, lease_owner = NULL,"
        "   lease_at = NULL, lease_attempt = lease_attempt + 1"
        "   FROM expired e WHERE s.seq = e.seq RETURNING s.id)"
        " SELECT id, pg_notify('cutor_changes', $2 || id) FROM requeued",
        Params()
            .add(options_.lease_timeout_ms)
            .add_text(std::to_string(static_cast<int>(SubmissionStatus::kQueued)) + "|" + owner_ +
                      "|"));
    for (int i = 0; i < r.rows(); ++i) ids.push_back(r.bytes(i, 0));
  }
  if (!ids.empty()) notify_claimers();
  for (const auto& id : ids) notify_listeners(id, SubmissionStatus::kQueued);
  return static_cast<int64_t>(ids.size());
}

void PostgresSubmissionStore::renew_leases() {
  Conn c(*this);
  c->exec("renew leases",
          "UPDATE submissions SET lease_at = now() WHERE lease_owner = $1 AND status < 5",
          Params().add_text(owner_));
}

void PostgresSubmissionStore::lease_loop(std::stop_token stop) {
  const auto period =
      std::chrono::milliseconds(std::max<int64_t>(options_.lease_timeout_ms / 3, 1));
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock lock(mu);
  while (!stop.stop_requested()) {
    try {
      renew_leases();
      requeue_expired();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cutor store: lease heartbeat failed (retrying): %s\n", e.what());
    }
    cv.wait_for(lock, stop, period, [] { return false; });
  }
}

int PostgresSubmissionStore::add_listener(ChangeListener l) {
  std::lock_guard lock(listeners_mu_);
  int handle = next_listener_++;
  listeners_.emplace_back(handle, std::make_shared<const ChangeListener>(std::move(l)));
  return handle;
}

void PostgresSubmissionStore::remove_listener(int handle) {
  // Notifications from other stores arrive on the listening thread: wait until it is done
  // with this listener, so the caller may destroy what the listener uses once this returns.
  std::unique_lock lock(listeners_mu_);
  std::shared_ptr<const ChangeListener> removed;
  std::erase_if(listeners_, [&](const auto& entry) {
    if (entry.first != handle) return false;
    removed = entry.second;
    return true;
  });
  if (removed) listener_done_cv_.wait(lock, [&] { return removed.use_count() == 1; });
}

void PostgresSubmissionStore::wake_all() {
  notify_claimers();
}

void PostgresSubmissionStore::notify_claimers() {
  {
    std::lock_guard lock(claim_mu_);
    ++claim_generation_;
  }
  claim_cv_.notify_all();
}

void PostgresSubmissionStore::notify_listeners(const std::string& id, SubmissionStatus status) {
  std::vector<std::shared_ptr<const ChangeListener>> targets;
  {
    std::lock_guard lock(listeners_mu_);
    for (const auto& [handle, l] : listeners_) targets.push_back(l);
  }
  for (const auto& l : targets) {
    try {
      (*l)(id, status);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cutor store: change listener threw for %s: %s\n", id.c_str(), e.what());
    } catch (...) {
      std::fprintf(stderr, "cutor store: change listener threw for %s\n", id.c_str());
    }
  }
  targets.clear();
  std::lock_guard lock(listeners_mu_);
  listener_done_cv_.notify_all();
}

void PostgresSubmissionStore::listen_loop(std::stop_token stop,
                                          std::unique_ptr<pg::Connection> first) {
  std::unique_ptr<pg::Connection> c = std::move(first);
  int64_t lost_at_ms = 0;  // when the connection was lost; 0: listening
  std::mutex mu;
  std::condition_variable_any cv;
  while (!stop.stop_requested()) {
    try {
      if (!c) {
        c = std::make_unique<pg::Connection>(options_.url);
        c->exec("listen", "LISTEN cutor_changes");
      }
      // Listening again: whatever changed while deaf is looked at once.
      if (lost_at_ms != 0) catch_up(lost_at_ms);
      lost_at_ms = 0;
      listen_on(*c, stop);
    } catch (const std::exception& e) {
      if (lost_at_ms == 0) {
        lost_at_ms = now_unix_ms();
        std::fprintf(stderr, "cutor store: lost the notification connection (reconnecting): %s\n",
                     e.what());
      }
      c.reset();
      std::unique_lock lock(mu);
      cv.wait_for(lock, stop, kReconnectDelay, [] { return false; });
    }
  }
}

void PostgresSubmissionStore::listen_on(pg::Connection& c, std::stop_token stop) {
  while (!stop.stop_requested()) {
    pollfd fds[2] = {{PQsocket(c.handle()), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (fds[0].fd < 0) throw StoreError(c.label() + ": no socket");
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      throw StoreError(c.label() + ": poll failed");
    }
    if (fds[1].revents) return;  // stopping
    if (!PQconsumeInput(c.handle()) || PQstatus(c.handle()) != CONNECTION_OK)
      throw StoreError(c.label() + ": " + PQerrorMessage(c.handle()));
    while (PGnotify* n = PQnotifies(c.handle())) {
      std::string extra = n->extra;
      PQfreemem(n);
      on_notification(extra);
    }
  }
}

void PostgresSubmissionStore::on_notification(const std::string& text) {
  // "<status>|<owner>|<id>"
  auto a = text.find('|');
  auto b = a == std::string::npos ? a : text.find('|', a + 1);
  if (b == std::string::npos) return;  // not ours
  int status = 0;
  try {
    status = std::stoi(text.substr(0, a));
  } catch (const std::exception&) {
    return;
  }
  if (status < 0 || status > 5) return;
  auto st = static_cast<SubmissionStatus>(status);
  if (st == SubmissionStatus::kQueued) notify_claimers();
  // Changes made through this store were told right after their commit.
  if (text.compare(a + 1, b - a - 1, owner_) == 0) return;
  notify_listeners(text.substr(b + 1), st);
}

void PostgresSubmissionStore::catch_up(int64_t since_ms) {
  notify_claimers();
  Conn c(*this);
  // Two seconds of slack: a commit's finished_at_ms is taken just before it commits.
  pg::Result r = c->exec("catch up",
                         "SELECT id, status FROM submissions"
                         " WHERE status < 5 OR finished_at_ms >= $1",
                         Params().add(since_ms - 2000));
  for (int i = 0; i < r.rows(); ++i)
    notify_listeners(r.bytes(i, 0), enum_from_db<SubmissionStatus>(r.int64(i, 1), 5, "status"));
}

}  // namespace cutor::pg_store
