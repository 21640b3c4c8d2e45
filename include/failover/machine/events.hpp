// What a driver tells a call machine (events, each with the time it happened) and what the machine
// asks of its driver (actions). The machine reads no clock and does no I/O: these are its only
// edges.
#pragma once

#include <cstdint>
#include <exception>
#include <utility>

#include "failover/core/clock.hpp"
#include "failover/core/context.hpp"
#include "failover/core/outcome.hpp"

namespace failover {

// An attempt's id: unique within its call, from 1. An answer for an id the machine no longer
// waits for (cancelled, or a call already done) is ignored.
using attempt_id = std::uint32_t;

// ---- events: m.handle(event, now) ----
namespace events {

// The driver began attempt `id` (optional: without it, the attempt counts from start_attempt).
struct attempt_started {
  attempt_id id = 0;
};
// Attempt `id` answered: a value or a failover::failure.
template <class R>
struct answered {
  attempt_id id = 0;
  outcome<R> answer;
};
// Attempt `id` threw, or its completion was lost (a null exception_ptr is reported as `unknown`).
struct failed {
  attempt_id id = 0;
  std::exception_ptr thrown;
};
// The wait asked for by the latest sleep_until is over. The machine takes the driver's word for
// it (a Sleeper may cut a wait short in its own way) and goes on at `now`.
struct timer_fired {};
// The call is cancelled (its token, or an Asio terminal cancellation): attempts in flight are
// cancelled and the call ends with error_kind::cancelled.
struct cancelled {};
// A driver's own effect (a timer, a Sleeper, an executor) threw: the call ends with an `unknown`
// error naming `what`.
struct driver_failed {
  const char* what = "the driver";
  std::exception_ptr cause;
};

}  // namespace events

// ---- actions: m.poll() ----
namespace actions {

// Call entry `entry` with `context` and report its answer as answered{id, ...}. The context (and
// the model name and token it refers to) stays valid until that answer is handled or the machine
// is destroyed.
struct start_attempt {
  attempt_id id = 0;
  std::size_t entry = 0;
  const attempt_context* context = nullptr;
};
// Attempt `id` is no longer wanted: abort it (its answer, if it comes, will be ignored).
struct cancel_attempt {
  attempt_id id = 0;
};
// Deliver timer_fired at `at` (or cancelled, if the call is cancelled first). A later sleep_until
// replaces an earlier one.
struct sleep_until {
  time_point at{};
  duration wait{};  // `at` minus the time the machine decided it, for drivers that sleep a duration
};
// The call has its one outcome: take() it.
struct done {};
}  // namespace actions

}  // namespace failover
