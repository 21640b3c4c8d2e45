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

// Runs one call to its end. `invoke(entry, context)` calls the entry's callable and returns
// outcome<R>; what it throws (copying an argument into a by-value parameter included) is the
// attempt's answer. The Sleeper waits out each sleep_until and says whether it was cancelled.
template <class R, class Plan, class Clock, class Sleeper, class Invoke>
result<R> run_blocking(const Plan& plan, const call_options& call, const Clock& clock,
                       const Sleeper& sleeper, Invoke&& invoke) {
  // The machine borrows the options and writes into `out`, which is returned as it is (NRVO).
  result<R> out(plan.names);
  using machine = call_machine<R, Plan, detail::borrowed_call<R, Plan>>;
  machine m(machine::not_begun, clock.now(), plan, call, out);
  // The first attempt is handed over without the queue, and a value it returns ends the call
  // there; every other turn is a poll().
  if (const std::optional<actions::start_attempt> first = m.first_start()) {
    try {
      outcome<R> answer = invoke(first->entry, *first->context);
      m.first_answer(first->id, std::move(answer), clock.now());
    } catch (...) {
      m.handle(events::failed{first->id, std::current_exception()}, clock.now());
    }
    if (m.is_done()) return out;
  }
  while (auto a = m.poll()) {
    if (const auto* s = std::get_if<actions::start_attempt>(&*a)) {
      try {
        outcome<R> answer = invoke(s->entry, *s->context);
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
  return out;
}

}  // namespace failover
