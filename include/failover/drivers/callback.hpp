// The callback driver: runs a chain's call on any event loop without holding a thread, and hands
// the result to a callback. The Asio driver (drivers/asio.hpp) is this driver on an Asio executor.
#pragma once

#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "failover/core/clock.hpp"
#include "failover/core/completion.hpp"
#include "failover/core/context.hpp"
#include "failover/detail/loop_work.hpp"
#include "failover/machine/call_machine.hpp"

namespace failover {

// What an async call needs of its event loop (both may be called from any thread, unless the loop
// serves one call with one timer and says `using one_timer_per_call = std::true_type;`, as the
// Asio driver's does: then at() replaces the call's timer and is called on the loop's thread only):
//   void post(std::function<void()> f);               run f on the loop's thread, soon
//   void at(time_point t, std::function<void()> f);   run f on the loop's thread at or after t
// A post() that throws (a bounded queue that is full, out of memory) loses no answer: an answer
// the loop refuses waits in the call's mailbox, and the driver asks at() to run the call at once
// to take it. Should at() refuse as well (or not be callable from the answering thread), the
// mailbox is emptied at the call's next turn on the loop (another answer, its timer, its
// deadline, a cancellation): a call with a deadline ends by it at the latest. A call with none of
// these is kept until one comes, even past its loop's destruction. What at() throws when the call
// arms its own timer ends the call with driver_failed.
// A later at() may come before an earlier one fired; the driver ignores the stale one.
// A loop destroyed with calls pending lets each go: a function the loop destroys without having
// run it (or a copy) frees its call, whose on_done is destroyed, never called (loop_work). The
// call's state reads the chain as it is freed: the chain must outlive the loop, and the loop any
// thread that may still be handing it an answer (a completion being called).
//
// Synchronous entries run where the Pool puts them: inline (on the loop's thread, the default) or
// on a pool of threads the user gives, as `void submit(std::function<void()> f)`. What submit()
// throws (a bounded pool that is full) is that attempt's answer, as what a callable throws.
struct inline_pool {
  void submit(const std::function<void()>& f) const { f(); }
};

namespace detail {

// Whether the caller is on the loop's thread, for a Loop that can tell
// (`bool running_in_this_thread() const`); a Loop that cannot is never assumed to be.
template <class, class = void>
struct loop_knows_thread : std::false_type {};
template <class L>
struct loop_knows_thread<
    L, std::void_t<decltype(bool(std::declval<const L&>().running_in_this_thread()))>>
    : std::true_type {};
template <class L>
bool on_loop_thread(const L& loop) noexcept {
  if constexpr (loop_knows_thread<L>::value)
    return loop.running_in_this_thread();
  else
    return false;
}

// A Loop that serves one call with one timer says so with `using one_timer_per_call =
// std::true_type;` (asio_loop: one steady_timer per call): its at() replaces the timer set before
// and may be called only on the loop's thread.
template <class, class = void>
struct one_timer_per_call : std::false_type {};
template <class L>
struct one_timer_per_call<L, std::void_t<typename L::one_timer_per_call>> : L::one_timer_per_call {
};

template <class Chain, class Loop, class Pool, class Handler, class... Stored>
class async_call
    : public std::enable_shared_from_this<async_call<Chain, Loop, Pool, Handler, Stored...>> {
  using value = typename Chain::value_type;
  using machine_type = decltype(std::declval<const Chain&>().begin_call(
      std::declval<const call_options&>(), std::declval<time_point>()));

  struct attempt {
    attempt_id id = 0;
    cancel_source source;  // cancelled when the machine no longer wants this attempt
    cancel_token token;
    attempt_context context;
  };
  // Where an attempt's completion sends its answer; holds the attempt (its context must outlive
  // the entry's use of it), never the call.
  // A route's phase: `calling` while the entry is being called, `queued` while its closure is with
  // the Pool and submit() has not returned; a completion lost meanwhile is only noted (`lost_...`).
  enum : int { calling, lost_while_calling, returned, queued, lost_while_queued };
  // What an attempt's answer is: a value or failure it returned, what it threw (fail(), or the
  // call of the entry), or its completion destroyed unanswered.
  enum class answer_kind : unsigned char { returned, threw, lost };
  struct route : std::enable_shared_from_this<route> {
    std::weak_ptr<async_call> call;
    std::shared_ptr<attempt> at;
    // While the entry is being called, a completion destroyed unanswered is only noted: if the
    // call then throws, what it threw is the attempt's answer, not the lost completion.
    std::atomic<int> phase{calling};
    // Set by the first answer handed over (returned, thrown or lost, whichever way it goes): a
    // later one is dropped, as the machine would drop it, and cannot overtake it on the way.
    std::atomic<bool> handed{false};
    // An answer the loop refused, waiting in the call's mailbox (under the call's mail_lock_).
    // Kept here, in the attempt's own route, so that parking an answer allocates nothing.
    answer_kind parked_kind = answer_kind::lost;
    std::shared_ptr<outcome<value>> parked_answer;
    std::exception_ptr parked_thrown;
    std::shared_ptr<route> next_mail;
  };

 public:
  // `loop_owner`, when given, owns `loop`: the loop then lives as long as this call, which a
  // completion on another thread may keep alive (and post through) after the call is done.
  async_call(const Chain& chain, Loop& loop, std::shared_ptr<void> loop_owner, Pool& pool,
             Handler handler, Stored... args)
      : loop_owner_(std::move(loop_owner)),
        chain_(chain),
        loop_(loop),
        pool_(pool),
        handler_(std::move(handler)),
        args_(std::move(args)...) {}

  // Starts the call; the handler runs once, on the loop's thread, with its result.
  void start(const call_options& call) {
    self_ = this->shared_from_this();
    try {
      post_to(loop_, *this, [call](async_call& c) { c.begin(call); });
    } catch (...) {
      self_.reset();  // the loop took no work: the call never began, and async_run throws
      throw;
    }
  }

  // Lets go of the call without ending it: its handler is destroyed, never called. Only for a
  // loop that is being torn down and will run nothing more (a closure of the call destroyed
  // unrun, the Asio driver's io_context shutting down); the call is freed once its last owner
  // lets go.
  void abandon() noexcept { self_.reset(); }

  // Cancels the call from any thread (as its token would).
  void cancel() {
    post_to(loop_, *this, [](async_call& c) { c.on_cancelled(); });
  }

 private:
  // A closure for the loop that runs f(call) while the call is there (see loop_work).
  template <class F>
  static auto work(std::weak_ptr<async_call> call, F f) {
    if constexpr (loop_frees_pending_calls<Loop>::value) {
      return [call = std::move(call), f = std::move(f)]() mutable {
        if (auto c = call.lock()) f(*c);
      };
    } else {
      return loop_work<async_call, F>(std::move(call), std::move(f));
    }
  }
  template <class F>
  auto work(F f) {
    return work(this->weak_from_this(), std::move(f));
  }
  // Whether a loop is being destroyed on this thread, letting a call go (loop_teardowns()).
  static bool going() noexcept { return loop_teardowns() > 0; }
  // Posts f(call) to `loop`; while a loop is being destroyed, lets the call go instead.
  template <class F>
  static void post_to(Loop& loop, async_call& call, F f) {
    if (going()) return call.abandon();
    const loop_mark handing(loop_handing_call(), &call);
    loop.post(call.work(std::move(f)));
  }

  time_point now() const noexcept { return chain_.clock().now(); }

  void begin(const call_options& call) {
    machine_.emplace(chain_.begin_call(call, now()));
    if (machine_->token().can_be_cancelled()) {
      std::weak_ptr<async_call> weak = self_;
      Loop* loop = &loop_;
      const void* me = this;  // who is handing over, never dereferenced
      // From any thread; holds no strong reference, so the call is never freed here.
      on_token_.emplace(machine_->token(), [weak, loop, me]() noexcept {
        try {
          if (going()) {
            if (auto self = weak.lock()) self->abandon();
            return;
          }
          const loop_mark handing(loop_handing_call(), me);
          loop->post(work(weak, [](async_call& c) { c.on_cancelled(); }));
        } catch (...) {  // NOLINT(bugprone-empty-catch): the next wait or attempt sees the token
        }
      });
    }
    pump();
  }

  void on_cancelled() {
    if (!machine_) return;
    take_mail();
    machine_->handle(events::cancelled{}, now());
    pump();
  }

  // Carries out every action the machine has.
  void pump() {
    pumping_ = true;
    struct done_pumping {
      bool& flag;
      ~done_pumping() { flag = false; }
    } reset{pumping_};
    while (machine_) {
      std::optional<typename machine_type::action> a = machine_->poll();
      if (!a && take_mail()) continue;  // answers the loop could not take (hand_over)
      if (!a) {
        if (watch()) continue;  // the timer could not be armed: the machine ends the call
        return;
      }
      if (const auto* s = std::get_if<actions::start_attempt>(&*a)) {
        launch(*s);
      } else if (const auto* c = std::get_if<actions::cancel_attempt>(&*a)) {
        abort(c->id);
      } else if (const auto* w = std::get_if<actions::sleep_until>(&*a)) {
        arm(w->at);
      } else {
        return finish();
      }
    }
  }

  // Starts attempt `s`. What starting it throws (the Pool's submit() refusing work, out of memory)
  // is the attempt's answer, as what a callable throws is: the machine goes on from it.
  void launch(const actions::start_attempt& s) {
    std::shared_ptr<route> r;
    try {
      auto at = std::make_shared<attempt>();
      at->id = s.id;
      at->token = at->source.token();
      at->context = *s.context;
      at->context.cancel = &at->token;  // cancel_attempt cancels this one, not the whole call
      r = std::make_shared<route>();
      r->call = self_;
      r->at = at;
      in_flight_.push_back(at);
      completion<value> done(&answer_sink, r);
      const std::size_t entry = s.entry;
      if (chain_.entry_is_async(entry)) {
        invoke(entry, r, std::move(done));
      } else {
        // A synchronous entry runs where the pool says; the completion is shared so that the
        // pool's std::function can be copied. A completion lost while submit() runs is noted (if
        // submit() throws, what it threw is the answer); one lost after it returned (a pool that
        // drops the closure unrun) is the answer.
        auto self = self_;
        auto boxed = std::make_shared<completion<value>>(std::move(done));
        r->phase.store(queued);
        pool_.submit([self, entry, r, boxed] { self->invoke(entry, r, std::move(*boxed)); });
        int seen = queued;
        if (!r->phase.compare_exchange_strong(seen, returned) && seen == lost_while_queued) {
          r->phase.store(returned);
          if (claim(*r)) hand_over(r, answer_kind::lost, nullptr, nullptr);
        }
      }
    } catch (...) {
      if (r && !claim(*r)) return;  // the attempt answered before its start threw: that counts
      abort(s.id);  // a pool that queued the closure before throwing runs it cancelled
      machine_->handle(events::failed{s.id, std::current_exception()}, now());
    }
  }

  static bool claim(route& r) noexcept {
    return !r.handed.exchange(true, std::memory_order_acq_rel);
  }

  void invoke(std::size_t entry, const std::shared_ptr<route>& r, completion<value> done) {
    const std::shared_ptr<attempt>& at = r->at;
    r->phase.store(calling);
    try {
      std::apply(
          [&](Stored&... a) { chain_.start_entry(entry, at->context, a..., std::move(done)); },
          args_);
      if (r->phase.exchange(returned) == lost_while_calling && claim(*r))
        hand_over(r, answer_kind::lost, nullptr, nullptr);
    } catch (...) {
      r->phase.store(returned);
      // What the entry threw is its answer, unless the completion answered first.
      if (claim(*r)) hand_over(r, answer_kind::threw, nullptr, std::current_exception());
    }
  }

  // Hands the answer of `r`'s attempt (claimed) to the machine from any thread: what it returned
  // (`answer`), what it threw (`thrown`, which may be null), or its completion lost. Posted to
  // the loop's thread; one the loop refuses is parked in the mailbox, from which the call takes it
  // at its next turn on the loop (inside pump() on the loop's thread, the running pump()), and
  // at() is asked for that turn now (not from another thread when the loop's at() is for its own
  // thread only). Never throws; dropped once the call has ended.
  void hand_over(const std::shared_ptr<route>& r, answer_kind kind,
                 std::shared_ptr<outcome<value>> answer, std::exception_ptr thrown) noexcept {
    const attempt_id id = r->at->id;
    try {
      post_to(loop_, *this, [id, kind, answer, thrown](async_call& c) mutable {
        c.on_mail(id, kind, answer.get(), std::move(thrown));
      });
      return;
    } catch (...) {  // NOLINT(bugprone-empty-catch): the loop refused it; parked below
    }
    {
      const std::lock_guard<std::mutex> hold(mail_lock_);
      r->parked_kind = kind;
      r->parked_answer = std::move(answer);
      r->parked_thrown = std::move(thrown);
      r->next_mail = std::exchange(mail_, r);
      has_mail_.store(true, std::memory_order_release);
    }
    const bool here = on_loop_thread(loop_);
    if (here && pumping_) return;
    if (one_timer_per_call<Loop>::value && !here) return;
    try {
      const loop_mark handing(loop_handing_call(), this);
      loop_.at(now(), work([](async_call& c) {
                 if (!c.machine_) return;
                 // A loop with one timer per call (asio_loop) gave up the call's own timer for
                 // this turn: watch() arms it again. Other loops still hold it. pump() takes the
                 // mail (the machine has no action left between turns).
                 if (one_timer_per_call<Loop>::value) c.armed_.reset();
                 c.pump();
               }));
    } catch (...) {  // NOLINT(bugprone-empty-catch): taken at the call's next turn on the loop
    }
  }

  void on_mail(attempt_id id, answer_kind kind, outcome<value>* answer, std::exception_ptr thrown) {
    if (!machine_) return;
    hand_to_machine(id, kind, answer, std::move(thrown));
    pump();
  }
  void hand_to_machine(attempt_id id, answer_kind kind, outcome<value>* answer,
                       std::exception_ptr thrown) noexcept {
    forget(id);
    if (kind == answer_kind::returned && answer) {
      machine_->handle_answer(id, std::move(*answer), now());
    } else if (kind == answer_kind::threw) {
      machine_->handle(events::failed{id, std::move(thrown)}, now());
    } else {
      try {
        machine_->handle_answer(id, outcome<value>(lost_completion()), now());
      } catch (...) {  // building the failure ran out of memory: the attempt fails with that
        machine_->handle(events::failed{id, std::current_exception()}, now());
      }
    }
  }
  // Unlinks the mailbox, oldest answer first.
  std::shared_ptr<route> unlink_mail() noexcept {
    std::shared_ptr<route> newest;
    {
      const std::lock_guard<std::mutex> hold(mail_lock_);
      newest = std::move(mail_);
      has_mail_.store(false, std::memory_order_relaxed);
    }
    std::shared_ptr<route> oldest;
    while (newest) {
      std::shared_ptr<route> next = std::move(newest->next_mail);
      newest->next_mail = std::move(oldest);
      oldest = std::move(newest);
      newest = std::move(next);
    }
    return oldest;
  }
  // Hands the machine every answer parked in the mailbox, in the order they came; true when there
  // was one. Loop's thread only.
  bool take_mail() {
    if (!has_mail_.load(std::memory_order_acquire)) return false;
    std::shared_ptr<route> r = unlink_mail();
    const bool any = r != nullptr;
    while (r) {
      std::shared_ptr<route> next = std::move(r->next_mail);
      const std::shared_ptr<outcome<value>> answer = std::move(r->parked_answer);
      hand_to_machine(r->at->id, r->parked_kind, answer.get(), std::move(r->parked_thrown));
      r = std::move(next);
    }
    return any;
  }

  static void answer_sink(void* state, outcome<value>* answer,
                          std::exception_ptr* thrown) noexcept {
    auto* r = static_cast<route*>(state);
    if (!thrown && !answer) {  // lost: only noted while the entry is called or queued (route)
      int seen = r->phase.load();
      while (seen == calling || seen == queued)
        if (r->phase.compare_exchange_weak(
                seen, seen == calling ? lost_while_calling : lost_while_queued))
          return;
    }
    if (!claim(*r)) return;  // the attempt has had its answer
    auto self = r->call.lock();
    if (!self) return;                    // the call has ended: an answer too late for it
    if (going()) return self->abandon();  // a loop is being destroyed: see loop_teardowns()
    if (answer && on_loop_thread(self->loop_) && !self->pumping_) {
      // Already on the loop's thread and not inside one of the machine's actions (an HTTP
      // client's handler, typically): hand the answer over now, without a trip through the queue.
      // pumping_ belongs to the loop's thread: it is read only once the thread is known to be it.
      // What the call's handler throws then goes back to whoever answered (the completion is
      // noexcept, so it stops here).
      try {
        self->on_mail(r->at->id, answer_kind::returned, answer, nullptr);
      } catch (...) {  // NOLINT(bugprone-empty-catch): the handler threw after the call ended
      }
      return;
    }
    const std::shared_ptr<route> here = r->shared_from_this();
    if (thrown) return self->hand_over(here, answer_kind::threw, nullptr, *thrown);
    if (!answer) return self->hand_over(here, answer_kind::lost, nullptr, nullptr);
    std::shared_ptr<outcome<value>> boxed;
    try {
      boxed = std::make_shared<outcome<value>>(std::move(*answer));
    } catch (...) {
      // Out of memory, or the answer's move threw: the attempt fails with what was thrown.
      return self->hand_over(here, answer_kind::threw, nullptr, std::current_exception());
    }
    self->hand_over(here, answer_kind::returned, std::move(boxed), nullptr);
  }

  void forget(attempt_id id) {
    for (std::size_t i = 0; i < in_flight_.size(); ++i)
      if (in_flight_[i]->id == id) {
        in_flight_.erase(in_flight_.begin() + static_cast<std::ptrdiff_t>(i));
        return;
      }
  }
  void abort(attempt_id id) {
    for (const auto& at : in_flight_)
      if (at->id == id) at->source.cancel();
    forget(id);
  }

  // With attempts in flight, the machine may want the timer at its deadline (next_timer()).
  // True when arming failed, which the machine was told (it has an action to poll).
  bool watch() {
    const std::optional<time_point> t = machine_->next_timer();
    return t && t != armed_ && !arm(*t);
  }

  // False when the loop's at() threw, which ends the call with driver_failed.
  bool arm(time_point at) {
    armed_ = at;
    const std::uint64_t generation = ++timer_generation_;
    try {
      const loop_mark handing(loop_handing_call(), this);
      loop_.at(at, work([generation](async_call& c) {
                 if (!c.machine_) return;
                 c.take_mail();
                 if (generation == c.timer_generation_) {
                   c.armed_.reset();
                   c.machine_->handle(events::timer_fired{}, c.now());
                 }
                 c.pump();
               }));
      return true;
    } catch (...) {
      armed_.reset();
      machine_->handle(events::driver_failed{"the loop's timer", std::current_exception()}, now());
      return false;
    }
  }

  // Frees everything the call holds, then hands over its result.
  void finish() {
    result<value> res = std::move(*machine_).take();
    machine_.reset();
    on_token_.reset();
    for (const auto& at : in_flight_) at->source.cancel();
    in_flight_.clear();
    for (std::shared_ptr<route> r = unlink_mail(); r;) r = std::move(r->next_mail);
    Handler h = std::move(handler_);
    auto keep = std::move(self_);  // this object lives until the handler returns
    h(std::move(res));
  }

  std::shared_ptr<void> loop_owner_;  // declared first: the loop goes after everything else
  const Chain& chain_;
  Loop& loop_;
  Pool& pool_;
  Handler handler_;
  std::tuple<Stored...> args_;
  std::optional<machine_type> machine_;
  std::optional<cancel_callback> on_token_;
  std::vector<std::shared_ptr<attempt>> in_flight_;
  // Answers the loop refused to take (hand_over), from any thread; the loop's thread takes them at
  // the call's next turn there (take_mail).
  std::mutex mail_lock_;
  std::shared_ptr<route> mail_;  // the newest parked route, linked through next_mail
  std::atomic<bool> has_mail_{false};
  std::uint64_t timer_generation_ = 0;
  std::optional<time_point> armed_;  // when the timer last armed will fire, until it has
  bool pumping_ = false;  // inside pump(): answers are posted, never handled re-entrantly
  std::shared_ptr<async_call> self_;  // the call owns itself until it is done
};

template <class Chain, class Loop, class Pool, class Tuple, std::size_t... I>
auto launch_call(const Chain& chain, Loop& loop, Pool& pool, const call_options& call, Tuple&& t,
                 std::index_sequence<I...>, std::shared_ptr<void> loop_owner = nullptr) {
  constexpr std::size_t last = sizeof...(I);
  using handler = std::decay_t<std::tuple_element_t<last, std::decay_t<Tuple>>>;
  using state = async_call<Chain, Loop, Pool, handler,
                           std::decay_t<std::tuple_element_t<I, std::decay_t<Tuple>>>...>;
  auto s = std::make_shared<state>(chain, loop, std::move(loop_owner), pool,
                                   std::get<last>(std::forward<Tuple>(t)),
                                   std::get<I>(std::forward<Tuple>(t))...);
  s->start(call);
  return s;
}

template <class, class = void>
struct is_loop : std::false_type {};
template <class L>
struct is_loop<L,
               std::void_t<decltype(std::declval<L&>().post(std::function<void()>{})),
                           decltype(std::declval<L&>().at(time_point{}, std::function<void()>{}))>>
    : std::true_type {};

}  // namespace detail

// Runs one call of `chain` on `loop`: async_run(chain, loop, args..., on_done), where on_done is
// called once, on the loop's thread, with the call's result<value>. The arguments are copied into
// the call (every attempt needs them). `chain` and `loop` must outlive the call, and `chain` the
// loop. Synchronous entries run inline on the loop's thread; async_run_on(chain, loop, pool, call,
// args..., on_done) puts them on `pool`, with per-call options. A loop whose post() refuses the
// call's start: async_run throws what it threw.
template <class Chain, class Loop, class Pool, class... ArgsAndHandler,
          std::enable_if_t<detail::is_loop<Loop>::value, int> = 0>
void async_run_on(const Chain& chain, Loop& loop, Pool& pool, const call_options& call,
                  ArgsAndHandler&&... args_and_handler) {
  static_assert(sizeof...(ArgsAndHandler) >= 1,
                "failover::async_run(chain, loop, args..., on_done): the last argument must be "
                "the callback that receives the result");
  detail::launch_call(chain, loop, pool, call,
                      std::forward_as_tuple(std::forward<ArgsAndHandler>(args_and_handler)...),
                      std::make_index_sequence<sizeof...(ArgsAndHandler) - 1>{});
}

template <class Chain, class Loop, class... ArgsAndHandler,
          std::enable_if_t<detail::is_loop<Loop>::value, int> = 0>
void async_run(const Chain& chain, Loop& loop, ArgsAndHandler&&... args_and_handler) {
  static inline_pool inline_runner;
  async_run_on(chain, loop, inline_runner, detail::no_call_options,
               std::forward<ArgsAndHandler>(args_and_handler)...);
}

}  // namespace failover
