// The blocking driver: walks the chain and runs attempts, asking the pure decision core what to do
// after each failure and carrying out its answer (sleeping via the Sleeper, reading the Clock).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <exception>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "failover/circuit_breaker.hpp"
#include "failover/classifier.hpp"
#include "failover/context.hpp"
#include "failover/decision.hpp"
#include "failover/detail/saturate.hpp"
#include "failover/hooks.hpp"
#include "failover/outcome.hpp"

// The success path of a call is a handful of stores around the model call; the rest of the call
// machine (failures, waits, fallbacks, skips) is kept out of line so that the compiler can inline
// that path into the driver.
#if defined(__GNUC__) || defined(__clang__)
#define FAILOVER_HOT_INLINE inline __attribute__((always_inline))
#define FAILOVER_COLD __attribute__((noinline, cold))
#elif defined(_MSC_VER)
#define FAILOVER_HOT_INLINE __forceinline
#define FAILOVER_COLD __declspec(noinline)
#else
#define FAILOVER_HOT_INLINE inline
#define FAILOVER_COLD
#endif

namespace failover::detail {

// Which call form a user callable has, for signature R(Args...).
enum class call_form { invalid, ctx_outcome, ctx_value, plain_outcome, plain_value };

template <class R, class Ret>
constexpr bool returns_outcome = std::is_same_v<std::decay_t<Ret>, outcome<R>>;

template <class R, class F, class... Args>
constexpr call_form form_of() {
  if constexpr (std::is_invocable_v<F&, const attempt_context&, Args&...>) {
    using returned = std::invoke_result_t<F&, const attempt_context&, Args&...>;
    if constexpr (returns_outcome<R, returned>)
      return call_form::ctx_outcome;
    else if constexpr (std::is_convertible_v<returned, R>)
      return call_form::ctx_value;
    else
      return call_form::invalid;
  } else if constexpr (std::is_invocable_v<F&, Args&...>) {
    using returned = std::invoke_result_t<F&, Args&...>;
    if constexpr (returns_outcome<R, returned>)
      return call_form::plain_outcome;
    else if constexpr (std::is_convertible_v<returned, R>)
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

// The entry a front end's calls start from, which a move takes along with the entries: a chain
// or retrier moved from has none, and its calls end with no_fallback.
struct start_cache {
  std::optional<std::size_t> index;
  start_cache() = default;
  explicit start_cache(std::optional<std::size_t> i) noexcept : index(i) {}
  start_cache(const start_cache&) = default;
  start_cache& operator=(const start_cache&) = default;
  start_cache(start_cache&& other) noexcept : index(std::exchange(other.index, std::nullopt)) {}
  start_cache& operator=(start_cache&& other) noexcept {
    index = std::exchange(other.index, std::nullopt);
    return *this;
  }
  ~start_cache() = default;
};

// A call that could not start because interning the model names ran out of memory: it ends with
// an error rather than an exception, and its trace names no model.
template <class R>
FAILOVER_COLD result<R> unnamed_call() noexcept {
  static const std::vector<std::string> no_names;
  result<R> res(&no_names);
  error e;
  e.kind = error_kind::unknown;
  try {
    e.message = "failover: out of memory while interning the model names";
  } catch (...) {  // NOLINT(bugprone-empty-catch): the bare error still ends the call
  }
  res.set_error(std::move(e), stop_reason::permanent_error);
  return res;
}

// Whether a blocking call came with call options. run() has none and passes no_call_options
// with per_call::none: the same rules (no deadline of its own, a token never cancelled), known at
// compile time, so the fast path reads neither.
enum class per_call : bool { none, given };

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

// What a policy that may throw threw, with the policy's name: the machine ends the call with it.
struct policy_failure {
  const char* policy;
  std::exception_ptr cause;
};

// A call's copy of its entry's Backoff prototype. The Backoff policy may throw (its next() and its
// copy need not be noexcept); what it throws comes out named, so the call ends with an error that
// says which policy failed.
template <class Backoff>
class guarded_backoff {
 public:
  explicit guarded_backoff(const Backoff& prototype) : b_(copy(prototype)) {}
  duration next(int attempt) {
    if constexpr (noexcept(std::declval<Backoff&>().next(attempt))) {
      return b_.next(attempt);
    } else {
      try {
        return b_.next(attempt);
      } catch (...) {
        throw policy_failure{"the Backoff policy's next()", std::current_exception()};
      }
    }
  }

 private:
  static Backoff copy(const Backoff& prototype) {
    try {
      return prototype;
    } catch (...) {
      throw policy_failure{"copying the Backoff policy", std::current_exception()};
    }
  }
  Backoff b_;
};

// The policies a call reads on every path must not throw: a call that cannot read the time or hear
// its gates' answer has no way to end cleanly. (The Classifier, Hooks, Backoff and Sleeper may
// throw: the call ends with an error naming what threw.)
template <class Holder>
constexpr bool check_noexcept_policies() {
  using clock = typename Holder::clock_type;
  using breaker = typename Holder::breaker_type;
  using budget = typename Holder::budget_type;
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

// One call as a state machine: it says what to do next (call entry i with this context, wait this
// long, or done) and is told what happened. It reads the Clock policy but never sleeps or calls a
// model itself, so the blocking driver below, an async driver and virtual-time simulations of many
// concurrent calls all run the same rules.
template <class R, class Holder, class Entries>
class call_machine {
  using hooks_type = typename Holder::hooks_type;
  static_assert(check_noexcept_policies<Holder>());

 public:
  enum class action { attempt, wait, done };

  // How a call's first attempt begins. Planned by start(), or by the blocking driver's fast path,
  // which then runs a successful first attempt without building a machine at all.
  struct first_plan {
    enum class kind : std::uint8_t { no_start, stopped, refused, go };
    kind what = kind::no_start;
    stop_reason why = stop_reason::none;  // stopped: the rule that stopped it
    // Refused or go: the breaker's answer, held field by field so that the whole plan is 16
    // bytes and stays in registers on the blocking driver's fast path.
    bool allowed = true;
    bool probe = false;
    std::uint16_t index = 0;  // the entry to start from (a chain has at most 65535)
    time_point until{};
    admission admitted() const noexcept { return admission{allowed, probe, until}; }
  };

  // Writes the call's result into `out`, which must outlive the machine (so that a blocking caller
  // can return it without a move). `start` is when the call began.
  call_machine(result<R>& out, const Holder& p, const Entries& entries, trace::names_ptr names,
               const chain_options& opts, const call_options& call, time_point start)
      : p_(p),
        entries_(entries),
        names_(names),
        opts_(opts),
        call_(call),
        res_(out),
        start_(start),
        deadline_(earlier(opts.deadline, call.deadline)) {}
  call_machine(result<R>& out, const Holder& p, const Entries& entries, trace::names_ptr names,
               const chain_options& opts, const call_options& call)
      : call_machine(out, p, entries, names, opts, call, p.clock().now()) {}
  call_machine(const call_machine&) = delete;
  call_machine& operator=(const call_machine&) = delete;
  // A machine dropped while its attempt is out (an async caller gave up on it) must not keep a
  // half-open probe slot: the attempt is reported as cancelled, which frees it and counts nothing.
  ~call_machine() {
    if (outstanding_ == action::attempt) release_probe();
  }

  // The first action. Call once.
  // No step throws: what a policy or an allocation throws ends the call with an `unknown` error
  // that names it (end_with_exception), so every call ends with exactly one outcome.
  action start() noexcept {
    if (started_) return misuse();  // twice would count, admit and record the call twice
    started_ = true;
    return guarded([&] {
      return begin(plan_first(p_, entries_, opts_, call_.token.cancelled(), start_, deadline_));
    });
  }
  // The same, from a plan already made by plan_first() for this call.
  action start_from(const first_plan& f) noexcept {
    return guarded([&] { return begin(f); });
  }

  // ---- the first attempt, shared by start() and the blocking driver's fast path ----

  // Which entry starts the call, and whether it may be called now. Counts the call in the budget
  // and asks the breaker (which may hand out a probe slot), as the first attempt always did.
  static FAILOVER_HOT_INLINE first_plan plan_first(const Holder& p, const Entries& entries,
                                                   const chain_options& opts, bool cancelled,
                                                   time_point start,
                                                   std::optional<duration> deadline) noexcept {
    first_plan f;
    const std::optional<std::size_t> first = p.start_entry();  // first_entry(), kept by add()
    if (!first) return f;
    f.index = static_cast<std::uint16_t>(*first);
    f.why = decide_start(opts, cancelled, 0, deadline);
    if (f.why != stop_reason::none) {  // a call that never starts is no first attempt
      f.what = first_plan::kind::stopped;
      return f;
    }
    p.budget().on_first_attempt(start);
    const admission a = p.breaker().admit(entries[f.index].health, start);
    f.allowed = a.allowed;
    f.probe = a.probe;
    f.until = a.until;
    f.what = a.allowed ? first_plan::kind::go : first_plan::kind::refused;
    return f;
  }

  // The planned first attempt's context. With a deadline, the first model may use all of it, or
  // all but the fallback's reserve when a later entry could take over (model_time()).
  static attempt_context first_context(const Holder& p, const Entries& entries,
                                       trace::names_ptr names, const first_plan& f,
                                       std::optional<duration> deadline, const chain_options& opts,
                                       const call_options& call, time_point start) noexcept {
    std::optional<duration> share = deadline;
    if (deadline) share = first_share(p, entries, f.index, *deadline, opts, start);
    return attempt_context{(*names)[f.index], 1, 1, share, &call.token};
  }
  static FAILOVER_COLD duration first_share(const Holder& p, const Entries& entries,
                                            std::size_t index, duration deadline,
                                            const chain_options& opts, time_point now) noexcept {
    return model_time(
        deadline, can_answer_after(p, entries, index, error_kind::unknown, 1, opts, now, 1), opts);
  }

  // Whether a later entry could take over a failure of kind `kind` from entry `index` at `now`:
  // one the walk would reach (roles and hops: fallback_exists), whose circuit would let it be
  // called, while the call's attempt cap leaves room for it (`attempts_after` made by then). Only
  // then is time kept back for it, or a read timeout handed over to it.
  static bool can_answer_after(const Holder& p, const Entries& entries, std::size_t index,
                               error_kind kind, int models_tried, const chain_options& opts,
                               time_point now, int attempts_after) noexcept {
    if (attempts_after >= opts.max_total_attempts) return false;
    if (!fallback_exists(roles_view<Entries>{entries}, index, kind, models_tried, opts))
      return false;
    for (std::size_t j = index + 1; j < entries.size(); ++j)
      if (accepts(entries[j].role, kind, opts) && !p.breaker().would_refuse(entries[j].health, now))
        return true;
    return false;
  }

  // Issues the planned first attempt: tells the hooks and adds its record.
  static FAILOVER_HOT_INLINE attempt_record& issue_first(const Holder& p, const Entries& entries,
                                                         trace::names_ptr names, result<R>& res,
                                                         const first_plan& f,
                                                         std::optional<duration> remaining) {
    // The first record lives inline and its constructor is noexcept: nothing here throws.
    // The hook is told the time the attempt itself is told (its share of the deadline).
    notify(p, &hooks_type::on_attempt_start, attempt_started{(*names)[f.index], 1, 1, remaining});
    // The first attempt starts when the call does.
    return res.mutable_trace().add((*names)[f.index], f.index, entries[f.index].role, 1,
                                   duration::zero());
  }

  // The end of an attempt whose value is already in the result (`rec.elapsed` set too). Only now
  // are the breaker, the budget and the hooks told of a success: a value whose move throws is a
  // failed attempt, and nothing counted it as a success.
  template <class Entry>
  static FAILOVER_HOT_INLINE void succeeded(const Holder& p, const Entry& e, attempt_record& rec,
                                            time_point end, bool probe) noexcept {
    rec.ok = true;
    p.breaker().on_success(e.health, end, probe);
    p.budget().on_success(end);
    notify(p, &hooks_type::on_attempt_end,
           attempt_ended{rec.model, rec.attempt, true, nullptr, rec.elapsed});
  }

  // The state after the first attempt was issued with `ctx` as its context (its record is written
  // apart, by issue_first). The blocking driver's fast path calls this after issuing the attempt
  // itself; from here on the machine runs the call, as if start() had issued it.
  void adopt_first(const first_plan& f, const attempt_context& ctx) noexcept {
    index_ = f.index;
    begin_model();
    admission_ = f.admitted();
    counters_.attempts = 1;
    counters_.total_attempts = total_ = 1;
    ctx_ = ctx;
    share_end_ = ctx.remaining ? std::optional<time_point>(detail::sat_add(start_, *ctx.remaining))
                               : std::nullopt;
    last_call_ = 0;
    attempt_start_ = start_;
    outstanding_ = action::attempt;
  }

  // After action::attempt: the callable's answer, or what it threw.
  FAILOVER_HOT_INLINE action attempted(outcome<R>&& answer) noexcept {
    if (outstanding_ != action::attempt) return misuse();
    return answered(std::move(answer), p_.clock().now());
  }
  // The same, with the time the attempt ended already read (the blocking driver, after its fast
  // path's attempt; it has checked the turn itself).
  action answered(outcome<R>&& answer, time_point end) noexcept {
    return guarded([&] {
      outstanding_.reset();
      attempt_record& rec = current();
      rec.elapsed = end - attempt_start_;
      if (!answer.has_value()) return failed_with(answer.failure(), end);
      try {
        res_.set_value(*std::move(answer));
      } catch (...) {
        return failed(end, unstored_value(std::current_exception()));
      }
      succeeded(p_, entry(), rec, end, admission_.probe);
      return issue(action::done);
    });
  }
  // The blocking driver's fast path: the first attempt answered a value, and moving it into the
  // result threw `cause`. The attempt failed (an `unknown` error, permanent).
  action unstored(std::exception_ptr cause, time_point end) noexcept {
    return guarded([&] {
      outstanding_.reset();
      current().elapsed = end - attempt_start_;
      return failed(end, unstored_value(std::move(cause)));
    });
  }
  action attempted(std::exception_ptr thrown) noexcept {
    if (outstanding_ != action::attempt) return misuse();
    return guarded([&] {
      outstanding_.reset();
      const time_point end = p_.clock().now();
      current().elapsed = end - attempt_start_;
      if (!thrown) {
        error e;
        e.kind = error_kind::unknown;
        e.message = "the attempt reported an empty exception";
        return failed(end, std::move(e));
      }
      return failed(
          end, classify([&] { return p_.classifier().classify(thrown, p_.clock().wall_now()); }));
    });
  }

  // Ends the call at once with an `unknown` error holding `cause`, saying that `what` threw (a
  // driver calls this when its Sleeper or timer throws; the machine, when one of its own steps
  // does). Its stop reason is permanent_error.
  // After done it changes nothing: the call has its one outcome already. With an attempt out, a
  // half-open probe slot it held is given back first, as when a machine is dropped.
  action end_with_exception(const char* what, std::exception_ptr cause) noexcept {
    if (outstanding_ == action::done) return action::done;
    if (outstanding_ == action::attempt) release_probe();
    error e;
    e.kind = error_kind::unknown;
    e.exception = std::move(cause);
    try {
      if (index_ < names_->size()) e.model = std::string(model());
      e.message = std::string("failover: ") + what + " threw; the call ended there";
    } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory: the bare error still ends it
    }
    res_.set_error(std::move(e), stop_reason::permanent_error);
    notify(&hooks_type::on_give_up, gave_up{res_.error(), stop_reason::permanent_error});
    return issue(action::done);
  }

  // After action::wait: whether the wait ran its full length (false: the call was cancelled).
  action waited(bool completed) noexcept {
    if (outstanding_ != action::wait) return misuse();
    return guarded([&] { return after_wait(completed); });
  }

  // What to call (action::attempt) or how long to wait (action::wait).
  std::size_t entry_index() const noexcept { return index_; }
  const attempt_context& context() const noexcept { return ctx_; }
  duration wait() const noexcept { return wait_; }
  const cancel_token& token() const noexcept { return call_.token; }

 private:
  using backoff_type = typename Holder::backoff_type;

  // An attempt that will never report (its machine dropped, its call ended by an exception) gives
  // back the half-open probe slot it held: reported as cancelled, which frees it and counts
  // nothing.
  void release_probe() noexcept {
    if (!admission_.probe) return;
    admission_.probe = false;
    try {
      error abandoned;
      abandoned.kind = error_kind::cancelled;
      p_.breaker().on_failure(entry().health, p_.clock().now(), abandoned, true);
    } catch (...) {  // NOLINT(bugprone-empty-catch): called where nothing may throw
    }
  }

  // Runs one step; what it throws ends the call (see end_with_exception).
  template <class Step>
  action guarded(Step&& step) noexcept {
    try {
      return step();
    } catch (const policy_failure& f) {
      return end_with_exception(f.policy, f.cause);
    } catch (const std::bad_alloc&) {
      return end_with_exception("an allocation (out of memory)", std::current_exception());
    } catch (...) {
      return end_with_exception("a step of the call", std::current_exception());
    }
  }

  static error unstored_value(std::exception_ptr cause) {
    error e;
    e.kind = error_kind::unknown;
    e.exception = std::move(cause);
    e.message = "failover: moving the answer into the result threw";
    return e;
  }

  action after_wait(bool completed) {
    outstanding_.reset();
    if (waiting_for_reopen_) {
      waiting_for_reopen_ = false;
      if (!completed) {
        return finish(stop_error(error_kind::cancelled, nullptr, model()), stop_reason::cancelled);
      }
      index_ = earliest_reopen_->second;
      earliest_reopen_.reset();
      routing_ = error_kind::unknown;
      models_tried_ = 0;
      begin_model();
      return next_attempt();
    }
    if (!completed) {
      current().stop = stop_reason::cancelled;
      return model_done(stop_reason::cancelled);
    }
    return next_attempt();
  }

  // Observing must not change how a call ends, whatever a user's Hooks policy does. (`Hook` may
  // be a member of a base such as no_hooks, hence a template rather than a member-pointer type.)
  template <class Hook, class Event>
  static void notify(const Holder& p, Hook hook, const Event& e) noexcept {
    if constexpr (noexcept((std::declval<const hooks_type&>().*hook)(e))) {
      (p.hooks().*hook)(e);
    } else {
      try {
        (p.hooks().*hook)(e);
      } catch (...) {  // NOLINT(bugprone-empty-catch): documented: hook failures are dropped
      }
    }
  }
  template <class Hook, class Event>
  void notify(Hook hook, const Event& e) const noexcept {
    notify(p_, hook, e);
  }

  // Follows the plan for the first attempt.
  action begin(const first_plan& f) {
    if (f.what == first_plan::kind::no_start) return no_start();
    if (f.what == first_plan::kind::go) {
      adopt_first(f, first_context(p_, entries_, names_, f, deadline_, opts_, call_, start_));
      issue_first(p_, entries_, names_, res_, f, ctx_.remaining);
      return action::attempt;
    }
    index_ = f.index;
    begin_model();
    ctx_.remaining = deadline_;
    if (f.what == first_plan::kind::stopped) return model_done(f.why);
    admission_ = f.admitted();
    return skip(start_);
  }

  // A classifier (or a user's exception mapping) that throws yields an `unknown` error rather
  // than an escaping exception: every call still ends with exactly one outcome.
  template <class F>
  error classify(F&& f) const noexcept {
    try {
      return f();
    } catch (...) {
      error e;
      e.kind = error_kind::unknown;
      e.message = "the classifier threw while classifying this failure";
      e.exception = std::current_exception();
      return e;
    }
  }

  // attempted()/waited() out of turn (after done, or twice): nothing changes.
  action misuse() const noexcept { return outstanding_.value_or(action::done); }
  action issue(action a) noexcept {
    outstanding_ = a;
    return a;
  }

  roles_view<Entries> roles() const noexcept { return roles_view<Entries>{entries_}; }
  const auto& entry() const noexcept { return entries_[index_]; }
  std::string_view model() const noexcept { return (*names_)[index_]; }
  attempt_record& current() noexcept { return res_.mutable_trace().back(); }
  std::optional<duration> time_left(time_point at) const noexcept {
    if (!deadline_) return std::nullopt;
    // A clock that steps back gives no more time than the deadline itself.
    return detail::sat_sub(*deadline_, std::max(detail::sat_diff(at, start_), duration::zero()));
  }
  // What the current model may still use: the time left, cut to its share (model_time()), which
  // is fixed when its first attempt starts.
  std::optional<duration> model_left(time_point at) const noexcept {
    const std::optional<duration> left = time_left(at);
    if (!left || !share_end_) return left;
    return std::min(*left, detail::sat_diff(*share_end_, at));
  }
  const error* last_error() const noexcept {
    return last_call_ ? &res_.trace().attempts()[*last_call_].error() : nullptr;
  }

  void begin_model() {
    ++models_tried_;
    counters_ = retry_counters{};
    counters_.total_attempts = total_;
    backoff_.reset();
    share_end_.reset();  // fixed at the model's first attempt (next_attempt)
  }

  attempt_record& add_record(time_point now) {
    return res_.mutable_trace().add(model(), static_cast<std::uint16_t>(index_), entry().role,
                                    counters_.attempts, now - start_);
  }

  // A later attempt (the first is issued by begin() or by the blocking driver's fast path).
  action next_attempt() {
    const time_point now = p_.clock().now();
    const std::optional<duration> left = time_left(now);
    const stop_reason why = decide_start(opts_, call_.token.cancelled(), total_, left);
    if (why != stop_reason::none) return model_done(why);
    if (left && counters_.attempts == 0) {  // the model's first attempt: fix its share
      const bool later = can_answer_after(p_, entries_, index_, error_kind::unknown, models_tried_,
                                          opts_, now, total_ + 1);
      share_end_ = detail::sat_add(now, model_time(*left, later, opts_));
    }
    ctx_.remaining = model_left(now);
    // A retry whose wait ran past the model's share (a late wake-up): its fallback's time is not
    // spent on it.
    if (ctx_.remaining && *ctx_.remaining <= duration::zero())
      return model_done(stop_reason::wait_past_deadline);
    admission_ = p_.breaker().admit(entry().health, now);
    if (!admission_.allowed) return skip(now);
    ++counters_.attempts;
    counters_.total_attempts = ++total_;
    ctx_.model = model();
    ctx_.attempt = counters_.attempts;
    ctx_.total_attempt = total_;
    ctx_.cancel = &call_.token;
    notify(&hooks_type::on_attempt_start,
           attempt_started{model(), counters_.attempts, total_, ctx_.remaining});
    last_call_ = res_.trace().size();
    add_record(now);
    attempt_start_ = now;
    return issue(action::attempt);
  }

  // The current entry's circuit is open: record the skip and move on.
  FAILOVER_COLD action skip(time_point now) {
    attempt_record& rec = add_record(now);
    rec.attempt = counters_.attempts + 1;  // numbered like the attempt it replaces
    rec.skipped = true;
    error e;
    e.kind = error_kind::circuit_open;
    e.model = std::string(model());
    e.retry_after = admission_.until > now ? admission_.until - now : duration::zero();
    e.message = "skipped: circuit open";
    rec.set_error(std::move(e));
    rec.stop = stop_reason::circuit_open;
    notify(&hooks_type::on_skip, attempt_skipped{model(), admission_.until});
    if (!earliest_reopen_ || admission_.until < earliest_reopen_->first)
      earliest_reopen_.emplace(admission_.until, index_);
    return model_done(stop_reason::circuit_open);
  }

  FAILOVER_COLD action no_start() {
    error e;
    e.message = "the chain has no standard entry to start from";
    return finish(std::move(e), stop_reason::no_fallback);
  }

  // The callable answered with a failure.
  FAILOVER_COLD action failed_with(const failure& f, time_point end) {
    return failed(end,
                  classify([&] { return p_.classifier().classify(f, p_.clock().wall_now()); }));
  }

  FAILOVER_COLD action failed(time_point end, error classified) {
    attempt_record& rec = current();
    classified.model = std::string(model());
    const error& e = rec.set_error(std::move(classified));
    if (e.kind == error_kind::read_timeout) ++counters_.read_timeouts;
    p_.breaker().on_failure(entry().health, end, e, admission_.probe);

    duration delay{};
    if (e.transient) {
      if (!backoff_) backoff_.emplace(entry().backoff);
      delay = backoff_->next(counters_.attempts);
    }
    const bool can_fall_back =
        can_answer_after(p_, entries_, index_, e.kind, models_tried_, opts_, end, total_);
    retry_decision d = decide_retry(entry().retry, opts_.max_total_attempts, e, counters_, delay,
                                    model_left(end), can_fall_back);
    // Shared health can veto a retry the model's own rules allow: no point waiting for a circuit
    // that will still be open, and no retry the shared budget cannot pay for.
    if (d.retry && p_.breaker().would_refuse(entry().health, detail::sat_add(end, d.wait)))
      d = retry_decision{false, {}, wait_reason::none, stop_reason::circuit_open};
    if (d.retry && !p_.budget().try_retry(end))
      d = retry_decision{false, {}, wait_reason::none, stop_reason::budget_exhausted};
    rec.wait = d.wait;
    rec.why_wait = d.reason;
    rec.stop = d.stop;
    notify(&hooks_type::on_attempt_end,
           attempt_ended{model(), counters_.attempts, false, &e, rec.elapsed});
    if (!d.retry) return model_done(d.stop);
    notify(&hooks_type::on_retry,
           retry_scheduled{model(), counters_.attempts, d.wait, d.reason, e});
    wait_ = d.wait;
    return issue(action::wait);
  }

  // The current model is done for `why`: end the call, or walk to the next entry.
  FAILOVER_COLD action model_done(stop_reason why) {
    // The model's last record says why it gave up, whichever step found it (a late wake-up, the
    // deadline or the cap found before a retry): the trace's "gave up on X" reads it.
    if (res_.trace().size() > 0) {
      attempt_record& last = current();
      if (last.entry == index_ && !last.ok && last.stop == stop_reason::none) last.stop = why;
    }
    if (why == stop_reason::wait_past_deadline) out_of_time_ = true;
    if (why == stop_reason::cancelled || why == stop_reason::deadline) {
      const error_kind k =
          why == stop_reason::cancelled ? error_kind::cancelled : error_kind::deadline_exceeded;
      return finish(stop_error(k, last_error(), model()), why);
    }
    // A model given up before any attempt passes on the failure that led to it (none for the
    // first model), and a skipped one is no hop.
    const bool untried = counters_.attempts == 0;
    if (untried && why == stop_reason::circuit_open) --models_tried_;
    const error_kind walk_kind = untried || !last_error() ? routing_ : last_error()->kind;
    const walk_decision w = next_entry(roles(), index_, walk_kind, why, models_tried_, opts_);
    if (!w.next) {
      if (!last_call_ && earliest_reopen_) {  // every model considered is open
        const time_point now = p_.clock().now();
        const duration until = std::max(duration::zero(), earliest_reopen_->first - now);
        if (wait_for_reopen(opts_, waited_for_reopen_, until, time_left(now))) {
          waited_for_reopen_ = waiting_for_reopen_ = true;
          current().wait = wait_ = until;
          current().why_wait = wait_reason::circuit;
          return issue(action::wait);
        }
        return finish(all_open_error((*names_)[earliest_reopen_->second], until),
                      stop_reason::circuit_open);
      }
      // The last model called gave up because its next wait would cross the deadline, and
      // nothing after it answered or even ran (no entry, or only open circuits): the call ends at
      // the deadline, as if it had waited.
      if (out_of_time_ && (why == stop_reason::wait_past_deadline || untried) &&
          (w.stop == stop_reason::no_fallback || why == stop_reason::circuit_open))
        return finish(stop_error(error_kind::deadline_exceeded, last_error(), model()),
                      stop_reason::deadline);
      if (!last_error())
        return finish(stop_error(error_kind::deadline_exceeded, nullptr, model()),
                      stop_reason::deadline);
      return finish(*last_error(), w.stop == stop_reason::no_fallback ? why : w.stop);
    }
    notify(&hooks_type::on_fallback,
           fallback_taken{model(), (*names_)[*w.next], entries_[*w.next].role,
                          res_.trace().attempts().back().error(), why});
    routing_ = walk_kind;
    index_ = *w.next;
    begin_model();
    return next_attempt();
  }

  action finish(error e, stop_reason why) {
    res_.set_error(std::move(e), why);
    notify(&hooks_type::on_give_up, gave_up{res_.error(), why});
    return issue(action::done);
  }

  const Holder& p_;
  const Entries& entries_;
  trace::names_ptr names_;
  const chain_options& opts_;
  const call_options& call_;
  result<R>& res_;
  const time_point start_;
  const std::optional<duration> deadline_;

  std::size_t index_ = 0;
  int models_tried_ = 0;
  int total_ = 0;
  retry_counters counters_;
  // Copied from the prototype at a model's first retry; what it throws comes out named.
  std::optional<guarded_backoff<backoff_type>> backoff_;
  admission admission_;
  attempt_context ctx_;
  time_point attempt_start_{};
  std::optional<time_point> share_end_;  // when the current model's share of the time ends
  bool out_of_time_ = false;  // a model gave up because its next wait would cross the deadline
  bool started_ = false;      // start() was called
  duration wait_{};
  std::optional<std::size_t> last_call_;  // trace index of the latest attempt that called a model
  error_kind routing_ = error_kind::unknown;  // the failure that led to the current entry
  std::optional<std::pair<time_point, std::size_t>> earliest_reopen_;  // among skipped entries
  bool waited_for_reopen_ = false;
  bool waiting_for_reopen_ = false;
  // The action handed out and not yet answered (attempt: attempted() comes next; wait: waited();
  // done: nothing more). Empty before start() and while an answer is being processed.
  std::optional<action> outstanding_;
};

// A call machine that owns its result: what fallback_chain::begin_call hands out. Not movable
// (the machine refers to the result beside it); begin_call returns it by guaranteed elision, so
// hold it where it is made, e.g. `auto call = chain.begin_call(opts);` or
// `std::unique_ptr<...>(new auto(chain.begin_call(opts)))`.
template <class R, class Holder, class Entries>
class owned_call_machine {
  struct storage {
    call_options call;  // a copy: the caller's options may be a temporary
    result<R> res;
  };

 public:
  using action = typename call_machine<R, Holder, Entries>::action;

  owned_call_machine(const Holder& p, const Entries& entries, trace::names_ptr names,
                     const chain_options& opts, const call_options& call)
      : storage_{call, result<R>(names)},
        machine_(storage_.res, p, entries, names, opts, storage_.call) {}
  owned_call_machine(const owned_call_machine&) = delete;
  owned_call_machine& operator=(const owned_call_machine&) = delete;

  action start() { return machine_.start(); }
  action attempted(outcome<R>&& answer) { return machine_.attempted(std::move(answer)); }
  action attempted(std::exception_ptr thrown) { return machine_.attempted(std::move(thrown)); }
  action waited(bool completed) { return machine_.waited(completed); }
  // When the driver's own wait (a timer, a Sleeper) throws: ends the call with an error.
  action end_with_exception(const char* what, std::exception_ptr cause) noexcept {
    return machine_.end_with_exception(what, std::move(cause));
  }
  std::size_t entry_index() const noexcept { return machine_.entry_index(); }
  const attempt_context& context() const noexcept { return machine_.context(); }
  duration wait() const noexcept { return machine_.wait(); }
  const cancel_token& token() const noexcept { return machine_.token(); }
  // After action::done.
  result<R> take() && { return std::move(storage_.res); }

 private:
  storage storage_;
  call_machine<R, Holder, Entries> machine_;
};

// The blocking driver: runs the machine, calling the model and sleeping through the Sleeper.
// `invoke(i, ctx)` calls entry i's callable and returns outcome<R>.
// Runs the machine from action `a` until the call is done: calls the model, sleeps through the
// Sleeper. `invoke(i, ctx)` calls entry i's callable and returns outcome<R>.
template <class R, class Holder, class Entries, class Invoke>
void run_machine(call_machine<R, Holder, Entries>& m,
                 typename call_machine<R, Holder, Entries>::action a, const Holder& p,
                 const call_options& call, Invoke& invoke) noexcept {
  using action = typename call_machine<R, Holder, Entries>::action;
  for (;;) {
    switch (a) {
      case action::attempt: {
        // What the callable throws (copying an argument into a by-value parameter included) is
        // its answer; the machine's steps throw nothing.
        try {
          outcome<R> answer = invoke(m.entry_index(), m.context());
          a = m.attempted(std::move(answer));
        } catch (...) {
          a = m.attempted(std::current_exception());
        }
        break;
      }
      case action::wait: {
        bool completed = false;
        try {
          completed = p.sleeper().sleep_for(m.wait(), call.token);
        } catch (...) {
          a = m.end_with_exception("the Sleeper policy", std::current_exception());
          break;
        }
        a = m.waited(completed);
        break;
      }
      case action::done:
        return;
    }
  }
}

// The rest of a blocking call whose first attempt did not succeed (or was never made): out of
// line, so that the success path stays small enough to inline into the caller.
// What the fast path hands on when its first attempt's value could not be moved into the result.
struct unstored_answer {
  std::exception_ptr cause;
};

template <class R, class Holder, class Entries, class Invoke, class Answer>
FAILOVER_COLD void drive_on(result<R>& res, const Holder& p, const Entries& entries,
                            trace::names_ptr names, const chain_options& opts,
                            const call_options& call, Invoke& invoke, time_point start,
                            typename call_machine<R, Holder, Entries>::first_plan plan,
                            const attempt_context* ctx, Answer&& answer, time_point end) noexcept {
  call_machine<R, Holder, Entries> m(res, p, entries, names, opts, call, start);
  typename call_machine<R, Holder, Entries>::action a{};
  if constexpr (std::is_same_v<std::decay_t<Answer>, std::nullptr_t>) {  // never attempted
    a = m.start_from(plan);
  } else {
    m.adopt_first(plan, *ctx);
    if constexpr (std::is_same_v<std::decay_t<Answer>, std::exception_ptr>) {  // it threw
      a = m.attempted(std::forward<Answer>(answer));
    } else if constexpr (std::is_same_v<std::decay_t<Answer>, unstored_answer>) {
      a = m.unstored(std::move(answer.cause), end);  // its value's move threw
    } else {                                         // it answered with a failure
      a = m.answered(std::forward<Answer>(answer), end);
    }
  }
  run_machine(m, a, p, call, invoke);
}

// The blocking driver. A call whose first attempt succeeds (the common case) runs here alone:
// the plan and the first attempt are the machine's own static steps, so the rules are the same,
// but no machine is built. Anything else hands the call to a machine that carries on from
// exactly where the fast path stopped.
template <class R, per_call Given = per_call::given, class Holder, class Entries, class Invoke>
FAILOVER_HOT_INLINE result<R> drive(const Holder& p, const Entries& entries, trace::names_ptr names,
                                    const chain_options& opts, const call_options& call,
                                    Invoke&& invoke) {
  using machine = call_machine<R, Holder, Entries>;
  // The clock first: a result built after the last opaque call before its first record lets the
  // compiler see its trace still empty when the record is added.
  const time_point start = p.clock().now();
  result<R> res(names);
  const std::optional<duration> deadline =
      Given == per_call::given ? earlier(opts.deadline, call.deadline) : opts.deadline;
  const bool cancelled = Given == per_call::given && call.token.cancelled();
  const typename machine::first_plan plan =
      machine::plan_first(p, entries, opts, cancelled, start, deadline);
  if (plan.what != machine::first_plan::kind::go) {
    drive_on(res, p, entries, names, opts, call, invoke, start, plan, nullptr, nullptr, start);
    return res;
  }
  const attempt_context ctx =
      machine::first_context(p, entries, names, plan, deadline, opts, call, start);
  attempt_record& rec = machine::issue_first(p, entries, names, res, plan, ctx.remaining);
  // The value goes into the result before anyone is told of a success: when its move throws, the
  // attempt failed and nothing counted it. Nothing else in the try throws but the callable
  // (drive_on and succeeded are noexcept).
  bool answered = false;
  time_point end{};
  try {
    outcome<R> answer = invoke(plan.index, ctx);
    answered = true;
    end = p.clock().now();
    rec.elapsed = end - start;
    if (answer.has_value()) {
      res.set_value(*std::move(answer));
      machine::succeeded(p, entries[plan.index], rec, end, plan.probe);
    } else {
      drive_on(res, p, entries, names, opts, call, invoke, start, plan, &ctx, std::move(answer),
               end);
    }
  } catch (...) {
    if (answered) {
      drive_on(res, p, entries, names, opts, call, invoke, start, plan, &ctx,
               unstored_answer{std::current_exception()}, end);
    } else {
      drive_on(res, p, entries, names, opts, call, invoke, start, plan, &ctx,
               std::current_exception(), start);
    }
  }
  return res;
}

}  // namespace failover::detail
