// A driver in virtual time: many calls' machines on one event queue, the clock jumping from event
// to event. Simulations and tests run thousands of calls on the library's own rules this way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <stdexcept>
#include <utility>
#include <variant>
#include <vector>

#include "failover/core/clock.hpp"
#include "failover/core/context.hpp"
#include "failover/core/outcome.hpp"
#include "failover/machine/events.hpp"

namespace failover {

// Drives call machines (`chain.begin_call(options, clock.now())`, `retrier.begin_call<R>(...)`) in
// virtual time. `Clock` is one the driver moves on: `now()` and `advance(duration)`, as
// testing::fake_clock has; give the chain the same clock, so that what the machine is told and
// what the chain reads agree.
//
// The world is the user's: `on_start(call, start_attempt)` is told of each attempt at the time
// it starts, and answers it through answer() or answer_at(), fail() or fail_at(), at once or
// later, or never (the call's deadline then ends it, if it has one). What on_start throws is that
// attempt's answer. The attempt's context is the driver's copy, with a token of its own that is
// cancelled when the machine no longer wants the attempt (cancel_attempt, the deadline, the end
// of the call); it stays valid until the call ends. `on_done(call, result)` is told of each call's
// end. World events of its own (a server's queue, a network hop) go through at(). Events run in
// time order, those at the same time in the order they were scheduled; the clock is advanced to
// each before it runs, and a call's timer that a later one replaced, or whose call has ended, is
// dropped without moving the clock. A cancelled call token is seen when the call's wait ends (as
// a Sleeper sees it), or through cancel_at(). Handlers may add calls and schedule events; run()
// is not re-entered from one.
template <class Machine, class Clock>
class sim_driver {
 public:
  using value_type = typename Machine::value_type;
  using call_id = std::size_t;
  using start_handler = std::function<void(call_id, const actions::start_attempt&)>;
  using done_handler = std::function<void(call_id, result<value_type>)>;

  sim_driver(Clock& clock, start_handler on_start, done_handler on_done)
      : clock_(clock), on_start_(std::move(on_start)), on_done_(std::move(on_done)) {}
  sim_driver(const sim_driver&) = delete;
  sim_driver& operator=(const sim_driver&) = delete;

  // Adds a call and carries out its first actions now. Machines and attempt contexts stay where
  // they are until their call ends.
  call_id add(Machine m) {
    const call_id c = calls_.size();
    calls_.emplace_back();
    calls_.back().machine.emplace(std::move(m));
    ++running_;
    pump(c);
    return c;
  }

  // Hands attempt `attempt` of call `c` its answer now; from inside that call's own action
  // (its on_start), as the next event now, since a machine is never entered from inside one of
  // its own actions. An answer to an ended call, or to an attempt it gave up, is dropped.
  void answer(call_id c, attempt_id attempt, outcome<value_type> answer) {
    if (calls_[c].pumping) return answer_at(clock_.now(), c, attempt, std::move(answer));
    if (auto* m = live(c)) {
      m->handle_answer(attempt, std::move(answer), clock_.now());
      pump(c);
    }
  }
  // The same at `t` (not before now()).
  void answer_at(time_point t, call_id c, attempt_id attempt, outcome<value_type> answer) {
    auto boxed = std::make_shared<outcome<value_type>>(std::move(answer));  // std::function copies
    at(t, [this, c, attempt, boxed] { this->answer(c, attempt, std::move(*boxed)); });
  }
  // The attempt threw `thrown`, now (as answer()) or at `t`.
  void fail(call_id c, attempt_id attempt, std::exception_ptr thrown) {
    if (calls_[c].pumping) return fail_at(clock_.now(), c, attempt, std::move(thrown));
    if (auto* m = live(c)) {
      m->handle(events::failed{attempt, std::move(thrown)}, clock_.now());
      pump(c);
    }
  }
  void fail_at(time_point t, call_id c, attempt_id attempt, std::exception_ptr thrown) {
    at(t, [this, c, attempt, thrown] { fail(c, attempt, thrown); });
  }
  // Cancels call `c` at `t`.
  void cancel_at(time_point t, call_id c) {
    at(t, [this, c] {
      if (auto* m = live(c)) {
        m->handle(events::cancelled{}, clock_.now());
        pump(c);
      }
    });
  }
  // Runs `f` at `t` (a world event).
  void at(time_point t, std::function<void()> f) { schedule(t, std::move(f), no_call, 0); }

  // Runs every event, in time order, until none is left; returns how many ran. What an event
  // throws leaves run() (the events after it stay queued: run() again goes on).
  std::size_t run() {
    if (in_run_)
      throw std::logic_error(
          "failover::sim_driver::run(): called from inside run() (a handler or an event); "
          "return instead, and the running run() goes on");
    in_run_ = true;
    struct leave_run {
      bool& flag;
      ~leave_run() { flag = false; }
    } leave{in_run_};
    std::size_t n = 0;
    while (!queue_.empty()) {
      event e = queue_.top();  // std::priority_queue gives no way to move the top out
      queue_.pop();
      if (e.call != no_call && (!calls_[e.call].machine || e.generation != calls_[e.call].timer))
        continue;  // a timer replaced by a later one, or of a call that has ended
      const time_point now = clock_.now();
      if (e.at > now) clock_.advance(e.at - now);
      e.f();
      ++n;
    }
    return n;
  }

  // Calls added and not yet ended.
  std::size_t running() const noexcept { return running_; }
  const Clock& clock() const noexcept { return clock_; }

 private:
  static constexpr call_id no_call = static_cast<call_id>(-1);

  struct attempt_copy {
    attempt_id id = 0;
    cancel_source source;
    cancel_token token;
    attempt_context context;
  };
  struct call {
    std::optional<Machine> machine;
    std::deque<attempt_copy> attempts;  // the contexts handed to on_start, until the call ends
    std::uint64_t timer = 0;  // the generation of the timer armed last; older ones are dropped
    std::optional<time_point> armed;
    bool pumping = false;  // inside this call's pump(): its answers wait for the next event
  };
  struct event {
    time_point at;
    std::uint64_t seq;
    std::function<void()> f;
    call_id call;  // a call's timer: dropped unless `generation` is still that call's
    std::uint64_t generation;
    bool operator>(const event& o) const noexcept { return at != o.at ? at > o.at : seq > o.seq; }
  };

  void schedule(time_point t, std::function<void()> f, call_id c, std::uint64_t generation) {
    if (t < clock_.now()) t = clock_.now();
    queue_.push(event{t, seq_++, std::move(f), c, generation});
  }

  Machine* live(call_id c) noexcept {
    auto& m = calls_[c].machine;
    return m ? &*m : nullptr;
  }

  // Carries out every action call `c` has. The handlers may add calls and schedule events, so
  // no reference into `calls_` is held across them (a deque keeps each element where it is).
  void pump(call_id c) {
    struct mark {
      bool& flag;
      bool previous;
      ~mark() { flag = previous; }
    } pumping{calls_[c].pumping, calls_[c].pumping};
    calls_[c].pumping = true;
    while (Machine* m = live(c)) {
      std::optional<typename Machine::action> a = m->poll();
      if (!a) return watch(c);
      if (const auto* s = std::get_if<actions::start_attempt>(&*a)) {
        start(c, *m, *s);
      } else if (const auto* x = std::get_if<actions::cancel_attempt>(&*a)) {
        for (auto& at : calls_[c].attempts)
          if (at.id == x->id) at.source.cancel();
      } else if (const auto* w = std::get_if<actions::sleep_until>(&*a)) {
        if (m->token().cancelled())
          m->handle(events::cancelled{}, clock_.now());
        else
          arm(c, w->at);
      } else {  // done
        result<value_type> r = std::move(*m).take();
        end(c);
        on_done_(c, std::move(r));
        return;
      }
    }
  }

  // Hands the world attempt `s` with a context of the driver's own (see the class comment).
  void start(call_id c, Machine& m, const actions::start_attempt& s) {
    attempt_copy& at = calls_[c].attempts.emplace_back();
    at.id = s.id;
    at.token = at.source.token();
    at.context = *s.context;
    at.context.cancel = &at.token;
    actions::start_attempt mine = s;
    mine.context = &at.context;
    try {
      on_start_(c, mine);
    } catch (...) {
      m.handle(events::failed{s.id, std::current_exception()}, clock_.now());
    }
  }

  // Frees what call `c` holds once it has its result; its attempts' tokens are cancelled.
  void end(call_id c) {
    calls_[c].machine.reset();
    for (auto& at : calls_[c].attempts) at.source.cancel();
    calls_[c].attempts.clear();
    calls_[c].armed.reset();
    --running_;
  }

  // With attempts in flight, the machine may want its deadline (next_timer()).
  void watch(call_id c) {
    const std::optional<time_point> t = calls_[c].machine->next_timer();
    if (t && t != calls_[c].armed) arm(c, *t);
  }

  void arm(call_id c, time_point t) {
    calls_[c].armed = t;
    const std::uint64_t generation = ++calls_[c].timer;
    schedule(
        t,
        [this, c] {
          Machine* m = live(c);
          calls_[c].armed.reset();
          if (m->token().cancelled())
            m->handle(events::cancelled{}, clock_.now());
          else
            m->handle(events::timer_fired{}, clock_.now());
          pump(c);
        },
        c, generation);
  }

  Clock& clock_;
  start_handler on_start_;
  done_handler on_done_;
  std::deque<call> calls_;
  std::priority_queue<event, std::vector<event>, std::greater<>> queue_;
  std::uint64_t seq_ = 0;
  std::size_t running_ = 0;
  bool in_run_ = false;
};

}  // namespace failover
