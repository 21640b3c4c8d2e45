// Time, sleeping and cancellation: the policies that give the blocking driver its effects, so that
// the decision core stays pure and tests can swap in a fake clock that never sleeps.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "failover/error.hpp"

namespace failover {

using time_point = std::chrono::steady_clock::time_point;
using wall_time = std::chrono::system_clock::time_point;

namespace detail {
struct cancel_state {
  std::atomic<bool> cancelled{false};
  std::mutex mutex;
  std::condition_variable wake;
};
}  // namespace detail

// Observes cancellation. A default-constructed token can never be cancelled and costs nothing.
class cancel_token {
 public:
  cancel_token() noexcept = default;
  bool cancelled() const noexcept {
    return state_ && state_->cancelled.load(std::memory_order_acquire);
  }
  bool can_be_cancelled() const noexcept { return state_ != nullptr; }

  // Waits up to `d`; returns false when cancelled before or during the wait. A wait of a century
  // or more (duration::max() included) is a century: the standard library adds `d` to now(),
  // which would overflow and end the wait at once.
  bool wait_for(duration d) const {
    constexpr duration century = std::chrono::hours(24 * 365 * 100);
    if (d > century) d = century;
    if (!state_) {
      std::this_thread::sleep_for(d);
      return true;
    }
    std::unique_lock<std::mutex> lock(state_->mutex);
    return !state_->wake.wait_for(lock, d, [&] { return state_->cancelled.load(); });
  }

 private:
  friend class cancel_source;
  explicit cancel_token(std::shared_ptr<detail::cancel_state> s) noexcept : state_(std::move(s)) {}
  std::shared_ptr<detail::cancel_state> state_;
};

// Requests cancellation; hand its token() to calls. Thread-safe. A source moved from is empty,
// as a std::stop_source is: cancel() does nothing, cancelled() is false, and its token() can never
// be cancelled (the tokens handed out before the move follow the source moved to).
class cancel_source {
 public:
  cancel_source() : state_(std::make_shared<detail::cancel_state>()) {}
  void cancel() noexcept {
    if (!state_) return;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->cancelled.store(true, std::memory_order_release);
    }
    state_->wake.notify_all();
  }
  bool cancelled() const noexcept {
    return state_ && state_->cancelled.load(std::memory_order_acquire);
  }
  cancel_token token() const noexcept { return cancel_token(state_); }

 private:
  std::shared_ptr<detail::cancel_state> state_;
};

// The Clock policy: `now()` on a monotonic time line (deadlines, offsets) and `wall_now()` on the
// calendar (HTTP-date Retry-After values).
struct steady_clock {
  time_point now() const noexcept { return std::chrono::steady_clock::now(); }
  wall_time wall_now() const noexcept { return std::chrono::system_clock::now(); }
};

// The Sleeper policy: waits `d`, waking early when the token is cancelled. Returns false when
// cancelled. The default sleeps the calling thread (`std::this_thread::sleep_for` on the steady
// clock); with a cancellable token it waits on the token's condition variable instead.
struct thread_sleeper {
  bool sleep_for(duration d, const cancel_token& token) const {
    if (token.cancelled()) return false;
    if (d <= duration::zero()) return true;
    return token.wait_for(d);
  }
};

}  // namespace failover
