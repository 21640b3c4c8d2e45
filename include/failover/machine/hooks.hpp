// Hooks for logging and metrics: attempt start/end, retry, fallback, skip (open circuit), give-up.
// The default `no_hooks` compiles to nothing; `callback_hooks`
// (failover/machine/callback_hooks.hpp) takes std::function callbacks at run time.
#pragma once

#include <optional>
#include <string_view>

#include "failover/core/clock.hpp"
#include "failover/core/decision.hpp"
#include "failover/core/error.hpp"

namespace failover {

struct attempt_started {
  std::string_view model;
  int attempt;                        // on this model
  int total_attempt;                  // in this call
  std::optional<duration> remaining;  // what the attempt is told (attempt_context::remaining)
};

struct attempt_ended {
  std::string_view model;
  int attempt;
  bool ok;
  const failover::error* error;  // null when ok
  duration elapsed;
};

struct retry_scheduled {
  std::string_view model;
  int attempt;  // the attempt that failed
  duration wait;
  wait_reason reason;
  const failover::error& error;
};

struct fallback_taken {
  std::string_view from;
  std::string_view to;
  role to_role;  // content_policy here means a refused request is being rerouted
  const failover::error& cause;
  stop_reason why;  // why `from` gave up
};

struct attempt_skipped {
  std::string_view model;
  time_point until;  // when the model's circuit allows a probe again
};

struct gave_up {
  const failover::error& error;
  stop_reason why;
};

namespace detail {

template <class>
constexpr bool no_hook_slot_used = false;

// Stands where callback_hooks has a callback, so that `chain.hooks().retry = f` on a chain of the
// default policies says how to get callbacks (a compiler's own guess would be `on_retry`).
struct no_hook_slot {
  template <class F>
  const no_hook_slot& operator=(F&&) const {
    static_assert(
        no_hook_slot_used<F>,
        "failover: this chain or retrier has the default hooks (failover::no_hooks), "
        "which take no callbacks. Build it with callback hooks: `struct my_policies : "
        "failover::default_policies { using hooks = failover::callback_hooks; };` and "
        "failover::basic_fallback_chain<Signature, my_policies> (or "
        "failover::basic_retrier<my_policies>), from <failover/machine/callback_hooks.hpp>");
    return *this;
  }
};

}  // namespace detail

// The default: every hook is an empty inline function, so unset hooks cost nothing.
struct no_hooks {
  void on_attempt_start(const attempt_started&) const noexcept {}
  void on_attempt_end(const attempt_ended&) const noexcept {}
  void on_retry(const retry_scheduled&) const noexcept {}
  void on_fallback(const fallback_taken&) const noexcept {}
  void on_skip(const attempt_skipped&) const noexcept {}
  void on_give_up(const gave_up&) const noexcept {}

  // callback_hooks' members, each a compile-time error explaining the fix when assigned to.
  // Static, so that no_hooks stays empty.
  static constexpr detail::no_hook_slot attempt_start{};
  static constexpr detail::no_hook_slot attempt_end{};
  static constexpr detail::no_hook_slot retry{};
  static constexpr detail::no_hook_slot fallback{};
  static constexpr detail::no_hook_slot skip{};
  static constexpr detail::no_hook_slot give_up{};
};

}  // namespace failover
