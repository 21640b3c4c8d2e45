// Closures a call hands its event loop that notice being destroyed unrun, so that a loop torn
// down with calls pending lets each call go instead of keeping it forever (drivers/callback.hpp).
#pragma once

#include <atomic>
#include <memory>
#include <type_traits>
#include <utility>

namespace failover::detail {

// A Loop that lets go of the calls pending on it when it is torn down by itself (the Asio
// driver's loop: `using frees_pending_calls = std::true_type;`) needs no loop_work.
template <class, class = void>
struct loop_frees_pending_calls : std::false_type {};
template <class L>
struct loop_frees_pending_calls<L, std::void_t<typename L::frees_pending_calls>>
    : L::frees_pending_calls {};

// How many of the driver's calls into a loop's post() or at() have not returned on this thread: a
// closure destroyed unrun during one is one the loop refused by throwing, which the driver handles
// where it called.
inline int& loop_handovers() noexcept {
  thread_local int n = 0;
  return n;
}
struct loop_handover {
  loop_handover() noexcept { ++loop_handovers(); }
  ~loop_handover() { --loop_handovers(); }
  loop_handover(const loop_handover&) = delete;
  loop_handover& operator=(const loop_handover&) = delete;
};

// A closure a call hands its loop: runs f(call) if the call is still there. One the loop destroys
// without ever having run it (nor any copy of it) means the loop is being torn down with the
// call pending: the call then lets go of itself, its handler destroyed and never run, as Asio
// does with the operations of an io_context destroyed. Moves cost nothing; the first copy
// allocates the count the copies share (copying one closure from two threads at once is not
// supported, which no loop needs).
template <class Call, class F>
class loop_work {
  struct shared {
    std::atomic<long> copies{2};
    std::atomic<bool> ran{false};
  };

 public:
  loop_work(std::weak_ptr<Call> call, F f) : call_(std::move(call)), f_(std::move(f)) {}
  loop_work(loop_work&& o) noexcept(std::is_nothrow_move_constructible_v<F>)
      : call_(std::move(o.call_)),
        f_(std::move(o.f_)),
        shared_(std::move(o.shared_)),
        owed_(std::exchange(o.owed_, false)) {}
  loop_work(const loop_work& o) : call_(o.call_), f_(o.f_), owed_(o.owed_) {
    if (!owed_) return;
    if (o.shared_)
      o.shared_->copies.fetch_add(1, std::memory_order_relaxed);
    else
      o.shared_ = std::make_shared<shared>();
    shared_ = o.shared_;
  }
  loop_work& operator=(const loop_work&) = delete;
  loop_work& operator=(loop_work&&) = delete;
  ~loop_work() {
    if (!owed_) return;
    if (shared_) {
      if (shared_->copies.fetch_sub(1, std::memory_order_acq_rel) != 1 ||
          shared_->ran.load(std::memory_order_acquire))
        return;
    }
    if (loop_handovers() > 0) return;  // refused by a post() or at() that threw
    if (auto c = call_.lock()) c->abandon();
  }

  void operator()() {
    if (owed_) {
      owed_ = false;
      if (shared_) {
        shared_->ran.store(true, std::memory_order_release);
        shared_->copies.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
    if (auto c = call_.lock()) f_(*c);
  }

 private:
  std::weak_ptr<Call> call_;
  F f_;
  mutable std::shared_ptr<shared> shared_;  // made by the first copy
  bool owed_ = true;                        // this copy has neither run nor been moved from
};

}  // namespace failover::detail
