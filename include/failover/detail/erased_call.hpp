// A chain entry's callable behind one plain function pointer, so that entries of different
// callable types sit in one vector and a call costs one indirect call.
#pragma once

#include <type_traits>
#include <utility>

#include "failover/core/context.hpp"
#include "failover/core/outcome.hpp"
#include "failover/detail/invoke.hpp"

namespace failover::detail {
// A callable that can be empty: a function or member pointer, or a class with an operator bool of
// its own (std::function and the like). A lambda without captures converts to bool only through
// its function pointer, which is never null: not asked. Named without <functional>, which the
// front door does not otherwise need.
template <class F, class = void>
struct has_operator_bool : std::false_type {};
template <class F>
struct has_operator_bool<F, std::void_t<decltype(&F::operator bool)>> : std::true_type {};
template <class F>
constexpr bool may_be_empty() noexcept {
  if constexpr (std::is_pointer_v<F> || std::is_member_pointer_v<F>)
    return true;
  else if constexpr (std::is_class_v<F>)
    return has_operator_bool<F>::value;
  else
    return false;
}

// An entry's callable behind one plain function pointer: a call costs one indirect call, with
// no emptiness check (add() refuses empty callables). Arguments go through as references to
// run()'s own parameters, never copied: every retry and fallback needs them again. Copies of a
// chain copy their callables, as std::function would.
template <class R, class... Args>
class erased_call {
 public:
  template <class F>
  explicit erased_call(F f)
      : object_(new F(std::move(f))),
        call_(&call<F>),
        start_(start_of<F>()),
        copy_(&copy<F>),
        destroy_(&destroy<F>),
        async_(form_of<R, F, Args...>() == call_form::async) {}
  erased_call(const erased_call& other)
      : object_(other.copy_(other.object_)),
        call_(other.call_),
        start_(other.start_),
        copy_(other.copy_),
        destroy_(other.destroy_),
        async_(other.async_) {}
  erased_call(erased_call&& other) noexcept
      : object_(std::exchange(other.object_, nullptr)),
        call_(other.call_),
        start_(other.start_),
        copy_(other.copy_),
        destroy_(other.destroy_),
        async_(other.async_) {}
  erased_call& operator=(erased_call other) noexcept {
    std::swap(object_, other.object_);
    std::swap(call_, other.call_);
    std::swap(start_, other.start_);
    std::swap(async_, other.async_);
    std::swap(copy_, other.copy_);
    std::swap(destroy_, other.destroy_);
    return *this;
  }
  ~erased_call() {
    if (object_) destroy_(object_);
  }

  // Calls it and returns its answer (an asynchronous entry is waited for).
  outcome<R> operator()(const attempt_context& ctx, Args&... args) const {
    return call_(object_, ctx, args...);
  }
  // Starts it; the answer goes to `done` (a synchronous entry runs here, then calls it). Only an
  // asynchronous callable has a start of its own: a chain run only by run() compiles none.
  void start(const attempt_context& ctx, Args&... args, completion<R> done) const {
    if (start_)
      start_(object_, ctx, args..., std::move(done));
    else
      done(call_(object_, ctx, args...));
  }
  // Whether the entry answers through a completion.
  bool is_async() const noexcept { return async_; }

 private:
  template <class F>
  static outcome<R> call(void* f, const attempt_context& ctx, Args&... args) {
    return invoke_as_outcome<R>(*static_cast<F*>(f), ctx, args...);
  }
  using start_fn = void (*)(void*, const attempt_context&, Args&..., completion<R>);
  template <class F>
  static void start_async(void* f, const attempt_context& ctx, Args&... args, completion<R> done) {
    (*static_cast<F*>(f))(ctx, args..., std::move(done));
  }
  template <class F>
  static constexpr start_fn start_of() noexcept {
    if constexpr (form_of<R, F, Args...>() == call_form::async)
      return &start_async<F>;
    else
      return nullptr;
  }
  template <class F>
  static void* copy(const void* f) {
    return new F(*static_cast<const F*>(f));
  }
  template <class F>
  static void destroy(void* f) noexcept {
    delete static_cast<F*>(f);
  }

  void* object_;
  outcome<R> (*call_)(void*, const attempt_context&, Args&...);
  start_fn start_;  // null: a synchronous callable
  void* (*copy_)(const void*);
  void (*destroy_)(void*);
  bool async_ = false;
};
}  // namespace failover::detail
