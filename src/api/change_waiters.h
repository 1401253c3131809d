// Long-poll support: coroutines waiting for a submission to change, woken by the
// store's change listener without any polling loop.
//
// A waiter is a steady_timer armed to the caller's deadline on the caller's strand;
// notify(id) posts a cancel of every timer waiting on `id` to that timer's strand. Each
// waiter costs one timer and a map entry, never a thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace cutor {

class ChangeWaiters : public std::enable_shared_from_this<ChangeWaiters> {
 public:
  // One registered waiter. Only touched on its executor, which must be a strand (or
  // single-threaded) so a posted wake-up cannot race with the coroutine.
  struct Waiter {
    explicit Waiter(boost::asio::any_io_executor ex) : timer(std::move(ex)) {}
    boost::asio::steady_timer timer;
    bool notified = false;  // a change arrived since the last wait
  };

  // Keeps a waiter registered for its lifetime. Register BEFORE the first read of the
  // submission, so a change between the read and the wait is not lost.
  class Registration {
   public:
    Registration(std::shared_ptr<ChangeWaiters> owner, std::string id,
                 std::shared_ptr<Waiter> waiter);
    ~Registration();
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

    // Suspends until a change to the id was notified (possibly before this call, since
    // registration) or `deadline` passes. Clears the notification.
    boost::asio::awaitable<void> wait(std::chrono::steady_clock::time_point deadline);

   private:
    std::shared_ptr<ChangeWaiters> owner_;
    std::string id_;
    std::shared_ptr<Waiter> waiter_;
  };

  // Registers a waiter for `id` whose wake-ups run on `ex`.
  std::unique_ptr<Registration> add(const std::string& id, boost::asio::any_io_executor ex);

  // Wakes every waiter of `id`. Callable from any thread (the store's writer thread).
  void notify(const std::string& id);

  // After close(), notify() does nothing: the executors may be going away.
  void close();

  // How many waiters are registered (for tests and metrics).
  size_t size() const;

 private:
  void remove(const std::string& id, const std::shared_ptr<Waiter>& w);

  mutable std::mutex mu_;
  bool closed_ = false;
  size_t count_ = 0;
  std::unordered_map<std::string, std::unordered_set<std::shared_ptr<Waiter>>> by_id_;
};

}  // namespace cutor
