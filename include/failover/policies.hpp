// The policy bundle a retrier or chain is built from, and the compile-time checks that tell a user
// which member their own policy is missing.
#pragma once

#include <exception>
#include <type_traits>
#include <utility>

#include "failover/backoff.hpp"
#include "failover/classifier.hpp"
#include "failover/clock.hpp"
#include "failover/hooks.hpp"

namespace failover {

// Derive from this and replace what you need:
//   struct my_policies : failover::default_policies { using hooks = failover::callback_hooks; };
struct default_policies {
  using classifier = failover::classifier;
  using backoff = failover::exponential_backoff<>;
  using clock = failover::steady_clock;
  using sleeper = failover::thread_sleeper;
  using hooks = failover::no_hooks;
};

namespace detail {

template <class, class = void>
struct has_classify : std::false_type {};
template <class C>
struct has_classify<
    C, std::enable_if_t<std::is_convertible_v<decltype(std::declval<const C&>().classify(
                                                  std::declval<const failure&>(),
                                                  std::declval<wall_time>())),
                                              error> &&
                        std::is_convertible_v<decltype(std::declval<const C&>().classify(
                                                  std::declval<std::exception_ptr>(),
                                                  std::declval<wall_time>())),
                                              error>>> : std::true_type {};

template <class, class = void>
struct has_next : std::false_type {};
template <class B>
struct has_next<B, std::enable_if_t<std::is_convertible_v<
                       decltype(std::declval<B&>().next(1)), duration>>> : std::true_type {};

template <class, class = void>
struct has_now : std::false_type {};
template <class C>
struct has_now<C, std::enable_if_t<std::is_convertible_v<decltype(std::declval<const C&>().now()),
                                                         time_point> &&
                                   std::is_convertible_v<
                                       decltype(std::declval<const C&>().wall_now()), wall_time>>>
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
struct has_hooks<H, std::void_t<decltype(std::declval<const H&>().on_attempt_start(
                                    std::declval<const attempt_started&>())),
                                decltype(std::declval<const H&>().on_attempt_end(
                                    std::declval<const attempt_ended&>())),
                                decltype(std::declval<const H&>().on_retry(
                                    std::declval<const retry_scheduled&>())),
                                decltype(std::declval<const H&>().on_fallback(
                                    std::declval<const fallback_taken&>())),
                                decltype(std::declval<const H&>().on_give_up(
                                    std::declval<const gave_up&>()))>> : std::true_type {};

template <class P>
constexpr bool check_policies() {
  static_assert(has_classify<typename P::classifier>::value,
                "failover policies: Policies::classifier must provide `error classify(const "
                "failure&, wall_time) const` and `error classify(std::exception_ptr, wall_time) "
                "const` (see failover::classifier)");
  static_assert(has_next<typename P::backoff>::value &&
                    std::is_copy_constructible_v<typename P::backoff>,
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
                "on_retry, on_fallback and on_give_up (derive from failover::no_hooks)");
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

  // Configure before sharing the object between threads; calls only read these.
  classifier_type& classifier() noexcept { return classifier_; }
  const classifier_type& classifier() const noexcept { return classifier_; }
  clock_type& clock() noexcept { return clock_; }
  const clock_type& clock() const noexcept { return clock_; }
  sleeper_type& sleeper() noexcept { return sleeper_; }
  const sleeper_type& sleeper() const noexcept { return sleeper_; }
  hooks_type& hooks() noexcept { return hooks_; }
  const hooks_type& hooks() const noexcept { return hooks_; }

 protected:
  classifier_type classifier_{};
  clock_type clock_{};
  sleeper_type sleeper_{};
  hooks_type hooks_{};
};

}  // namespace detail
}  // namespace failover
