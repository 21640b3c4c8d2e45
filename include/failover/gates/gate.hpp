// Gates: shared health and pacing (circuit breaker, retry budget, a rate limiter) as one shape the
// call machine asks before an attempt and tells after it, so it needs to know none of them by name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "failover/core/clock.hpp"
#include "failover/core/decision.hpp"
#include "failover/core/error.hpp"

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

// The Breaker and Budget policies a bundle names are put behind the gate shape (gate_set.hpp); the
// defaults below ask for nothing, so a default chain never includes the real breaker
// (gates/breaker.hpp) or budget (gates/budget.hpp). A Breaker has:
//   using handle = ...;  handle resolve(std::string_view) const;
//   admission admit(handle, time_point) const noexcept;
//   void on_success(handle, time_point, bool probe) const noexcept;
//   void on_failure(handle, time_point, const error&, bool probe) const noexcept;
//   bool would_refuse(handle, time_point) const noexcept;
// A Budget has no_budget's three members, each noexcept.

// What a Breaker's admit() says about the next call on a key.
struct admission {
  bool allowed = true;
  bool probe = false;  // the call is a half-open probe: its result decides the state
  time_point until{};  // when refused: when the key may be tried again
};

// The default: no shared health. Every member is an empty inline function.
struct no_breaker {
  using handle = std::nullptr_t;
  handle resolve(std::string_view) const noexcept { return nullptr; }
  admission admit(handle, time_point) const noexcept { return {}; }
  void on_success(handle, time_point, bool) const noexcept {}
  void on_failure(handle, time_point, const error&, bool) const noexcept {}
  bool would_refuse(handle, time_point) const noexcept { return false; }
};

// The default: no budget, every retry the retry policy allows goes.
struct no_budget {
  void on_first_attempt(time_point) const noexcept {}
  void on_success(time_point) const noexcept {}
  bool try_retry(time_point) const noexcept { return true; }
};

}  // namespace failover
