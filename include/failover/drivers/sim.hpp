// A driver in virtual time: many calls' machines on one event queue, the clock jumping from event
// to event. Simulations and tests run thousands of calls on the library's own rules this way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <optional>
#include <queue>
#include <utility>
#include <variant>
#include <vector>

#include "failover/core/clock.hpp"
#include "failover/core/outcome.hpp"
#include "failover/machine/events.hpp"

namespace failover {

// Drives call machines (`chain.begin_call(options, clock.now())`, `retrier.begin_call<R>(...)`) in
// virtual time. `Clock` is one the driver moves on: `now()` and `advance(duration)`, as
// testing::fake_clock has; give the chain the same clock, so that what the machine is told and
// what the chain reads agree.
//
// The world is the user's: `on_start(call, start_attempt)` is told of each attempt at the time
// it starts, and answers it through answer_at() or fail_at(), at once or later, or never (the
// call's deadline then ends it, if it has one). `on_done(call, result)` is told of each call's
// end. World events of its own (a server's queue, a network hop) go through at(). Events run in
// time order, those at the same time in the order they were scheduled; the clock is advanced to
// each before it runs. A cancelled call token is seen when the call's wait ends (as a Sleeper
// sees it), or through cancel_at().
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

  // Adds a call and carries out its first actions now. Machines stay where they are until their
  // call ends (a start_attempt's context points into its machine).
  call_id add(Machine m) {
    const call_id c = calls_.size();
    calls_.emplace_back();
    calls_.back().machine.emplace(std::move(m));
    ++running_;
    pump(c);
    return c;
  }

  // Hands attempt `attempt` of call `c` its answer now (from on_start: as the next event now,
  // since a machine is never entered from inside one of its own actions).
  void answer(call_id c, attempt_id attempt, outcome<value_type> answer) {
    if (pumping_) return answer_at(clock_.now(), c, attempt, std::move(answer));
    if (auto* m = live(c)) {
      m->handle_answer(attempt, std::move(answer), clock_.now());
      pump(c);
    }
  }
  // The same at `t` (not before now()).
  void answer_at(time_point t, call_id c, attempt_id attempt, outcome<value_type> answer) {
    at(t, [this, c, attempt, answer = std::move(answer)]() mutable {
      this->answer(c, attempt, std::move(answer));
    });
  }
  // The attempt threw `thrown`, now (as answer()) or at `t`.
  void fail(call_id c, attempt_id attempt, std::exception_ptr thrown) {
    if (pumping_) return fail_at(clock_.now(), c, attempt, std::move(thrown));
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
  void at(time_point t, std::function<void()> f) {
    if (t < clock_.now()) t = clock_.now();
    queue_.push(event{t, seq_++, std::move(f)});
  }

  // Runs every event, in time order, until none is left; returns how many ran.
  std::size_t run() {
    std::size_t n = 0;
    while (!queue_.empty()) {
      event e = queue_.top();  // std::priority_queue gives no way to move the top out
      queue_.pop();
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
  struct call {
    std::optional<Machine> machine;
    std::uint64_t timer = 0;  // the generation of the timer armed last; older ones do nothing
    std::optional<time_point> armed;
  };
  struct event {
    time_point at;
    std::uint64_t seq;
    std::function<void()> f;
    bool operator>(const event& o) const noexcept { return at != o.at ? at > o.at : seq > o.seq; }
  };

  Machine* live(call_id c) noexcept {
    auto& m = calls_[c].machine;
    return m ? &*m : nullptr;
  }

  // Carries out every action call `c` has. The handlers may add calls and schedule events, so
  // nothing of `calls_` is held across them (a deque keeps each machine where it is).
  void pump(call_id c) {
    pumping_ = true;
    struct done_pumping {
      bool& flag;
      ~done_pumping() { flag = false; }
    } reset{pumping_};
    while (Machine* m = live(c)) {
      std::optional<typename Machine::action> a = m->poll();
      if (!a) return watch(c);
      if (const auto* s = std::get_if<actions::start_attempt>(&*a)) {
        on_start_(c, *s);
      } else if (const auto* w = std::get_if<actions::sleep_until>(&*a)) {
        if (m->token().cancelled())
          m->handle(events::cancelled{}, clock_.now());
        else
          arm(c, w->at);
      } else if (std::holds_alternative<actions::done>(*a)) {
        result<value_type> r = std::move(*m).take();
        calls_[c].machine.reset();
        --running_;
        pumping_ = false;  // on_done may add calls and answer at once
        on_done_(c, std::move(r));
        return;
      }  // cancel_attempt: the machine ignores that attempt's answer, whenever it comes
    }
  }

  // With attempts in flight, the machine may want its deadline (next_timer()).
  void watch(call_id c) {
    const std::optional<time_point> t = calls_[c].machine->next_timer();
    if (t && t != calls_[c].armed) arm(c, *t);
  }

  void arm(call_id c, time_point t) {
    calls_[c].armed = t;
    const std::uint64_t generation = ++calls_[c].timer;
    at(t, [this, c, generation] {
      Machine* m = live(c);
      if (!m || generation != calls_[c].timer) return;
      calls_[c].armed.reset();
      if (m->token().cancelled())
        m->handle(events::cancelled{}, clock_.now());
      else
        m->handle(events::timer_fired{}, clock_.now());
      pump(c);
    });
  }

  Clock& clock_;
  start_handler on_start_;
  done_handler on_done_;
  std::deque<call> calls_;
  std::priority_queue<event, std::vector<event>, std::greater<>> queue_;
  std::uint64_t seq_ = 0;
  std::size_t running_ = 0;
  bool pumping_ = false;  // inside pump(): answers wait for the next event
};

}  // namespace failover
