// Run-time hooks: std::function callbacks for logs and metrics, set on a chain or retrier built
// with `using hooks = failover::callback_hooks;` in its policy bundle. Apart from hooks.hpp so that
// a chain with the default hooks does not compile <functional>.
#pragma once

#include <functional>

#include "failover/machine/hooks.hpp"

namespace failover {

// Run-time callbacks. A callback that throws is ignored: observing a call must not change its end.
struct callback_hooks {
  std::function<void(const attempt_started&)> attempt_start;
  std::function<void(const attempt_ended&)> attempt_end;
  std::function<void(const retry_scheduled&)> retry;
  std::function<void(const fallback_taken&)> fallback;
  std::function<void(const attempt_skipped&)> skip;
  std::function<void(const gave_up&)> give_up;

  void on_attempt_start(const attempt_started& e) const noexcept { call(attempt_start, e); }
  void on_attempt_end(const attempt_ended& e) const noexcept { call(attempt_end, e); }
  void on_retry(const retry_scheduled& e) const noexcept { call(retry, e); }
  void on_fallback(const fallback_taken& e) const noexcept { call(fallback, e); }
  void on_skip(const attempt_skipped& e) const noexcept { call(skip, e); }
  void on_give_up(const gave_up& e) const noexcept { call(give_up, e); }

 private:
  template <class F, class E>
  static void call(const F& f, const E& e) noexcept {
    if (!f) return;
    try {
      f(e);
    } catch (...) {  // NOLINT(bugprone-empty-catch): documented: hook failures are dropped
    }
  }
};

}  // namespace failover
