// The callback driver: runs a chain's call on any event loop without holding a thread, and hands
// the result to a callback. The Asio driver (drivers/asio.hpp) is this driver on an Asio executor.
#pragma once

#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
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

// What an async call needs of its event loop (both may be called from any thread):
//   void post(std::function<void()> f);               run f on the loop's thread, soon
//   void at(time_point t, std::function<void()> f);   run f on the loop's thread at or after t
// A post() that throws: an answer given on the loop's thread (a Loop that can tell, below) inside
// one of the call's actions is still handed to the machine once that action returns; what at()
// throws ends the call with driver_failed; an answer from another thread that cannot be posted
// is lost, and so is the call (the loop cannot run it).
// A later at() may come before an earlier one fired; the driver ignores the stale one.
// A loop destroyed with calls pending lets each go: a function the loop destroys without having
// run it (or a copy) frees its call, whose on_done is destroyed, never called (loop_work). The
// call's state reads the chain as it is freed: the chain must outlive the loop.
//
// Synchronous entries run where the Pool puts them: inline (on the loop's thread, the default) or
// on a pool of threads the user gives, as `void submit(std::function<void()> f)`.
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
  enum : int { calling, lost_while_calling, returned };
  struct route {
    std::weak_ptr<async_call> call;
    std::shared_ptr<attempt> at;
    // While the entry is being called, a completion destroyed unanswered is only noted: if the
    // call then throws, what it threw is the attempt's answer, not the lost completion.
    std::atomic<int> phase{calling};
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
      if (!a && !inbox_.empty()) {  // an answer the loop could not take (answer_sink)
        auto [id, answer] = std::move(inbox_.front());
        inbox_.erase(inbox_.begin());
        forget(id);
        machine_->handle_answer(id, std::move(*answer), now());
        continue;
      }
      if (!a) return watch();
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

  void launch(const actions::start_attempt& s) {
    auto at = std::make_shared<attempt>();
    at->id = s.id;
    at->token = at->source.token();
    at->context = *s.context;
    at->context.cancel = &at->token;  // cancel_attempt cancels this one, not the whole call
    in_flight_.push_back(at);
    auto r = std::make_shared<route>();
    r->call = self_;
    r->at = at;
    completion<value> done(&answer_sink, r);
    const std::size_t entry = s.entry;
    if (chain_.entry_is_async(entry)) {
      invoke(entry, r, std::move(done));
    } else {
      // A synchronous entry runs where the pool says; the completion is shared so that the pool's
      // std::function can be copied.
      auto self = self_;
      auto boxed = std::make_shared<completion<value>>(std::move(done));
      pool_.submit([self, entry, r, boxed] { self->invoke(entry, r, std::move(*boxed)); });
    }
  }

  void invoke(std::size_t entry, const std::shared_ptr<route>& r, completion<value> done) {
    const std::shared_ptr<attempt>& at = r->at;
    try {
      std::apply(
          [&](Stored&... a) { chain_.start_entry(entry, at->context, a..., std::move(done)); },
          args_);
      if (r->phase.exchange(returned) == lost_while_calling) post_lost(at->id);
    } catch (...) {
      r->phase.store(returned);
      // What the entry threw is its answer (a later answer through the completion is dropped).
      post_failed(at->id, std::current_exception());
    }
  }

  // Hands what attempt `id` threw to the machine from the loop's thread (dropped once the call
  // has ended).
  void post_failed(attempt_id id, std::exception_ptr thrown) {
    post_to(loop_, *this, [id, thrown](async_call& c) { c.on_failed(id, thrown); });
  }
  void post_lost(attempt_id id) {
    post_to(loop_, *this,
            [id](async_call& c) { c.on_answer(id, outcome<value>(lost_completion())); });
  }

  static void answer_sink(void* state, outcome<value>* answer,
                          std::exception_ptr* thrown) noexcept {
    auto* r = static_cast<route*>(state);
    if (thrown) {
      auto self = r->call.lock();
      if (!self) return;
      try {
        self->post_failed(r->at->id, *thrown);
      } catch (...) {  // NOLINT(bugprone-empty-catch): the loop cannot take work: nothing to do
      }
      return;
    }
    if (!answer) {
      int expected = calling;
      if (r->phase.compare_exchange_strong(expected, lost_while_calling)) return;  // see route
    }
    auto self = r->call.lock();
    if (!self) return;                    // the call has ended: an answer too late for it
    if (going()) return self->abandon();  // a loop is being destroyed: see loop_teardowns()
    if (answer && on_loop_thread(self->loop_) && !self->pumping_) {
      // Already on the loop's thread and not inside one of the machine's actions (an HTTP
      // client's handler, typically): hand the answer over now, without a trip through the queue.
      // pumping_ belongs to the loop's thread: it is read only once the thread is known to be it.
      try {
        self->on_answer(r->at->id, std::move(*answer));
        return;
      } catch (...) {  // NOLINT(bugprone-empty-catch): posted below as what was thrown
      }
    }
    std::shared_ptr<outcome<value>> boxed;
    try {
      boxed = std::make_shared<outcome<value>>(answer ? std::move(*answer)
                                                      : outcome<value>(lost_completion()));
      const attempt_id id = r->at->id;
      post_to(self->loop_, *self,
              [id, boxed](async_call& c) { c.on_answer(id, std::move(*boxed)); });
    } catch (...) {
      // The loop took no work: on its own thread, inside pump(), the answer waits in the call's
      // inbox for the pump that is running.
      if (boxed && on_loop_thread(self->loop_) && self->pumping_) {
        try {
          self->inbox_.emplace_back(r->at->id, std::move(boxed));
          return;
        } catch (...) {  // NOLINT(bugprone-empty-catch): reported below as what was thrown
        }
      }
      // Out of memory, or the answer's move threw: the attempt fails with what was thrown.
      try {
        self->post_failed(r->at->id, std::current_exception());
      } catch (...) {  // NOLINT(bugprone-empty-catch): nothing left to report it with
      }
    }
  }

  void forget(attempt_id id) {
    for (std::size_t i = 0; i < in_flight_.size(); ++i)
      if (in_flight_[i]->id == id) {
        in_flight_.erase(in_flight_.begin() + static_cast<std::ptrdiff_t>(i));
        return;
      }
  }
  void on_answer(attempt_id id, outcome<value>&& answer) {
    if (!machine_) return;
    forget(id);
    machine_->handle_answer(id, std::move(answer), now());
    pump();
  }
  void on_failed(attempt_id id, std::exception_ptr thrown) {
    if (!machine_) return;
    forget(id);
    machine_->handle(events::failed{id, std::move(thrown)}, now());
    pump();
  }

  void abort(attempt_id id) {
    for (const auto& at : in_flight_)
      if (at->id == id) at->source.cancel();
    forget(id);
  }

  // With attempts in flight, the machine may want the timer at its deadline (next_timer()).
  void watch() {
    const std::optional<time_point> t = machine_->next_timer();
    if (t && t != armed_) arm(*t);
  }

  void arm(time_point at) {
    armed_ = at;
    const std::uint64_t generation = ++timer_generation_;
    try {
      const loop_mark handing(loop_handing_call(), this);
      loop_.at(at, work([generation](async_call& c) {
                 if (!c.machine_ || generation != c.timer_generation_) return;
                 c.armed_.reset();
                 c.machine_->handle(events::timer_fired{}, c.now());
                 c.pump();
               }));
    } catch (...) {
      machine_->handle(events::driver_failed{"the loop's timer", std::current_exception()}, now());
    }
  }

  // Frees everything the call holds, then hands over its result.
  void finish() {
    result<value> res = std::move(*machine_).take();
    machine_.reset();
    on_token_.reset();
    for (const auto& at : in_flight_) at->source.cancel();
    in_flight_.clear();
    inbox_.clear();
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
  // Answers handed over on the loop's thread inside pump() when the loop's post() threw; pump()
  // hands them to the machine once it has no action left. Loop's thread only.
  std::vector<std::pair<attempt_id, std::shared_ptr<outcome<value>>>> inbox_;
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
