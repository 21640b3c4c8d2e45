// The FallbackChain: ordered model entries, each a name, a callable, a role and its own retry
// policy. A call tries the first standard entry, retries it under its rules, then walks forward to
// the next entry whose role accepts the failure, within a hop limit, a deadline and an attempt cap.
#pragma once

#include <cstddef>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "failover/core/completion.hpp"
#include "failover/core/context.hpp"
#include "failover/core/decision.hpp"
#include "failover/core/outcome.hpp"
#include "failover/detail/erased_call.hpp"
#include "failover/detail/invoke.hpp"
#include "failover/drivers/blocking.hpp"
#include "failover/machine/call_machine.hpp"
#include "failover/machine/plan.hpp"
#include "failover/policies.hpp"
#include "failover/retrier.hpp"

namespace failover {

template <class Signature, class Policies = default_policies>
class basic_fallback_chain {
  static_assert(std::is_function_v<Signature>,
                "failover::fallback_chain<Signature>: Signature must be a function type such as "
                "std::string(const request&) or std::string()");
};

template <class R, class... Args, class Policies>
class basic_fallback_chain<R(Args...), Policies> : public detail::policy_holder<Policies> {
  static_assert(!std::is_void_v<R> && !std::is_reference_v<R>,
                "failover::fallback_chain<R(Args...)>: R must be a value type (for a call with no "
                "answer, return a bool or a small struct)");

 public:
  using value_type = R;
  using backoff_type = typename detail::policy_holder<Policies>::backoff_type;
  using breaker_type = typename detail::policy_holder<Policies>::breaker_type;
  using gates_type = typename detail::policy_holder<Policies>::gates_type;

 private:
  struct entry;

 public:
  using plan_type = call_plan<std::vector<entry>, gates_type,
                              typename detail::policy_holder<Policies>::classifier_type,
                              typename detail::policy_holder<Policies>::hooks_type,
                              typename detail::policy_holder<Policies>::clock_type>;

  explicit basic_fallback_chain(chain_options options = {})
      : options_((options.validate(), options)) {}

  // Adds an entry. `f` is called as f(const attempt_context&, Args&...) or f(Args&...) and returns
  // R (throwing on failure) or failover::outcome<R> (a value or a failover::failure). It gets
  // run()'s arguments as lvalues, the same objects on every attempt: take them by const reference
  // (a by-value parameter is a copy per attempt, and a change made through a reference is seen by
  // later attempts).
  template <class F>
  basic_fallback_chain& add(std::string name, F&& f, failover::role role = role::standard,
                            retry_options retry = {}, backoff_type backoff = backoff_type{}) {
    using callable = std::decay_t<F>;
    static_assert(detail::form_of<R, callable, Args...>() != detail::call_form::invalid,
                  "failover::fallback_chain<R(Args...)>::add(name, f): f must be callable as "
                  "f(const failover::attempt_context&, Args...) or f(Args...), and return R or "
                  "failover::outcome<R>; or, to answer asynchronously, as f(const "
                  "failover::attempt_context&, Args..., failover::completion<R>)");
    if (name.empty())
      throw std::invalid_argument("failover::fallback_chain::add: name must not be empty");
    callable fn(std::forward<F>(f));
    if constexpr (detail::may_be_empty<callable>()) {
      if (!static_cast<bool>(fn))
        throw std::invalid_argument("failover::fallback_chain::add: callable for '" + name +
                                    "' is empty");
    }
    if (entries_.size() >= std::numeric_limits<std::uint16_t>::max())
      throw std::invalid_argument("failover::fallback_chain::add: too many entries");
    retry.validate();
    // A failed add() leaves the chain as it was, its entries and names of one length. The new
    // name is appended, not the list copied: the list calls refer to is interned at the next call
    // (earlier traces keep theirs).
    entry added{{role, retry, std::move(backoff), this->gates_.resolve(name)},
                detail::erased_call<R, Args...>(std::move(fn))};
    names_.push_back(std::move(name));
    try {
      entries_.push_back(std::move(added));
    } catch (...) {
      names_.pop_back();
      throw;
    }
    // An entry added at the end never changes a start entry already found.
    if (!start_.index) start_.index = first_entry(detail::roles_view<std::vector<entry>>{entries_});
    return *this;
  }

  // Adds a retrier as an entry: its model name, retry options and backoff, with `f` as its
  // callable (any form add() takes). A one-entry chain of it runs a call as the retrier runs
  // it, within the chain's limits: the chain's attempt cap and deadline span every entry (a
  // deadline set on the retrier itself is not carried over).
  template <class RetrierPolicies, class F>
  basic_fallback_chain& add(const basic_retrier<RetrierPolicies>& r, F&& f,
                            failover::role role = role::standard) {
    static_assert(
        std::is_same_v<typename basic_retrier<RetrierPolicies>::backoff_type, backoff_type>,
        "failover::fallback_chain::add(retrier, f): the retrier's Backoff policy must "
        "be the chain's (build both from policy bundles with the same `backoff`)");
    if (r.model().empty())
      throw std::invalid_argument(
          "failover::fallback_chain::add: the retrier has no model (it "
          "was moved from)");
    return add(std::string(r.model()), std::forward<F>(f), role, r.options(), r.backoff());
  }

  // Shares model health through `b` (copies of a circuit_breaker share one registry). Each entry's
  // health key is its name: name entries "provider/model" to share health across chains.
  basic_fallback_chain& set_breaker(breaker_type b) {
    this->gates_.template get<0>() = breaker_gate<breaker_type>(std::move(b));
    for (std::size_t i = 0; i < entries_.size(); ++i)
      entries_[i].keys = this->gates_.resolve(names_[i]);
    return *this;
  }

  // One call through the chain. Thread-safe once configured (add, set_breaker, classifier(),
  // hooks(), budget() before sharing): each call has its own state. Callables may run on several
  // threads at once.
  result<R> run(Args... args) const { return run_call(detail::no_call_options, args...); }

  result<R> run_with(const call_options& call, Args... args) const {
    return run_call(call, args...);
  }

  // One call as a machine, for an async driver or a simulation (machine/call_machine.hpp): poll()
  // says which entry to call with which context, when to wake it, or that the call is done; you
  // hand back each answer and timer with handle(event, now), then take() the result. It never
  // calls a callable or sleeps. The chain must outlive it; `call` is copied. The call starts at
  // `now`.
  call_machine<R, plan_type> begin_call(const call_options& call, time_point now) const {
    const trace::names_ptr names = names_.for_call();
    if (!names) throw std::bad_alloc();
    return call_machine<R, plan_type>(plan(names), call, now);
  }
  call_machine<R, plan_type> begin_call(const call_options& call) const {
    return begin_call(call, this->clock().now());
  }

  // Calls entry `i`'s callable (what a driver does for actions::start_attempt); an asynchronous
  // entry is waited for.
  outcome<R> call_entry(std::size_t i, const attempt_context& ctx, Args&... args) const {
    return entries_[i].call(ctx, args...);
  }
  // Starts entry `i` with its answer going to `done`: an asynchronous entry gets the completion,
  // a synchronous one runs here and then calls it.
  void start_entry(std::size_t i, const attempt_context& ctx, Args&... args,
                   completion<R> done) const {
    entries_[i].call.start(ctx, args..., std::move(done));
  }
  // Whether entry `i` answers through a completion.
  bool entry_is_async(std::size_t i) const noexcept { return entries_[i].call.is_async(); }

  const chain_options& options() const noexcept { return options_; }
  std::size_t size() const noexcept { return entries_.size(); }

  // The entry a call starts from: the first standard one (first_entry() of the roles, kept by
  // add()); none when the chain has no standard entry.
  std::optional<std::size_t> start_entry() const noexcept { return start_.index; }

 private:
  result<R> run_call(const call_options& call, Args&... args) const {
    const trace::names_ptr names = names_.for_call();
    if (!names) return detail::unnamed_call<R>();
    return run_blocking<R>(
        plan(names), call, this->clock(), this->sleeper(),
        [&](std::size_t i, const attempt_context& ctx) { return entries_[i].call(ctx, args...); });
  }

  using meta = entry_meta<backoff_type, typename gates_type::keys>;
  struct entry : meta {
    entry(meta m, detail::erased_call<R, Args...> f) : meta(std::move(m)), call(std::move(f)) {}
    // Shared chains call this from many threads at once: a callable that keeps state (a mutable
    // lambda, a counter) must synchronise it itself.
    detail::erased_call<R, Args...> call;
  };

  plan_type plan(trace::names_ptr names) const noexcept {
    return plan_type{&entries_,           names,          &options_,      &this->gates(),
                     &this->classifier(), &this->hooks(), &this->clock(), start_.index};
  }

  chain_options options_;
  std::vector<entry> entries_;
  detail::name_list names_;  // moves with the entries: a chain moved from has neither
  detail::start_cache start_;
};

template <class Signature>
using fallback_chain = basic_fallback_chain<Signature, default_policies>;

}  // namespace failover
