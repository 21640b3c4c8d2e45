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

// Per thread, the call whose closure the driver is handing a loop (post() or at() not returned
// yet): a closure of that call destroyed unrun meanwhile is one the loop refused by throwing,
// which the driver handles where it called. Closures of other calls are not excused.
inline const void*& loop_handing_call() noexcept {
  thread_local const void* call = nullptr;
  return call;
}
// Per thread, how many loops are being destroyed and letting a call go. Meanwhile no call hands
// any loop more work: a handler freed with a call may drop another call's completion, whose answer
// would be posted, and the loop it would go to may be the one being destroyed (or a handle onto
// the same queue, which the driver cannot tell apart). Such a call is let go too.
inline int& loop_teardowns() noexcept {
  thread_local int n = 0;
  return n;
}
struct loop_teardown {
  loop_teardown() noexcept { ++loop_teardowns(); }
  ~loop_teardown() { --loop_teardowns(); }
  loop_teardown(const loop_teardown&) = delete;
  loop_teardown& operator=(const loop_teardown&) = delete;
};
// Sets loop_handing_call() for a scope, and puts back what it held.
class loop_mark {
 public:
  loop_mark(const void*& slot, const void* value) noexcept
      : slot_(slot), previous_(std::exchange(slot, value)) {}
  ~loop_mark() { slot_ = previous_; }
  loop_mark(const loop_mark&) = delete;
  loop_mark& operator=(const loop_mark&) = delete;

 private:
  const void*& slot_;
  const void* previous_;
};

// A closure a call hands its loop: runs f(call) if the call is still there. One the loop destroys
// without ever having run it (nor any copy of it) means the loop is being torn down with the
// call pending: the call then lets go of itself, its handler destroyed and never run, as Asio
// does with the operations of an io_context destroyed (the call's state reads its chain as it is
// freed: the chain must outlive the loop). Moves cost nothing; the first copy
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
    std::shared_ptr<Call> c = call_.lock();
    if (!c || loop_handing_call() == c.get()) return;  // gone, or refused by a post() that threw
    const loop_teardown going;
    c->abandon();
    c.reset();  // the call is freed here, while the teardown is marked
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
