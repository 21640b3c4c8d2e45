// A chain entry's callable behind one plain function pointer, so that entries of different
// callable types sit in one vector and a call costs one indirect call.
#pragma once

#include <functional>
#include <type_traits>
#include <utility>

#include "failover/context.hpp"
#include "failover/detail/invoke.hpp"
#include "failover/outcome.hpp"

namespace failover::detail {
template <class T>
struct is_std_function : std::false_type {};
template <class S>
struct is_std_function<std::function<S>> : std::true_type {};

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
        start_(&start<F>),
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
  // Starts it; the answer goes to `done` (a synchronous entry runs here, then calls it).
  void start(const attempt_context& ctx, Args&... args, completion<R> done) const {
    start_(object_, ctx, args..., std::move(done));
  }
  // Whether the entry answers through a completion.
  bool is_async() const noexcept { return async_; }

 private:
  template <class F>
  static outcome<R> call(void* f, const attempt_context& ctx, Args&... args) {
    return invoke_as_outcome<R>(*static_cast<F*>(f), ctx, args...);
  }
  template <class F>
  static void start(void* f, const attempt_context& ctx, Args&... args, completion<R> done) {
    start_with_completion<R, F, Args...>(*static_cast<F*>(f), ctx, args..., std::move(done));
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
  void (*start_)(void*, const attempt_context&, Args&..., completion<R>);
  void* (*copy_)(const void*);
  void (*destroy_)(void*);
  bool async_ = false;
};
}  // namespace failover::detail
