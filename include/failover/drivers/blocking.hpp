// The blocking driver: a plain loop over the call machine that calls each attempt on the calling
// thread and sleeps through the Sleeper policy. run() and run_with() are this loop.
#pragma once

#include <exception>
#include <optional>
#include <utility>
#include <variant>

#include "failover/core/context.hpp"
#include "failover/machine/call_machine.hpp"

namespace failover {

namespace detail {

// The loop: every turn is a poll() and what it says.
template <class Machine, class Clock, class Sleeper, class Invoke>
void drive_blocking(Machine& m, const Clock& clock, const Sleeper& sleeper, Invoke& invoke) {
  while (auto a = m.poll()) {
    if (const auto* s = std::get_if<actions::start_attempt>(&*a)) {
      try {
        auto answer = invoke(s->entry, *s->context);
        m.handle_answer(s->id, std::move(answer), clock.now());
      } catch (...) {
        m.handle(events::failed{s->id, std::current_exception()}, clock.now());
      }
    } else if (const auto* w = std::get_if<actions::sleep_until>(&*a)) {
      bool completed = false;
      try {
        completed = sleeper.sleep_for(w->wait, m.token());
      } catch (...) {
        m.handle(events::driver_failed{"the Sleeper policy", std::current_exception()},
                 clock.now());
        continue;
      }
      if (completed)
        m.handle(events::timer_fired{}, clock.now());
      else
        m.handle(events::cancelled{}, clock.now());
    } else if (std::holds_alternative<actions::done>(*a)) {
      break;
    }
    // cancel_attempt: nothing to abort; a blocking attempt has returned before the next action.
  }
}

// A call with no deadline makes its first attempt here, on the machine's own steps (ask_first,
// announce, succeeded), with no machine built: a value ends the call, and anything else goes to a
// machine that adopts the attempt (or the gates' verdict) and runs the call on. The steps are
// private to the machine and this driver.
struct blocking_first {
  // True when the call went this way and `out` holds its result; false when it must be a machine
  // from its start (a deadline, or the start rule stops it), with nothing done yet.
  template <class Machine, class Plan, class R, class Clock, class Sleeper, class Invoke>
  FAILOVER_MACHINE_HOT static bool run(const Plan& plan, const call_options& call, result<R>& out,
                                       time_point start, const Clock& clock, const Sleeper& sleeper,
                                       Invoke& invoke) {
    static_assert(trace::inline_attempts >= 1, "the first record must not allocate");
    if constexpr (!Machine::can_begin_outside) {
      return false;
    } else {
      typename Machine::first_verdict first;
      if (!Machine::ask_first(plan, call, start, first)) return false;
      if (!first.v.is_go()) {
        go_on<Machine>(plan, call, out, start, first, nullptr, nullptr, start, clock, sleeper,
                       invoke);
        return true;
      }
      const std::size_t entry = *plan.start;
      attempt_record& rec =
          Machine::announce(plan, out, entry, 1, 1, std::nullopt, duration::zero());
      const attempt_context context{(*plan.names)[entry], 1, 1, std::nullopt, &call.token};
      try {
        outcome<R> answer = invoke(entry, context);
        const time_point end = clock.now();
        if (answer.has_value()) {
          rec.elapsed = end - start;
          out.set_value(*std::move(answer));
          Machine::succeeded(plan, rec, entry, end, first.held);
        } else {
          go_on<Machine>(plan, call, out, start, first, &answer, nullptr, end, clock, sleeper,
                         invoke);
        }
      } catch (...) {
        go_on<Machine>(plan, call, out, start, first, nullptr, std::current_exception(),
                       clock.now(), clock, sleeper, invoke);
      }
      return true;
    }
  }

  // The first attempt did not end the call: a machine adopts it (its `answer`, what it `threw`,
  // or neither when the gates stopped it) and is driven to the end. Out of line, and one
  // instance for all three: the call that succeeds at once is the one the driver keeps short.
  template <class Machine, class Plan, class R, class Verdict, class Clock, class Sleeper,
            class Invoke>
  FAILOVER_MACHINE_COLD static void go_on(const Plan& plan, const call_options& call,
                                          result<R>& out, time_point start, const Verdict& first,
                                          outcome<typename Machine::value_type>* answer,
                                          std::exception_ptr threw, time_point end,
                                          const Clock& clock, const Sleeper& sleeper,
                                          Invoke& invoke) noexcept {
    Machine m(Machine::adopt_first, start, first, plan, call, out);
    if (answer) {
      m.handle_answer(m.adopted(), std::move(*answer), end);
    } else if (threw) {
      m.handle(events::failed{m.adopted(), std::move(threw)}, end);
    }
    drive_blocking(m, clock, sleeper, invoke);
  }
};

}  // namespace detail

// Runs one call to its end. `invoke(entry, context)` calls the entry's callable and returns
// outcome<R>; what it throws (copying an argument into a by-value parameter included) is the
// attempt's answer. The Sleeper waits out each sleep_until and says whether it was cancelled.
// A call with no deadline begins in detail::blocking_first; every other call is a machine from its
// start.
template <class R, class Plan, class Clock, class Sleeper, class Invoke>
result<R> run_blocking(const Plan& plan, const call_options& call, const Clock& clock,
                       const Sleeper& sleeper, Invoke&& invoke) {
  using machine = call_machine<R, Plan, detail::borrowed_call<R, Plan>>;
  // The machine borrows the options and writes into `out`, which is returned as it is (NRVO).
  result<R> out(plan.names);
  const time_point start = clock.now();
  if (detail::blocking_first::run<machine>(plan, call, out, start, clock, sleeper, invoke))
    return out;
  machine m(start, plan, call, out);
  detail::drive_blocking(m, clock, sleeper, invoke);
  return out;
}

}  // namespace failover
