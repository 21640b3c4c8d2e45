// The Retrier: one model, retried after transient failures with backoff and jitter, honouring the
// server's requested wait, until success, a permanent error, a cap, the deadline or cancellation.
#pragma once

#include <array>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "failover/core/context.hpp"
#include "failover/core/decision.hpp"
#include "failover/core/outcome.hpp"
#include "failover/detail/invoke.hpp"
#include "failover/drivers/blocking.hpp"
#include "failover/machine/call_machine.hpp"
#include "failover/machine/plan.hpp"
#include "failover/policies.hpp"

namespace failover {

namespace detail {
template <class Ret>
struct value_of {
  using type = std::decay_t<Ret>;
};
template <class T>
struct value_of<outcome<T>> {
  using type = T;
};

template <class F, class... Args>
auto answer_type() {
  if constexpr (std::is_invocable_v<F&, const attempt_context&, Args&...>) {
    return value_of<std::decay_t<std::invoke_result_t<F&, const attempt_context&, Args&...>>>{};
  } else if constexpr (std::is_invocable_v<F&, Args&...>) {
    return value_of<std::decay_t<std::invoke_result_t<F&, Args&...>>>{};
  } else {
    return value_of<void>{};
  }
}
}  // namespace detail

template <class Policies = default_policies>
class basic_retrier : public detail::policy_holder<Policies> {
 public:
  using backoff_type = typename detail::policy_holder<Policies>::backoff_type;
  using breaker_type = typename detail::policy_holder<Policies>::breaker_type;
  using gates_type = typename detail::policy_holder<Policies>::gates_type;
  using meta = entry_meta<backoff_type, typename gates_type::keys>;
  using plan_type = call_plan<std::array<meta, 1>, gates_type,
                              typename detail::policy_holder<Policies>::classifier_type,
                              typename detail::policy_holder<Policies>::hooks_type,
                              typename detail::policy_holder<Policies>::clock_type>;

  explicit basic_retrier(std::string model, retry_options retry = {},
                         backoff_type backoff = backoff_type{})
      : entries_{{meta{role::standard, (retry.validate(), retry), std::move(backoff), {}}}} {
    names_.push_back(checked_name(std::move(model)));
    entries_[0].keys = this->gates_.resolve(names_[0]);
    options_.max_hops = 1;
    options_.max_total_attempts = std::numeric_limits<int>::max();
  }

  // Shares model health through `b`; the model name is the health key.
  basic_retrier& set_breaker(breaker_type b) {
    this->gates_.template get<0>() = breaker_gate<breaker_type>(std::move(b));
    if (names_.size() != 0) entries_[0].keys = this->gates_.resolve(names_[0]);
    return *this;
  }

  // A deadline for every call (waits included); call_options::deadline may shorten it per call.
  basic_retrier& deadline(duration d) {
    if (d <= duration::zero())
      throw std::invalid_argument("failover::retrier: deadline must be > 0");
    options_.deadline = d;
    return *this;
  }

  // Calls f(const attempt_context&, args...) or f(args...) until it succeeds or a stop rule ends
  // the call. f returns a value (throwing on failure) or failover::outcome<T>.
  template <class F, class... Args>
  auto run(F&& f, Args&&... args) const {
    return run_call(detail::no_call_options, std::forward<F>(f), std::forward<Args>(args)...);
  }

  template <class F, class... Args>
  auto run_with(const call_options& call, F&& f, Args&&... args) const {
    return run_call(call, std::forward<F>(f), std::forward<Args>(args)...);
  }

  // One call as a machine (see fallback_chain::begin_call); its one entry is index 0.
  template <class R>
  call_machine<R, plan_type> begin_call(const call_options& call, time_point now) const {
    const trace::names_ptr names = names_.for_call();
    if (!names) throw std::bad_alloc();
    return call_machine<R, plan_type>(plan(names), call, now);
  }

  // The model's name; empty in a retrier moved from.
  std::string_view model() const noexcept {
    return names_.size() != 0 ? std::string_view(names_[0]) : std::string_view{};
  }
  const backoff_type& backoff() const noexcept { return entries_[0].backoff; }

  const retry_options& options() const noexcept { return entries_[0].retry; }

  // Used by the driver: the entry a call starts from; none in a retrier moved from, which has
  // no model to call (its calls end with no_fallback, as a chain moved from does).
  std::optional<std::size_t> start_entry() const noexcept { return start_.index; }

 private:
  template <class F, class... Args>
  auto run_call(const call_options& call, F&& f, Args&&... args) const {
    using answer =
        typename decltype(detail::answer_type<std::remove_reference_t<F>, Args...>())::type;
    static_assert(
        !std::is_void_v<answer> && detail::form_of<answer, std::remove_reference_t<F>, Args...>() !=
                                       detail::call_form::invalid,
        "failover::retrier::run(f, args...): f must be callable as f(const "
        "failover::attempt_context&, args...) or f(args...), and return a value type T "
        "or failover::outcome<T>");
    const trace::names_ptr names = names_.for_call();
    if (!names) return detail::unnamed_call<answer>();
    return run_blocking<answer>(plan(names), call, this->clock(), this->sleeper(),
                                [&](std::size_t, const attempt_context& ctx) {
                                  return detail::invoke_as_outcome<answer>(f, ctx, args...);
                                });
  }

  plan_type plan(trace::names_ptr names) const noexcept {
    return plan_type{&entries_,           names,          &options_,      &this->gates(),
                     &this->classifier(), &this->hooks(), &this->clock(), start_.index};
  }

  std::array<meta, 1> entries_;
  static std::string checked_name(std::string model) {
    if (model.empty())
      throw std::invalid_argument("failover::retrier: model name must not be empty");
    return model;
  }

  detail::name_list names_;  // moves with start_: a retrier moved from has neither
  detail::start_cache start_{0};
  chain_options options_;
};

using retrier = basic_retrier<default_policies>;

}  // namespace failover
