// Time, sleeping and cancellation: the policies that give the blocking driver its effects, so that
// the decision core stays pure and tests can swap in a fake clock that never sleeps.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "failover/core/error.hpp"
#include "failover/detail/failure_path.hpp"

namespace failover {

using time_point = std::chrono::steady_clock::time_point;
using wall_time = std::chrono::system_clock::time_point;

class cancel_callback;

namespace detail {
struct cancel_state {
  std::atomic<bool> cancelled{false};
  std::mutex mutex;
  std::condition_variable wake;
  // Registered callbacks (an intrusive list under `mutex`), and the one cancel() is running now.
  cancel_callback* callbacks = nullptr;
  const cancel_callback* running = nullptr;
  std::thread::id runner;
  void cancel() noexcept;
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
  FAILOVER_DECL bool wait_for(duration d) const;

 private:
  friend class cancel_source;
  friend class cancel_callback;
  explicit cancel_token(std::shared_ptr<detail::cancel_state> s) noexcept : state_(std::move(s)) {}
  std::shared_ptr<detail::cancel_state> state_;
};

#if FAILOVER_DEFINE_COMPILED
FAILOVER_DECL bool cancel_token::wait_for(duration d) const {
  constexpr duration century = std::chrono::hours(24 * 365 * 100);
  if (d > century) d = century;
  if (!state_) {
    std::this_thread::sleep_for(d);
    return true;
  }
  std::unique_lock<std::mutex> lock(state_->mutex);
  return !state_->wake.wait_for(lock, d, [&] { return state_->cancelled.load(); });
}
#endif  // FAILOVER_DEFINE_COMPILED

// Requests cancellation; hand its token() to calls. Thread-safe. A source moved from is empty,
// as a std::stop_source is: cancel() does nothing, cancelled() is false, and its token() can never
// be cancelled (the tokens handed out before the move follow the source moved to).
class cancel_source {
 public:
  cancel_source() : state_(std::make_shared<detail::cancel_state>()) {}
  // Cancels the tokens, then runs every registered cancel_callback on this thread, once each.
  void cancel() noexcept {
    if (state_) state_->cancel();
  }
  bool cancelled() const noexcept {
    return state_ && state_->cancelled.load(std::memory_order_acquire);
  }
  cancel_token token() const noexcept { return cancel_token(state_); }

 private:
  std::shared_ptr<detail::cancel_state> state_;
};

// Runs `f` once when `token` is cancelled, for waits that cannot poll (an async transfer, a timer):
// at once, in the constructor, when it already is; otherwise in the thread that calls cancel().
// Destroying the callback unregisters it; if cancel() is running it on another thread right then,
// the destructor waits for it to return (as std::stop_callback does), so what `f` refers to may be
// destroyed right after. A token that can never be cancelled registers nothing. `f` must not throw.
class cancel_callback {
 public:
  template <class F>
  cancel_callback(const cancel_token& token, F&& f)
      : state_(token.state_),
        call_(&call<std::decay_t<F>>),
        fn_(new std::decay_t<F>(std::forward<F>(f))),
        destroy_(&destroy<std::decay_t<F>>) {
    if (!state_) return;
    std::unique_lock<std::mutex> lock(state_->mutex);
    if (state_->cancelled.load(std::memory_order_acquire)) {
      lock.unlock();
      call_(fn_);
      return;
    }
    next_ = state_->callbacks;
    if (next_) next_->prev_ = this;
    state_->callbacks = this;
    linked_ = true;
  }
  cancel_callback(const cancel_callback&) = delete;
  cancel_callback& operator=(const cancel_callback&) = delete;
  ~cancel_callback() {
    if (state_) {
      std::unique_lock<std::mutex> lock(state_->mutex);
      if (linked_) {
        unlink();
      } else if (state_->running == this && state_->runner != std::this_thread::get_id()) {
        state_->wake.wait(lock, [&] { return state_->running != this; });
      }
    }
    destroy_(fn_);
  }

 private:
  friend struct detail::cancel_state;
  template <class F>
  static void call(void* f) noexcept {
    (*static_cast<F*>(f))();
  }
  template <class F>
  static void destroy(void* f) noexcept {
    delete static_cast<F*>(f);
  }
  void unlink() noexcept {  // under the state's mutex
    if (prev_)
      prev_->next_ = next_;
    else
      state_->callbacks = next_;
    if (next_) next_->prev_ = prev_;
    prev_ = next_ = nullptr;
    linked_ = false;
  }

  std::shared_ptr<detail::cancel_state> state_;
  void (*call_)(void*) noexcept;
  void* fn_;
  void (*destroy_)(void*) noexcept;
  cancel_callback* prev_ = nullptr;
  cancel_callback* next_ = nullptr;
  bool linked_ = false;
};

namespace detail {
inline void cancel_state::cancel() noexcept {
  std::unique_lock<std::mutex> lock(mutex);
  if (cancelled.load(std::memory_order_relaxed)) return;
  cancelled.store(true, std::memory_order_release);
  runner = std::this_thread::get_id();
  while (cancel_callback* c = callbacks) {
    c->unlink();
    running = c;
    lock.unlock();
    c->call_(c->fn_);
    lock.lock();
    running = nullptr;
    wake.notify_all();  // a destructor waiting for this callback
  }
  lock.unlock();
  wake.notify_all();
}
}  // namespace detail

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
