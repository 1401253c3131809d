#include "api/change_waiters.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace cutor {
namespace asio = boost::asio;

ChangeWaiters::Registration::Registration(std::shared_ptr<ChangeWaiters> owner, std::string id,
                                          std::shared_ptr<Waiter> waiter)
    : owner_(std::move(owner)), id_(std::move(id)), waiter_(std::move(waiter)) {}

ChangeWaiters::Registration::~Registration() {
  owner_->remove(id_, waiter_);
}

asio::awaitable<void> ChangeWaiters::Registration::wait(
    std::chrono::steady_clock::time_point deadline) {
  if (!waiter_->notified) {
    waiter_->timer.expires_at(deadline);
    // Cancelled by notify() (operation_aborted) or expired: either way, re-read.
    co_await waiter_->timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  waiter_->notified = false;
}

std::unique_ptr<ChangeWaiters::Registration> ChangeWaiters::add(const std::string& id,
                                                                asio::any_io_executor ex) {
  auto waiter = std::make_shared<Waiter>(std::move(ex));
  {
    std::lock_guard lock(mu_);
    by_id_[id].insert(waiter);
    ++count_;
  }
  return std::make_unique<Registration>(shared_from_this(), id, std::move(waiter));
}

void ChangeWaiters::remove(const std::string& id, const std::shared_ptr<Waiter>& w) {
  std::lock_guard lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  if (it->second.erase(w) > 0) --count_;
  if (it->second.empty()) by_id_.erase(it);
}

void ChangeWaiters::notify(const std::string& id) {
  // Posting under the lock: close() cannot complete while a post is in flight.
  std::lock_guard lock(mu_);
  if (closed_) return;
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  for (const auto& w : it->second) {
    asio::post(w->timer.get_executor(), [w] {
      w->notified = true;
      w->timer.cancel();
    });
  }
}

void ChangeWaiters::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
}

size_t ChangeWaiters::size() const {
  std::lock_guard lock(mu_);
  return count_;
}

}  // namespace cutor
