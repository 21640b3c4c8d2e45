// The call forms a user's callable may take (with or without the attempt's context, returning R or
// outcome<R>), and one way to call any of them.
#pragma once

#include <type_traits>

#include "failover/context.hpp"
#include "failover/outcome.hpp"

namespace failover::detail {

// Which call form a user callable has, for signature R(Args...).
enum class call_form { invalid, ctx_outcome, ctx_value, plain_outcome, plain_value };

template <class R, class Ret>
constexpr bool returns_outcome = std::is_same_v<std::decay_t<Ret>, outcome<R>>;

template <class R, class F, class... Args>
constexpr call_form form_of() {
  if constexpr (std::is_invocable_v<F&, const attempt_context&, Args&...>) {
    using returned = std::invoke_result_t<F&, const attempt_context&, Args&...>;
    if constexpr (returns_outcome<R, returned>)
      return call_form::ctx_outcome;
    else if constexpr (std::is_convertible_v<returned, R>)
      return call_form::ctx_value;
    else
      return call_form::invalid;
  } else if constexpr (std::is_invocable_v<F&, Args&...>) {
    using returned = std::invoke_result_t<F&, Args&...>;
    if constexpr (returns_outcome<R, returned>)
      return call_form::plain_outcome;
    else if constexpr (std::is_convertible_v<returned, R>)
      return call_form::plain_value;
    else
      return call_form::invalid;
  } else {
    return call_form::invalid;
  }
}

template <class R, class F, class... Args>
outcome<R> invoke_as_outcome(F& f, const attempt_context& ctx, Args&... args) {
  constexpr call_form form = form_of<R, F, Args...>();
  if constexpr (form == call_form::ctx_outcome || form == call_form::ctx_value) {
    return outcome<R>(f(ctx, args...));
  } else {
    return outcome<R>(f(args...));
  }
}

}  // namespace failover::detail
