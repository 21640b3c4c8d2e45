// The blocking driver: walks the chain and runs attempts, asking the pure decision core what to do
// after each failure and carrying out its answer (sleeping via the Sleeper, reading the Clock).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "failover/circuit_breaker.hpp"
#include "failover/classifier.hpp"
#include "failover/context.hpp"
#include "failover/decision.hpp"
#include "failover/hooks.hpp"
#include "failover/outcome.hpp"

namespace failover::detail {

// Which call form a user callable has, for signature R(Args...).
enum class call_form { invalid, ctx_outcome, ctx_value, plain_outcome, plain_value };

template <class R, class Ret>
constexpr bool returns_outcome = std::is_same_v<std::decay_t<Ret>, outcome<R>>;

template <class R, class F, class... Args>
constexpr call_form form_of() {
  if constexpr (std::is_invocable_v<F&, const attempt_context&, Args&...>) {
    using Ret = std::invoke_result_t<F&, const attempt_context&, Args&...>;
    if constexpr (returns_outcome<R, Ret>)
      return call_form::ctx_outcome;
    else if constexpr (std::is_convertible_v<Ret, R>)
      return call_form::ctx_value;
    else
      return call_form::invalid;
  } else if constexpr (std::is_invocable_v<F&, Args&...>) {
    using Ret = std::invoke_result_t<F&, Args&...>;
    if constexpr (returns_outcome<R, Ret>)
      return call_form::plain_outcome;
    else if constexpr (std::is_convertible_v<Ret, R>)
      return call_form::plain_value;
    else
      return call_form::invalid;
  } else {
    return call_form::invalid;
  }
}

template <class R, class F, class... Args>
outcome<R> invoke_as_outcome(F& f, const attempt_context& ctx, Args&... args) {
  constexpr call_form form = form_of<R, F, Args...>();
  if constexpr (form == call_form::ctx_outcome || form == call_form::ctx_value) {
    return outcome<R>(f(ctx, args...));
  } else {
    return outcome<R>(f(args...));
  }
}

// What the driver needs of a chain entry.
template <class Backoff, class Health>
struct entry_meta {
  failover::role role = role::standard;
  retry_options retry;
  Backoff backoff;  // the prototype; each call copies it, and a copy starts fresh
  Health health{};  // the breaker's handle for this entry's key
};

template <class Entries>
struct roles_view {
  const Entries& entries;
  std::size_t size() const noexcept { return entries.size(); }
  failover::role operator[](std::size_t i) const noexcept { return entries[i].role; }
};

inline std::optional<duration> earlier(std::optional<duration> a, std::optional<duration> b) {
  if (!a) return b;
  if (!b) return a;
  return *a < *b ? a : b;
}

// The final error when the call stops for cancellation or the deadline: the new kind, with the
// last attempt's status, code and server wait kept (the trace holds that attempt in full).
inline error stop_error(error_kind kind, const error* last, std::string_view model) {
  error e;
  if (last) e = *last;
  e.kind = kind;
  e.transient = false;
  if (e.model.empty()) e.model = std::string(model);
  std::string what(kind == error_kind::cancelled ? "cancelled" : "deadline exceeded");
  if (last) {
    what += " (last error: ";
    what += to_string(last->kind);
    if (!last->message.empty()) {
      what += ": ";
      what += last->message;
    }
    what += ')';
  } else {
    what += " before the first attempt";
  }
  e.message = std::move(what);
  return e;
}

inline error all_open_error(std::string_view model, duration until_reopen) {
  error e;
  e.kind = error_kind::circuit_open;
  e.model = std::string(model);
  e.retry_after = until_reopen;
  e.message =
      "every model's circuit is open; the earliest, " + std::string(model) +
      ", allows a probe in " +
      std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(until_reopen).count()) +
      "ms";
  return e;
}

// Runs one call. `invoke(i, ctx)` calls entry i's callable and returns outcome<R>.
template <class R, class Holder, class Entries, class Invoke>
result<R> drive(const Holder& p, const Entries& entries, const trace::names_ptr& names,
                const chain_options& opts, const call_options& call, Invoke&& invoke) {
  using backoff_type = typename Holder::backoff_type;
  result<R> res(names);
  const time_point start = p.clock().now();
  const std::optional<duration> deadline = earlier(opts.deadline, call.deadline);
  const roles_view<Entries> roles{entries};

  const std::optional<std::size_t> first = first_entry(roles);
  if (!first) {
    error e;
    e.message = "the chain has no standard entry to start from";
    res.set_error(std::move(e), stop_reason::no_fallback);
    p.hooks().on_give_up(gave_up{res.error(), res.stop()});
    return res;
  }
  p.budget().on_first_attempt(start);

  auto time_left = [&](time_point at) -> std::optional<duration> {
    if (!deadline) return std::nullopt;
    return *deadline - (at - start);
  };
  std::size_t index = *first;
  int models_tried = 0;
  int total = 0;
  std::optional<std::size_t> last_call;  // trace index of the latest attempt that called a model
  error_kind routing = error_kind::unknown;  // the failure that led to the current entry
  std::optional<std::pair<time_point, std::size_t>> earliest_reopen;  // among skipped entries
  bool waited_for_reopen = false;
  auto last_error = [&]() -> const error* {
    return last_call ? &res.trace().attempts()[*last_call].error : nullptr;
  };

  for (;;) {
    ++models_tried;
    const auto& entry = entries[index];
    const std::string_view model = (*names)[index];
    std::optional<backoff_type> backoff;  // copied from the prototype at the first retry only
    retry_counters counters;
    stop_reason why = stop_reason::none;

    for (;;) {
      const time_point now = p.clock().now();
      const std::optional<duration> remaining = time_left(now);
      why = decide_start(opts, call.token.cancelled(), total, remaining);
      if (why != stop_reason::none) break;
      const admission adm = p.breaker().admit(entry.health, now);
      if (!adm.allowed) {
        attempt_record& skip = res.mutable_trace().add(attempt_record{});
        skip.model = model;
        skip.entry = static_cast<std::uint16_t>(index);
        skip.role = entry.role;
        skip.attempt = counters.attempts + 1;
        skip.start = now - start;
        skip.skipped = true;
        skip.error.kind = error_kind::circuit_open;
        skip.error.model = std::string(model);
        skip.error.retry_after = adm.until > now ? adm.until - now : duration::zero();
        skip.error.message = "skipped: circuit open";
        skip.stop = why = stop_reason::circuit_open;
        p.hooks().on_skip(attempt_skipped{model, adm.until});
        if (!earliest_reopen || adm.until < earliest_reopen->first)
          earliest_reopen.emplace(adm.until, index);
        break;
      }
      ++counters.attempts;
      counters.total_attempts = ++total;
      const attempt_context ctx{model, counters.attempts, total, remaining, &call.token};
      p.hooks().on_attempt_start(attempt_started{model, counters.attempts, total, remaining});

      last_call = res.trace().size();
      attempt_record& rec = res.mutable_trace().add(attempt_record{});
      rec.model = model;
      rec.entry = static_cast<std::uint16_t>(index);
      rec.role = entry.role;
      rec.attempt = counters.attempts;
      rec.start = now - start;

      std::optional<outcome<R>> answer;
      std::exception_ptr thrown;
      try {
        answer.emplace(invoke(index, ctx));
      } catch (...) {
        thrown = std::current_exception();
      }
      const time_point end = p.clock().now();
      rec.elapsed = end - now;

      if (answer && answer->has_value()) {
        rec.ok = true;
        p.breaker().on_success(entry.health, end, adm.probe);
        p.budget().on_success(end);
        p.hooks().on_attempt_end(
            attempt_ended{model, counters.attempts, true, nullptr, rec.elapsed});
        res.set_value(std::move(*answer).value());
        return res;
      }

      rec.error = thrown ? p.classifier().classify(thrown, p.clock().wall_now())
                         : p.classifier().classify(answer->failure(), p.clock().wall_now());
      error& e = rec.error;
      e.model = std::string(model);
      if (e.kind == error_kind::read_timeout) ++counters.read_timeouts;
      p.breaker().on_failure(entry.health, end, e, adm.probe);

      duration delay{};
      if (e.transient) {
        if (!backoff) backoff.emplace(entry.backoff);
        delay = backoff->next(counters.attempts);
      }
      retry_decision d =
          decide_retry(entry.retry, opts.max_total_attempts, e, counters, delay, time_left(end));
      // Shared health can veto a retry the model's own rules allow: no point waiting for a circuit
      // that will still be open, and no retry the shared budget cannot pay for.
      if (d.retry && p.breaker().would_refuse(entry.health, end + d.wait))
        d = retry_decision{false, {}, wait_reason::none, stop_reason::circuit_open};
      if (d.retry && !p.budget().try_retry(end))
        d = retry_decision{false, {}, wait_reason::none, stop_reason::budget_exhausted};
      rec.wait = d.wait;
      rec.why_wait = d.reason;
      rec.stop = d.stop;
      p.hooks().on_attempt_end(attempt_ended{model, counters.attempts, false, &e, rec.elapsed});
      if (!d.retry) {
        why = d.stop;
        break;
      }
      p.hooks().on_retry(retry_scheduled{model, counters.attempts, d.wait, d.reason, e});
      if (!p.sleeper().sleep_for(d.wait, call.token)) {
        rec.stop = why = stop_reason::cancelled;
        break;
      }
    }

    // This model is done. Cancellation and the deadline end the call with their own kind.
    if (why == stop_reason::cancelled || why == stop_reason::deadline) {
      const error_kind k =
          why == stop_reason::cancelled ? error_kind::cancelled : error_kind::deadline_exceeded;
      res.set_error(stop_error(k, last_error(), model), why);
      p.hooks().on_give_up(gave_up{res.error(), why});
      return res;
    }
    // A model skipped before any attempt passes on the failure that led to it, and is no hop.
    const bool skipped_untried = why == stop_reason::circuit_open && counters.attempts == 0;
    if (skipped_untried) --models_tried;
    const error_kind walk_kind =
        skipped_untried ? routing : res.trace().attempts()[*last_call].error.kind;
    const walk_decision w = next_entry(roles, index, walk_kind, why, models_tried, opts);
    if (!w.next) {
      if (!last_call && earliest_reopen) {  // every model considered is open
        const time_point now = p.clock().now();
        const duration until = std::max(duration::zero(), earliest_reopen->first - now);
        if (wait_for_reopen(opts, waited_for_reopen, until, time_left(now))) {
          waited_for_reopen = true;
          attempt_record& skip = res.mutable_trace().back();
          skip.wait = until;
          skip.why_wait = wait_reason::circuit;
          if (!p.sleeper().sleep_for(until, call.token)) {
            res.set_error(stop_error(error_kind::cancelled, nullptr, model),
                          stop_reason::cancelled);
            p.hooks().on_give_up(gave_up{res.error(), res.stop()});
            return res;
          }
          index = earliest_reopen->second;
          earliest_reopen.reset();
          routing = error_kind::unknown;
          models_tried = 0;
          continue;
        }
        res.set_error(all_open_error((*names)[earliest_reopen->second], until),
                      stop_reason::circuit_open);
      } else {
        res.set_error(*last_error(), w.stop == stop_reason::no_fallback ? why : w.stop);
      }
      p.hooks().on_give_up(gave_up{res.error(), res.stop()});
      return res;
    }
    p.hooks().on_fallback(fallback_taken{model, (*names)[*w.next], entries[*w.next].role,
                                         res.trace().attempts().back().error, why});
    routing = walk_kind;
    index = *w.next;
  }
}

}  // namespace failover::detail
