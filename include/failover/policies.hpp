// The policy bundle a retrier or chain is built from, and the compile-time checks that tell a user
// which member their own policy is missing.
#pragma once

#include <exception>
#include <type_traits>
#include <utility>

#include "failover/core/backoff.hpp"
#include "failover/core/classifier.hpp"
#include "failover/core/clock.hpp"
#include "failover/gates/gate.hpp"
#include "failover/gates/gate_set.hpp"
#include "failover/machine/hooks.hpp"

namespace failover {

// Derive from this and replace what you need:
//   struct my_policies : failover::default_policies { using hooks = failover::callback_hooks; };
// Its breaker and budget ask for nothing; failover::resilient_policies (resilient_policies.hpp)
// switches both on.
struct default_policies {
  using classifier = failover::classifier;
  using backoff = failover::exponential_backoff<>;
  using clock = failover::steady_clock;
  using sleeper = failover::thread_sleeper;
  using hooks = failover::no_hooks;
  // failover::circuit_breaker (gates/breaker.hpp): shared per-model health
  using breaker = failover::no_breaker;
  // failover::retry_budget (gates/budget.hpp): a shared cap on retries
  using budget = failover::no_budget;
  using gates = failover::gate_list<>;  // more gates, asked after the breaker and the budget
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

// A member of a bundle, or `missing_policy` when the bundle has none: asking never fails, so a
// bad bundle is reported by its static_assert alone.
struct missing_policy {};
template <template <class> class Get, class P, class = void>
struct member_of {
  using type = missing_policy;
};
template <template <class> class Get, class P>
struct member_of<Get, P, std::void_t<Get<P>>> {
  using type = Get<P>;
};
template <class P>
using classifier_of = typename P::classifier;
template <class P>
using backoff_of = typename P::backoff;
template <class P>
using clock_of = typename P::clock;
template <class P>
using sleeper_of = typename P::sleeper;
template <class P>
using hooks_of = typename P::hooks;
template <class P>
using breaker_of = typename P::breaker;
template <class P>
using budget_of = typename P::budget;
template <class P>
using gates_of = typename P::gates;

template <class List>
struct is_gate_list : std::false_type {};
template <class... G>
struct is_gate_list<gate_list<G...>> : std::true_type {};

template <class Breaker, class Budget, class List>
struct gate_set_of {
  static_assert(is_gate_list<List>::value,
                "failover policies: Policies::gates must be failover::gate_list<Gate...> (the "
                "gates asked after the breaker and the budget)");
  using type = gate_set<breaker_gate<Breaker>, budget_gate<Budget>>;
};
template <class Breaker, class Budget, class... Extra>
struct gate_set_of<Breaker, Budget, gate_list<Extra...>> {
  using type = gate_set<breaker_gate<Breaker>, budget_gate<Budget>, Extra...>;
};
template <class P>
using extra_gates =
    std::conditional_t<std::is_same_v<typename member_of<gates_of, P>::type, missing_policy>,
                       gate_list<>, typename member_of<gates_of, P>::type>;

// Each check as a one-parameter template, the shape checked_member takes.
template <class C>
using fits_classifier = has_classify<C>;
template <class B>
using fits_backoff = std::bool_constant<has_next<B>::value && std::is_copy_constructible_v<B>>;
template <class C>
using fits_clock = has_now<C>;
template <class S>
using fits_sleeper = has_sleep_for<S>;
template <class H>
using fits_hooks = has_hooks<H>;
template <class B>
using fits_breaker = has_breaker<B>;
template <class B>
using fits_budget = has_budget<B>;

// The member if it is there and fits, else the default's. After a failed static_assert the
// holder is built from the substitutes, so no later use of the bad member is instantiated.
template <template <class> class Get, class P, template <class> class Fits, class Default>
using checked_member = std::conditional_t<Fits<typename member_of<Get, P>::type>::value,
                                          typename member_of<Get, P>::type, Default>;

template <class P>
struct checked_policies {
  using classifier =
      checked_member<classifier_of, P, fits_classifier, default_policies::classifier>;
  using backoff = checked_member<backoff_of, P, fits_backoff, default_policies::backoff>;
  using clock = checked_member<clock_of, P, fits_clock, default_policies::clock>;
  using sleeper = checked_member<sleeper_of, P, fits_sleeper, default_policies::sleeper>;
  using hooks = checked_member<hooks_of, P, fits_hooks, default_policies::hooks>;
  using breaker = checked_member<breaker_of, P, fits_breaker, default_policies::breaker>;
  using budget = checked_member<budget_of, P, fits_budget, default_policies::budget>;
};

template <template <class> class Get, class P>
constexpr bool has_member = !std::is_same_v<typename member_of<Get, P>::type, missing_policy>;

template <class P>
constexpr bool check_policies() {
  static_assert(has_member<classifier_of, P>,
                "failover policies: Policies::classifier is missing: derive the bundle from "
                "failover::default_policies and replace only what you need");
  static_assert(has_member<backoff_of, P>,
                "failover policies: Policies::backoff is missing: derive the bundle from "
                "failover::default_policies and replace only what you need");
  static_assert(has_member<clock_of, P>,
                "failover policies: Policies::clock is missing: derive the bundle from "
                "failover::default_policies and replace only what you need");
  static_assert(has_member<sleeper_of, P>,
                "failover policies: Policies::sleeper is missing: derive the bundle from "
                "failover::default_policies and replace only what you need");
  static_assert(has_member<hooks_of, P>,
                "failover policies: Policies::hooks is missing: derive the bundle from "
                "failover::default_policies and replace only what you need");
  static_assert(has_member<breaker_of, P>,
                "failover policies: Policies::breaker is missing: derive the bundle from "
                "failover::default_policies and replace only what you need");
  static_assert(has_member<budget_of, P>,
                "failover policies: Policies::budget is missing: derive the bundle from "
                "failover::default_policies and replace only what you need");
  static_assert(!has_member<classifier_of, P> ||
                    has_classify<typename member_of<classifier_of, P>::type>::value,
                "failover policies: Policies::classifier must provide `error classify(const "
                "failure&, wall_time) const` and `error classify(std::exception_ptr, wall_time) "
                "const` (see failover::classifier)");
  static_assert(
      !has_member<backoff_of, P> || fits_backoff<typename member_of<backoff_of, P>::type>::value,
      "failover policies: Policies::backoff must be copyable and provide `duration "
      "next(int attempt)` (see failover::exponential_backoff)");
  static_assert(!has_member<clock_of, P> || has_now<typename member_of<clock_of, P>::type>::value,
                "failover policies: Policies::clock must provide `time_point now() const` and "
                "`wall_time wall_now() const` (see failover::steady_clock)");
  static_assert(
      !has_member<sleeper_of, P> || has_sleep_for<typename member_of<sleeper_of, P>::type>::value,
      "failover policies: Policies::sleeper must provide `bool sleep_for(duration, const "
      "cancel_token&) const` (see failover::thread_sleeper)");
  static_assert(!has_member<hooks_of, P> || has_hooks<typename member_of<hooks_of, P>::type>::value,
                "failover policies: Policies::hooks must provide on_attempt_start, on_attempt_end, "
                "on_retry, on_fallback, on_skip and on_give_up (derive from failover::no_hooks)");
  static_assert(
      !has_member<breaker_of, P> || has_breaker<typename member_of<breaker_of, P>::type>::value,
      "failover policies: Policies::breaker must provide `handle resolve(string_view)`, "
      "`admission admit(handle, time_point)`, `void on_success(handle, time_point, "
      "bool)`, `void on_failure(handle, time_point, const error&, bool)` and `bool "
      "would_refuse(handle, time_point)` (see failover::no_breaker)");
  static_assert(
      !has_member<budget_of, P> || has_budget<typename member_of<budget_of, P>::type>::value,
      "failover policies: Policies::budget must provide `void "
      "on_first_attempt(time_point)`, `void on_success(time_point)` and `bool "
      "try_retry(time_point)` (see failover::no_budget)");
  return true;
}

// The policies a call reads on every path must not throw: a call that cannot read the time or hear
// its gates' answer has no way to end cleanly. (The Classifier, Hooks, Backoff and Sleeper may
// throw: the call ends with an error naming what threw.)
template <class Clock, class Breaker, class Budget>
constexpr bool check_noexcept_policies() {
  using clock = Clock;
  using breaker = Breaker;
  using budget = Budget;
  using handle = typename breaker::handle;
  const time_point at{};  // an lvalue: building a time_point{} temporary is not noexcept
  static_assert(noexcept(std::declval<const clock&>().now()),
                "failover policies: Policies::clock must provide `time_point now() const "
                "noexcept`: mark now() noexcept (as failover::steady_clock does)");
  static_assert(
      noexcept(std::declval<const breaker&>().admit(std::declval<handle>(), at))&& noexcept(
          std::declval<const breaker&>().on_success(
              std::declval<handle>(), at,
              true))&& noexcept(std::declval<const breaker&>()
                                    .on_failure(
                                        std::declval<handle>(), at, std::declval<const error&>(),
                                        true))&& noexcept(std::declval<const breaker&>()
                                                              .would_refuse(std::declval<handle>(),
                                                                            at)),
      "failover policies: Policies::breaker's admit, on_success, on_failure and would_refuse must "
      "be noexcept: a gate answers with a verdict, never an exception (catch inside and decide "
      "whether to let the call go, as failover::circuit_breaker does)");
  static_assert(noexcept(std::declval<const budget&>().on_first_attempt(at))&& noexcept(
                    std::declval<const budget&>().on_success(
                        at))&& noexcept(std::declval<const budget&>().try_retry(at)),
                "failover policies: Policies::budget's on_first_attempt, on_success and try_retry "
                "must be noexcept: a gate answers with a verdict, never an exception (as "
                "failover::retry_budget does)");
  return true;
}

// Holds one instance of each policy; the retrier and the chain both build on it.
template <class P>
class policy_holder {
  static_assert(check_policies<P>());
  using checked = checked_policies<P>;  // P itself when it passes the checks above

 public:
  using classifier_type = typename checked::classifier;
  using backoff_type = typename checked::backoff;
  using clock_type = typename checked::clock;
  using sleeper_type = typename checked::sleeper;
  using hooks_type = typename checked::hooks;
  using breaker_type = typename checked::breaker;
  using budget_type = typename checked::budget;
  using gates_type = typename gate_set_of<breaker_type, budget_type, extra_gates<P>>::type;
  static_assert(check_noexcept_policies<clock_type, breaker_type, budget_type>());

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
  budget_type& budget() noexcept { return gates_.template get<1>().policy(); }
  const budget_type& budget() const noexcept { return gates_.template get<1>().policy(); }
  // Replace the breaker with set_breaker() on the chain or retrier, which re-resolves its models.
  const breaker_type& breaker() const noexcept { return gates_.template get<0>().policy(); }
  // Every gate a call asks: the breaker, the budget, then the bundle's own `gates`.
  gates_type& gates() noexcept { return gates_; }
  const gates_type& gates() const noexcept { return gates_; }

 protected:
  classifier_type classifier_{};
  clock_type clock_{};
  sleeper_type sleeper_{};
  hooks_type hooks_{};
  gates_type gates_{};
};

}  // namespace detail
}  // namespace failover
