// The blocking driver: walks the chain and runs attempts, asking the pure decision core what to do
// after each failure and carrying out its answer (sleeping via the Sleeper, reading the Clock).
#pragma once

#include <cstddef>
#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

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
    if constexpr (returns_outcome<R, Ret>) return call_form::ctx_outcome;
    else if constexpr (std::is_convertible_v<Ret, R>) return call_form::ctx_value;
    else return call_form::invalid;
  } else if constexpr (std::is_invocable_v<F&, Args&...>) {
    using Ret = std::invoke_result_t<F&, Args&...>;
    if constexpr (returns_outcome<R, Ret>) return call_form::plain_outcome;
    else if constexpr (std::is_convertible_v<Ret, R>) return call_form::plain_value;
    else return call_form::invalid;
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
template <class Backoff>
struct entry_meta {
  failover::role role = role::standard;
  retry_options retry;
  Backoff backoff;  // the prototype; each call copies it, and a copy starts fresh
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

  std::size_t index = *first;
  int models_tried = 0;
  int total = 0;
  // Every attempt before the current one failed, so the trace's last record is the latest error.
  auto last_error = [&res]() -> const error* {
    const trace& t = res.trace();
    return t.size() == 0 ? nullptr : &t.attempts().back().error;
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
      std::optional<duration> remaining;
      if (deadline) remaining = *deadline - (now - start);
      if (call.token.cancelled()) {
        why = stop_reason::cancelled;
        break;
      }
      if (remaining && *remaining <= duration::zero()) {
        why = stop_reason::deadline;
        break;
      }
      ++counters.attempts;
      counters.total_attempts = ++total;
      const attempt_context ctx{model, counters.attempts, total, remaining, &call.token};
      p.hooks().on_attempt_start(attempt_started{model, counters.attempts, total, remaining});

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
        p.hooks().on_attempt_end(attempt_ended{model, counters.attempts, true, nullptr, rec.elapsed});
        res.set_value(std::move(*answer).value());
        return res;
      }

      rec.error = thrown ? p.classifier().classify(thrown, p.clock().wall_now())
                         : p.classifier().classify(answer->failure(), p.clock().wall_now());
      error& e = rec.error;
      e.model = std::string(model);
      if (e.kind == error_kind::read_timeout) ++counters.read_timeouts;

      duration delay{};
      if (e.transient) {
        if (!backoff) backoff.emplace(entry.backoff);
        delay = backoff->next(counters.attempts);
      }
      if (deadline) remaining = *deadline - (end - start);
      const retry_decision d =
          decide_retry(entry.retry, opts.max_total_attempts, e, counters, delay, remaining);
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
    const error& last = *last_error();
    const walk_decision w = next_entry(roles, index, last, why, models_tried, opts);
    if (!w.next) {
      res.set_error(last, w.stop == stop_reason::no_fallback ? why : w.stop);
      p.hooks().on_give_up(gave_up{res.error(), res.stop()});
      return res;
    }
    p.hooks().on_fallback(fallback_taken{model, (*names)[*w.next], entries[*w.next].role, last, why});
    index = *w.next;
  }
}

}  // namespace failover::detail
