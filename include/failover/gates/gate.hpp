// Gates: shared health and pacing (circuit breaker, retry budget, a rate limiter) as one shape the
// call machine asks before an attempt and tells after it, so it needs to know none of them by name.
#pragma once

#include <cstdint>
#include <string_view>

#include "failover/clock.hpp"
#include "failover/decision.hpp"
#include "failover/error.hpp"

namespace failover {

// A gate's answer before an attempt. A refusal is a value, never an exception.
struct verdict {
  enum class kind : std::uint8_t { go, wait, refuse };
  kind what = kind::go;
  stop_reason why =
      stop_reason::none;     // refuse: what the trace says (circuit_open, budget_exhausted)
  duration wait{};           // wait: ask again after this long
  time_point until{};        // refuse: when the gate may let this key through again
  std::uint32_t ticket = 0;  // go: handed back in the report (e.g. a half-open probe)

  static constexpr verdict go(std::uint32_t ticket = 0) noexcept {
    return verdict{kind::go, stop_reason::none, {}, {}, ticket};
  }
  static constexpr verdict wait_for(duration d) noexcept {
    return verdict{kind::wait, stop_reason::none, d, {}, 0};
  }
  static constexpr verdict refuse(time_point until, stop_reason why) noexcept {
    return verdict{kind::refuse, why, {}, until, 0};
  }
  constexpr bool is_go() const noexcept { return what == kind::go; }
};

// What the machine asks about.
enum class ask_phase : std::uint8_t {
  attempt,     // an attempt is about to start now (a model's first, or a retry after its wait)
  plan_retry,  // a retry would start at `at`, after its wait: is it worth waiting for?
};

struct gate_question {
  ask_phase phase = ask_phase::attempt;
  time_point now{};
  time_point at{};  // when the attempt would start (now, or now + the retry's wait)
};

// What the machine tells after an attempt: its classified failure (null: it succeeded), or that it
// was abandoned (cancelled, or its call ended by an exception) and counts as nothing.
struct gate_report {
  time_point now{};
  const error* failure = nullptr;
  std::uint32_t ticket = 0;
  bool abandoned = false;
};

// A gate is a class with:
//   using key = ...;                                   // per entry (may be an empty type)
//   key resolve(std::string_view entry_name) const;     // once per entry, when it is added
//   void on_call(time_point now) const noexcept;        // a call began (before its first ask)
//   verdict ask(const key&, const gate_question&) const noexcept;
//   bool would_refuse(const key&, time_point at) const noexcept;  // a peek, with no side effect
//   void tell(const key&, const gate_report&) const noexcept;
// Copies share their state (the gates of several chains may be one). See gates/gate_set.hpp.

}  // namespace failover
