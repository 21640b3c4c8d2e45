// The call forms a user's callable may take (with or without the attempt's context, returning R or
// outcome<R>), and one way to call any of them.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <type_traits>

#include "failover/core/completion.hpp"
#include "failover/core/context.hpp"
#include "failover/core/outcome.hpp"

namespace failover::detail {

// Which call form a user callable has, for signature R(Args...). `async`: it takes the attempt's
// context, the arguments and a failover::completion<R>, and answers through the completion.
enum class call_form { invalid, ctx_outcome, ctx_value, plain_outcome, plain_value, async };

template <class R, class Ret>
constexpr bool returns_outcome = std::is_same_v<std::decay_t<Ret>, outcome<R>>;

template <class R, class F, class... Args>
constexpr call_form form_of() {
  if constexpr (std::is_invocable_v<F&, const attempt_context&, Args&..., completion<R>>) {
    return call_form::async;
  } else if constexpr (std::is_invocable_v<F&, const attempt_context&, Args&...>) {
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

// What a blocking caller of an asynchronous entry waits on: the completion's answer, from any
// thread.
template <class R>
struct awaited_answer {
  std::mutex mutex;
  std::condition_variable ready;
  std::optional<outcome<R>> answer;
  std::exception_ptr thrown;
  static void sink(void* state, outcome<R>* o, std::exception_ptr* e) noexcept {
    auto* self = static_cast<awaited_answer*>(state);
    std::lock_guard<std::mutex> lock(self->mutex);
    try {
      if (e)
        self->thrown = *e ? *e : std::make_exception_ptr(std::runtime_error("empty exception"));
      self->answer.emplace(o ? std::move(*o) : outcome<R>(lost_completion()));
    } catch (...) {  // the value's move threw: a failed attempt, as a thrown exception would be
      self->answer.emplace(failure::of(error_kind::unknown, "moving the answer threw"));
    }
    self->ready.notify_all();
  }
};

template <class R, class F, class... Args>
outcome<R> invoke_as_outcome(F& f, const attempt_context& ctx, Args&... args) {
  constexpr call_form form = form_of<R, F, Args...>();
  if constexpr (form == call_form::async) {
    // Called where an answer is needed now (run()): wait for the completion.
    auto state = std::make_shared<awaited_answer<R>>();
    f(ctx, args..., completion<R>(&awaited_answer<R>::sink, state));
    std::unique_lock<std::mutex> lock(state->mutex);
    state->ready.wait(lock, [&] { return state->answer.has_value(); });
    if (state->thrown) std::rethrow_exception(state->thrown);  // classified as a throw
    return std::move(*state->answer);
  } else if constexpr (form == call_form::ctx_outcome || form == call_form::ctx_value) {
    return outcome<R>(f(ctx, args...));
  } else {
    return outcome<R>(f(args...));
  }
}

}  // namespace failover::detail
