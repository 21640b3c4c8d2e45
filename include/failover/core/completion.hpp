// How an asynchronous entry answers: it is handed a completion and calls it once with its
// outcome, from any thread. Called twice, the second answer is dropped; never called (destroyed),
// the attempt fails as `unknown`, so a lost answer can neither hang a call nor end it twice.
#pragma once

#include <exception>
#include <memory>
#include <utility>

#include "failover/core/outcome.hpp"

namespace failover {

template <class R>
class completion {
 public:
  // Where the answer goes: `sink(state, &answer, nullptr)`; `sink(state, nullptr, &thrown)` for
  // fail(); `sink(state, nullptr, nullptr)` when the completion is destroyed unanswered. `state` is
  // kept alive by the completion.
  using sink_type = void (*)(void* state, outcome<R>* answer, std::exception_ptr* thrown) noexcept;

  completion() = default;
  completion(sink_type sink, std::shared_ptr<void> state) noexcept
      : sink_(sink), state_(std::move(state)) {}
  completion(const completion&) = delete;
  completion& operator=(const completion&) = delete;
  completion(completion&& other) noexcept
      : sink_(std::exchange(other.sink_, nullptr)), state_(std::move(other.state_)) {}
  completion& operator=(completion&& other) noexcept {
    if (this != &other) {
      lose();
      sink_ = std::exchange(other.sink_, nullptr);
      state_ = std::move(other.state_);
    }
    return *this;
  }
  ~completion() { lose(); }

  // Hands over the attempt's answer. Only the first call counts.
  void operator()(outcome<R> answer) noexcept {
    if (sink_type s = std::exchange(sink_, nullptr)) {
      s(state_.get(), &answer, nullptr);
      state_.reset();
    }
  }
  // The attempt threw `thrown` (e.g. in a coroutine or on another thread): it is classified as
  // what a synchronous callable throws is. A null exception_ptr is reported as `unknown`.
  void fail(std::exception_ptr thrown) noexcept {
    if (sink_type s = std::exchange(sink_, nullptr)) {
      s(state_.get(), nullptr, &thrown);
      state_.reset();
    }
  }
  // Whether an answer can still be handed over.
  explicit operator bool() const noexcept { return sink_ != nullptr; }

 private:
  void lose() noexcept {
    if (sink_type s = std::exchange(sink_, nullptr)) {
      s(state_.get(), nullptr, nullptr);
      state_.reset();
    }
  }
  sink_type sink_ = nullptr;
  std::shared_ptr<void> state_;
};

namespace detail {
// The failure an attempt reports when its completion is destroyed without being called.
inline failure lost_completion() {
  return failure::of(error_kind::unknown,
                     "the attempt's completion was destroyed without being called");
}
}  // namespace detail

}  // namespace failover
