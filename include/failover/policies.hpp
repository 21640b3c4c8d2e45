// The policy bundle a retrier or chain is built from, and the compile-time checks that tell a user
// which member their own policy is missing.
#pragma once

#include <exception>
#include <type_traits>
#include <utility>

#include "failover/backoff.hpp"
#include "failover/circuit_breaker.hpp"
#include "failover/classifier.hpp"
#include "failover/clock.hpp"
#include "failover/hooks.hpp"
#include "failover/retry_budget.hpp"

namespace failover {

// Derive from this and replace what you need:
//   struct my_policies : failover::default_policies { using hooks = failover::callback_hooks; };
struct default_policies {
  using classifier = failover::classifier;
  using backoff = failover::exponential_backoff<>;
  using clock = failover::steady_clock;
  using sleeper = failover::thread_sleeper;
  using hooks = failover::no_hooks;
  using breaker = failover::no_breaker;  // failover::circuit_breaker: shared per-model health
  using budget = failover::no_budget;    // failover::retry_budget: a shared cap on retries
};

// Shared health switched on: a circuit breaker per model and a retry budget, both shared by every
// chain that is given the same breaker and budget objects.
struct resilient_policies : default_policies {
  using breaker = failover::circuit_breaker;
  using budget = failover::retry_budget;
};

namespace detail {

template <class, class = void>
struct has_classify : std::false_type {};
template <class C>
struct has_classify<
    C,
    std::enable_if_t<
        std::is_convertible_v<decltype(std::declval<const C&>().classify(
                                  std::declval<const failure&>(), std::declval<wall_time>())),
                              error> &&
        std::is_convertible_v<decltype(std::declval<const C&>().classify(
                                  std::declval<std::exception_ptr>(), std::declval<wall_time>())),
                              error>>> : std::true_type {};

template <class, class = void>
struct has_next : std::false_type {};
template <class B>
struct has_next<
    B, std::enable_if_t<std::is_convertible_v<decltype(std::declval<B&>().next(1)), duration>>>
    : std::true_type {};

template <class, class = void>
struct has_now : std::false_type {};
template <class C>
struct has_now<C,
               std::enable_if_t<
                   std::is_convertible_v<decltype(std::declval<const C&>().now()), time_point> &&
                   std::is_convertible_v<decltype(std::declval<const C&>().wall_now()), wall_time>>>
    : std::true_type {};

template <class, class = void>
struct has_sleep_for : std::false_type {};
template <class S>
struct has_sleep_for<S, std::enable_if_t<std::is_convertible_v<
                            decltype(std::declval<const S&>().sleep_for(
                                std::declval<duration>(), std::declval<const cancel_token&>())),
                            bool>>> : std::true_type {};

template <class, class = void>
struct has_hooks : std::false_type {};
template <class H>
struct has_hooks<
    H,
    std::void_t<
        decltype(std::declval<const H&>().on_attempt_start(std::declval<const attempt_started&>())),
        decltype(std::declval<const H&>().on_attempt_end(std::declval<const attempt_ended&>())),
        decltype(std::declval<const H&>().on_retry(std::declval<const retry_scheduled&>())),
        decltype(std::declval<const H&>().on_fallback(std::declval<const fallback_taken&>())),
        decltype(std::declval<const H&>().on_skip(std::declval<const attempt_skipped&>())),
        decltype(std::declval<const H&>().on_give_up(std::declval<const gave_up&>()))>>
    : std::true_type {};

template <class, class = void>
struct has_breaker : std::false_type {};
template <class B>
struct has_breaker<
    B,
    std::enable_if_t<
        std::is_same_v<decltype(std::declval<const B&>().admit(
                           std::declval<const B&>().resolve(std::string_view{}),
                           std::declval<time_point>())),
                       admission> &&
        std::is_void_v<decltype(std::declval<const B&>().on_success(
            std::declval<typename B::handle>(), std::declval<time_point>(), true))> &&
        std::is_void_v<decltype(std::declval<const B&>().on_failure(
            std::declval<typename B::handle>(), std::declval<time_point>(),
            std::declval<const error&>(), true))> &&
        std::is_convertible_v<decltype(std::declval<const B&>().would_refuse(
                                  std::declval<typename B::handle>(), std::declval<time_point>())),
                              bool>>> : std::true_type {};

template <class, class = void>
struct has_budget : std::false_type {};
template <class B>
struct has_budget<
    B,
    std::enable_if_t<
        std::is_convertible_v<
            decltype(std::declval<const B&>().try_retry(std::declval<time_point>())), bool> &&
        std::is_void_v<decltype(std::declval<const B&>().on_first_attempt(
            std::declval<time_point>()))> &&
        std::is_void_v<decltype(std::declval<const B&>().on_success(std::declval<time_point>()))>>>
    : std::true_type {};

template <class P>
constexpr bool check_policies() {
  static_assert(has_classify<typename P::classifier>::value,
                "failover policies: Policies::classifier must provide `error classify(const "
                "failure&, wall_time) const` and `error classify(std::exception_ptr, wall_time) "
                "const` (see failover::classifier)");
  static_assert(
      has_next<typename P::backoff>::value && std::is_copy_constructible_v<typename P::backoff>,
      "failover policies: Policies::backoff must be copyable and provide `duration "
      "next(int attempt)` (see failover::exponential_backoff)");
  static_assert(has_now<typename P::clock>::value,
                "failover policies: Policies::clock must provide `time_point now() const` and "
                "`wall_time wall_now() const` (see failover::steady_clock)");
  static_assert(has_sleep_for<typename P::sleeper>::value,
                "failover policies: Policies::sleeper must provide `bool sleep_for(duration, const "
                "cancel_token&) const` (see failover::thread_sleeper)");
  static_assert(has_hooks<typename P::hooks>::value,
                "failover policies: Policies::hooks must provide on_attempt_start, on_attempt_end, "
                "on_retry, on_fallback, on_skip and on_give_up (derive from failover::no_hooks)");
  static_assert(has_breaker<typename P::breaker>::value,
                "failover policies: Policies::breaker must provide `handle resolve(string_view)`, "
                "`admission admit(handle, time_point)`, `void on_success(handle, time_point, "
                "bool)`, `void on_failure(handle, time_point, const error&, bool)` and `bool "
                "would_refuse(handle, time_point)` (see failover::no_breaker)");
  static_assert(has_budget<typename P::budget>::value,
                "failover policies: Policies::budget must provide `void "
                "on_first_attempt(time_point)`, `void on_success(time_point)` and `bool "
                "try_retry(time_point)` (see failover::no_budget)");
  return true;
}

// Holds one instance of each policy; the retrier and the chain both build on it.
template <class P>
class policy_holder {
  static_assert(check_policies<P>());

 public:
  using classifier_type = typename P::classifier;
  using backoff_type = typename P::backoff;
  using clock_type = typename P::clock;
  using sleeper_type = typename P::sleeper;
  using hooks_type = typename P::hooks;
  using breaker_type = typename P::breaker;
  using budget_type = typename P::budget;

  // Configure before sharing the object between threads; calls only read these.
  classifier_type& classifier() noexcept { return classifier_; }
  const classifier_type& classifier() const noexcept { return classifier_; }
  clock_type& clock() noexcept { return clock_; }
  const clock_type& clock() const noexcept { return clock_; }
  sleeper_type& sleeper() noexcept { return sleeper_; }
  const sleeper_type& sleeper() const noexcept { return sleeper_; }
  hooks_type& hooks() noexcept { return hooks_; }
  const hooks_type& hooks() const noexcept { return hooks_; }
  // The budget's copies share one bucket: give several chains copies of one budget to share it.
  budget_type& budget() noexcept { return budget_; }
  const budget_type& budget() const noexcept { return budget_; }
  // Replace the breaker with set_breaker() on the chain or retrier, which re-resolves its models.
  const breaker_type& breaker() const noexcept { return breaker_; }

 protected:
  classifier_type classifier_{};
  clock_type clock_{};
  sleeper_type sleeper_{};
  hooks_type hooks_{};
  breaker_type breaker_{};
  budget_type budget_{};
};

}  // namespace detail
}  // namespace failover
