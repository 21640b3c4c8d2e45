// One call as an event-driven machine: told what happened (handle(event, now)), it says what to do
// next (poll() → action). It reads no clock, sleeps never and calls no model, so the blocking loop,
// the async drivers and virtual-time simulations all run these same rules.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "failover/core/classifier.hpp"
#include "failover/core/context.hpp"
#include "failover/core/decision.hpp"
#include "failover/core/outcome.hpp"
#include "failover/detail/saturate.hpp"
#include "failover/gates/gate.hpp"
#include "failover/machine/attempts.hpp"
#include "failover/machine/events.hpp"
#include "failover/machine/hooks.hpp"
#include "failover/machine/plan.hpp"

// The success path (begin, one attempt, its answer) is a few dozen stores around the model call:
// its steps are forced inline into the driver's loop, and the steps of failures, waits, fallbacks
// and skips are kept out of line, so that a call that succeeds at once runs as one straight piece.
#if defined(__GNUC__) || defined(__clang__)
#define FAILOVER_MACHINE_HOT inline __attribute__((always_inline))
#define FAILOVER_MACHINE_COLD __attribute__((noinline, cold))
#elif defined(_MSC_VER)
#define FAILOVER_MACHINE_HOT __forceinline
#define FAILOVER_MACHINE_COLD __declspec(noinline)
#else
#define FAILOVER_MACHINE_HOT inline
#define FAILOVER_MACHINE_COLD
#endif

namespace failover {

namespace detail {

// The blocking driver's way through a first attempt (drivers/blocking.hpp).
struct blocking_first;

// Where a machine keeps its plan, its call's options and its result. A machine that may outlive the
// frame that began it (an async driver's) owns copies of all three; the blocking driver's lives
// inside one call and borrows them from it, so that the result is built where the call returns it
// (no move), and no plan or cancel_token is copied. Each is built in place inside the machine.
template <class R, class Plan>
class owned_call {
 public:
  owned_call(const Plan& plan, call_options call) noexcept
      : plan_(plan), call_(std::move(call)), res_(plan.names) {}
  const Plan& plan() const noexcept { return plan_; }
  const call_options& call() const noexcept { return call_; }
  result<R>& res() noexcept { return res_; }
  const result<R>& res() const noexcept { return res_; }
  result<R> take() { return std::move(res_); }

 private:
  Plan plan_;
  call_options call_;
  result<R> res_;
};

template <class R, class Plan>
class borrowed_call {
 public:
  // All three must outlive the machine.
  borrowed_call(const Plan& plan, const call_options& call, result<R>& out) noexcept
      : plan_(&plan), call_(&call), res_(&out) {}
  const Plan& plan() const noexcept { return *plan_; }
  const call_options& call() const noexcept { return *call_; }
  result<R>& res() noexcept { return *res_; }
  const result<R>& res() const noexcept { return *res_; }
  result<R> take() { return std::move(*res_); }

 private:
  const Plan* plan_;
  const call_options* call_;
  result<R>* res_;
};

}  // namespace detail

// Asks for one more attempt on the current model beside those in flight (hedging). Refused
// quietly when the gates say no, the attempt cap is reached, or max_in_flight are out.
namespace events {
struct launch_attempt {};
}  // namespace events

// Order of use: construct (the call starts at `now`), then repeatedly poll() and carry out each
// action, handing every outcome back through handle(); after `done`, take() the result. Every
// handle() is noexcept: what a policy throws ends the call with an `unknown` error that names it.
// Move a machine only while no start_attempt it handed out is still unanswered (its context
// pointer refers into the machine).
template <class R, class Plan, class Store = detail::owned_call<R, Plan>>
class call_machine {
  using entries_type = typename Plan::entries_type;
  using gates_type = typename Plan::gates_type;
  using hooks_type = typename Plan::hooks_type;
  using entry_type = std::decay_t<decltype(std::declval<const entries_type&>()[0])>;
  using backoff_type = std::decay_t<decltype(std::declval<entry_type&>().backoff)>;
  using tickets = typename gates_type::tickets;

 public:
  using value_type = R;
  using action = std::variant<actions::start_attempt, actions::cancel_attempt, actions::sleep_until,
                              actions::done>;
  static constexpr std::size_t max_in_flight = 4;

  // A machine that owns copies of the plan, of `call` and of its result (begin_call).
  call_machine(const Plan& plan, call_options call, time_point now) noexcept
      : call_machine(now, plan, std::move(call)) {}
  // A machine whose Store is built from `store_args`.
  template <class... A>
  FAILOVER_MACHINE_HOT call_machine(time_point now, A&&... store_args) noexcept
      : call_machine(not_begun, now, std::forward<A>(store_args)...) {
    try {
      begin(now);
    } catch (...) {
      step_threw(now);
    }
  }
  call_machine(call_machine&&) noexcept = default;
  call_machine& operator=(call_machine&&) = delete;
  call_machine(const call_machine&) = delete;
  call_machine& operator=(const call_machine&) = delete;
  // A machine dropped with attempts out gives back what they hold (a half-open probe slot).
  FAILOVER_MACHINE_HOT ~call_machine() { abandon_all(last_now_, false); }

  // ---- inputs ----
  void handle(events::attempt_started e, time_point now) noexcept {
    if (auto* s = slots_.find(e.id)) s->started = now;
  }
  void handle(events::answered<R>&& e, time_point now) noexcept {
    handle_answer(e.id, std::move(e.answer), now);
  }
  // The same as handle(answered{id, answer}), without moving the answer into an event first.
  FAILOVER_MACHINE_HOT void handle_answer(attempt_id id, outcome<R>&& answer,
                                          time_point now) noexcept {
    if (!enter(now)) return;
    try {
      on_answer(id, std::move(answer), now);
    } catch (...) {
      step_threw(now);
    }
  }
  void handle(events::failed e, time_point now) noexcept {
    if (!enter(now)) return;
    try {
      on_thrown(e.id, std::move(e.thrown), now);
    } catch (...) {
      step_threw(now);
    }
  }
  void handle(events::timer_fired, time_point now) noexcept {
    if (!enter(now)) return;
    try {
      on_timer(now);
    } catch (...) {
      step_threw(now);
    }
  }
  void handle(events::cancelled, time_point now) noexcept {
    if (!enter(now)) return;
    try {
      on_cancel(now);
    } catch (...) {
      step_threw(now);
    }
  }
  void handle(events::driver_failed e, time_point now) noexcept {
    last_now_ = now;
    end_with_exception(e.what, std::move(e.cause), now);
  }
  void handle(events::launch_attempt, time_point now) noexcept {
    if (!enter(now)) return;
    try {
      on_launch(now);
    } catch (...) {
      step_threw(now);
    }
  }

  // ---- outputs ----
  FAILOVER_MACHINE_HOT std::optional<action> poll() noexcept {
    while (!out_.empty()) {
      const auto item = out_.pop();
      switch (item.what) {
        case detail::action_queue::kind::start:
          if (auto* s = slots_.find(item.id)) {
            s->context.cancel = &call().token;
            return action(actions::start_attempt{s->id, s->entry, &s->context});
          }
          break;  // cancelled before it was handed out
        case detail::action_queue::kind::cancel:
          return action(actions::cancel_attempt{item.id});
        case detail::action_queue::kind::sleep:
          if (phase_ == phase::waiting) return action(actions::sleep_until{wake_at_, wait_});
          break;
        case detail::action_queue::kind::done:
          return action(actions::done{});
      }
    }
    return std::nullopt;
  }

  bool is_done() const noexcept { return phase_ == phase::done; }
  // When the machine wants timer_fired: the end of its wait, or, while attempts are in flight
  // and the call has a deadline, the deadline (an attempt still out then is abandoned and the
  // call ends with deadline_exceeded). An async driver arms its timer for it after each step; the
  // blocking driver, whose attempt holds its thread, needs only sleep_until.
  std::optional<time_point> next_timer() const noexcept {
    if (phase_ == phase::waiting) return wake_at_;
    if (phase_ == phase::running && has_deadline_ && slots_.in_flight() > 0)
      return start_ + deadline_;
    return std::nullopt;
  }
  std::size_t in_flight() const noexcept { return slots_.in_flight(); }
  const cancel_token& token() const noexcept { return call().token; }
  const failover::result<R>& result() const noexcept { return store_.res(); }
  failover::result<R> take() && { return store_.take(); }

 private:
  using slot = typename detail::attempt_table<tickets, max_in_flight>::slot;
  // A machine whose call starts at `now` and has not begun (begin() or adopt_first does that).
  struct not_begun_t {
    explicit not_begun_t() = default;
  };
  static constexpr not_begun_t not_begun{};
  template <class... A>
  FAILOVER_MACHINE_HOT call_machine(not_begun_t, time_point now, A&&... store_args) noexcept
      : store_(std::forward<A>(store_args)...), start_(now), last_now_(now) {
    if (opts().deadline || call().deadline) {
      has_deadline_ = true;
      deadline_ = *detail::earlier(opts().deadline, call().deadline);
    }
  }
  // ---- a first attempt run without a machine: the blocking driver's, and private to it ----
  friend struct detail::blocking_first;
  // A blocking call whose first attempt answers with a value needs no machine. The driver runs
  // that attempt on its own frame with the steps below, which are the steps the machine runs for
  // it, and builds a machine only for anything else: one built `adopt_first` takes the attempt
  // over (or the gates' verdict that stopped it) and goes on as if it had begun the call itself.
  // Only a call with no deadline goes this way, and only when moving its value cannot throw.
  static constexpr bool can_begin_outside = std::is_nothrow_move_constructible_v<R>;
  struct first_verdict {
    verdict v;
    tickets held{};
  };
  // What begin() decides for a call with no deadline that starts at `now`: the start rule, then
  // the gates (which count the call), into `f`. False when the call has a deadline or the rule
  // stops it before any attempt (nothing was asked: a machine built at `now` then begins it).
  FAILOVER_MACHINE_HOT static bool ask_first(const Plan& p, const call_options& call,
                                             time_point now, first_verdict& f) noexcept {
    if (!p.start || p.options->deadline || call.deadline ||
        decide_start(*p.options, call.token.cancelled(), 0, std::nullopt) != stop_reason::none)
      return false;
    p.gates->on_call(now);
    f.v = p.gates->ask((*p.entries)[*p.start].keys, gate_question{ask_phase::attempt, now, now},
                       f.held);
    return true;
  }
  // What start() does outside the machine: the hook is told and the record added. The first
  // record of a call lives inline in the trace and cannot fail to be added.
  FAILOVER_MACHINE_HOT static attempt_record& announce(const Plan& p, failover::result<R>& res,
                                                       std::size_t entry, int attempt, int total,
                                                       std::optional<duration> remaining,
                                                       duration offset) {
    const std::string_view model = (*p.names)[entry];
    notify(p, &hooks_type::on_attempt_start, attempt_started{model, attempt, total, remaining});
    return res.mutable_trace().add(model, static_cast<std::uint16_t>(entry),
                                   (*p.entries)[entry].role, attempt, offset);
  }
  // A value is in the result: the attempt's record says so, and the gates and the hooks are told.
  FAILOVER_MACHINE_HOT static void succeeded(const Plan& p, attempt_record& rec, std::size_t entry,
                                             time_point now, const tickets& held) noexcept {
    rec.ok = true;
    p.gates->tell((*p.entries)[entry].keys, now, nullptr, held);
    notify(p, &hooks_type::on_attempt_end,
           attempt_ended{rec.model, rec.attempt, true, nullptr, rec.elapsed});
  }
  // The machine of a call begun outside it at `start` with ask_first() == `f`. On `go`, the
  // attempt announce() recorded is in flight as adopted(), to be answered through handle();
  // otherwise the verdict is taken as begin() takes it (a skip, or a wait for the gate).
  struct adopt_first_t {
    explicit adopt_first_t() = default;
  };
  static constexpr adopt_first_t adopt_first{};
  template <class... A>
  call_machine(adopt_first_t, time_point start, const first_verdict& f, A&&... store_args) noexcept
      : call_machine(not_begun, start, std::forward<A>(store_args)...) {
    try {
      index_ = *plan().start;
      begin_model();
      if (!held_back(start, f.v)) adopted_ = open_attempt(start, std::nullopt, f.held, 0)->id;
    } catch (...) {
      step_threw(start);
    }
  }
  // The attempt a machine built adopt_first took over (0: none).
  attempt_id adopted() const noexcept { return adopted_; }

  enum class phase : std::uint8_t { idle, running, waiting, done };
  enum class waiting_for : std::uint8_t { retry, reopen, gate };

  const call_options& call() const noexcept { return store_.call(); }
  failover::result<R>& res() noexcept { return store_.res(); }
  const failover::result<R>& res() const noexcept { return store_.res(); }
  const Plan& plan() const noexcept { return store_.plan(); }
  const entries_type& entries() const noexcept { return *plan().entries; }
  const chain_options& opts() const noexcept { return *plan().options; }
  const gates_type& gates() const noexcept { return *plan().gates; }
  const entry_type& entry() const noexcept { return entries()[index_]; }
  std::string_view name(std::size_t i) const noexcept { return (*plan().names)[i]; }
  std::string_view model() const noexcept { return name(index_); }
  detail::roles_view<entries_type> roles() const noexcept { return {entries()}; }
  attempt_record& record(std::size_t i) noexcept { return res().mutable_trace().at(i); }
  attempt_record& current() noexcept { return res().mutable_trace().back(); }
  const error* last_error() const noexcept {
    return last_call_ ? &res().trace().attempts()[*last_call_].error() : nullptr;
  }

  // Every handle() runs its step as `if (!enter(now)) return; try { step } catch (...) {
  // step_threw(now); }`: after done a step changes nothing, and what a step throws ends the call.
  FAILOVER_MACHINE_HOT bool enter(time_point now) noexcept {
    last_now_ = now;
    return phase_ != phase::done;
  }
  FAILOVER_MACHINE_COLD void step_threw(time_point now) noexcept {
    try {
      throw;
    } catch (const detail::policy_failure& f) {
      end_with_exception(f.policy, f.cause, now);
    } catch (const std::bad_alloc&) {
      end_with_exception("an allocation (out of memory)", std::current_exception(), now);
    } catch (...) {
      end_with_exception("a step of the call", std::current_exception(), now);
    }
  }

  // Observing must not change how a call ends, whatever a user's Hooks policy does.
  template <class Hook, class Event>
  void notify(Hook hook, const Event& e) const noexcept {
    notify(plan(), hook, e);
  }
  template <class Hook, class Event>
  static void notify(const Plan& p, Hook hook, const Event& e) noexcept {
    if constexpr (noexcept((std::declval<const hooks_type&>().*hook)(e))) {
      (p.hooks->*hook)(e);
    } else {
      try {
        (p.hooks->*hook)(e);
      } catch (...) {  // NOLINT(bugprone-empty-catch): documented: hook failures are dropped
      }
    }
  }

  template <class F>
  error classify(F&& f) const noexcept {
    try {
      return f();
    } catch (...) {
      return thrown_by(std::current_exception(),
                       "the classifier threw while classifying this failure");
    }
  }

  FAILOVER_MACHINE_HOT std::optional<duration> time_left(time_point at) const noexcept {
    if (!has_deadline_) return std::nullopt;
    // A clock that steps back gives no more time than the deadline itself.
    return detail::sat_sub(deadline_, std::max(detail::sat_diff(at, start_), duration::zero()));
  }
  // What the current model may still use: the time left, cut to its share (model_time()), which
  // is fixed when its first attempt starts.
  FAILOVER_MACHINE_HOT std::optional<duration> model_left(time_point at) const noexcept {
    const std::optional<duration> left = time_left(at);
    if (!left || !share_end_) return left;
    return std::min(*left, detail::sat_diff(*share_end_, at));
  }

  // Whether a later entry could take over a failure of kind `kind` from entry `index` at `now`:
  // one the walk would reach (roles, hops and the attempt cap: fallback_exists) that no gate
  // would refuse. Only then is time kept back for it, or a read timeout handed over to it.
  FAILOVER_MACHINE_COLD bool can_answer_after(error_kind kind, time_point now,
                                              int attempts_after) const noexcept {
    if (!fallback_exists(roles(), index_, kind, models_tried_, opts(), attempts_after))
      return false;
    for (std::size_t j = index_ + 1; j < entries().size(); ++j)
      if (accepts(entries()[j].role, kind, opts()) && !gates().would_refuse(entries()[j].keys, now))
        return true;
    return false;
  }

  // Begins the call.
  FAILOVER_MACHINE_HOT void begin(time_point now) {
    if (!plan().start) {
      finish(detail::machine_error(error_kind::unknown, {},
                                   "the chain has no standard entry to start from"),
             stop_reason::no_fallback);
      return;
    }
    index_ = *plan().start;
    begin_model();
    if (has_deadline_) {
      next_timed_attempt(now, true);
      return;
    }
    next_attempt_as<false>(now, true);
  }

  FAILOVER_MACHINE_HOT void begin_model() {
    ++models_tried_;
    counters_ = retry_counters{};
    counters_.total_attempts = total_;
    backoff_.reset();
    share_end_.reset();  // fixed at the model's first attempt (next_attempt)
  }

  FAILOVER_MACHINE_HOT attempt_record& add_record(time_point now) {
    return res().mutable_trace().add(model(), static_cast<std::uint16_t>(index_), entry().role,
                                     counters_.attempts, now - start_);
  }

  // The current model's next attempt: asks the rules, then the gates, then starts it. The one
  // body below runs in two instances: without a deadline every time it reads is a constant
  // "none", so the call that has none computes no time left at all. (ask_first() is its first
  // steps for the first attempt of a call with no deadline.)
  FAILOVER_MACHINE_HOT void next_attempt(time_point now) {
    if (has_deadline_) {
      next_timed_attempt(now, false);
      return;
    }
    next_attempt_as<false>(now, false);
  }
  FAILOVER_MACHINE_COLD void next_timed_attempt(time_point now, bool first_of_call) {
    next_attempt_as<true>(now, first_of_call);
  }
  template <bool Timed>
  FAILOVER_MACHINE_HOT void next_attempt_as(time_point now, bool first_of_call) {
    const std::optional<duration> left = Timed ? time_left(now) : std::nullopt;
    const stop_reason why = decide_start(opts(), call().token.cancelled(), total_, left);
    if (why != stop_reason::none) {
      model_done(why, now);
      return;
    }
    // A call that never starts is no first attempt: the gates count it only now.
    if (first_of_call) gates().on_call(now);
    if (Timed && counters_.attempts == 0)  // the model's first attempt: fix its share
      share_end_ = detail::sat_add(
          now, model_time(*left, can_answer_after(error_kind::unknown, now, total_ + 1), opts()));
    const std::optional<duration> remaining = Timed ? model_left(now) : std::nullopt;
    // A retry whose wait ran past the model's share (a late wake-up): its fallback's time is not
    // spent on it.
    if (remaining && *remaining <= duration::zero()) {
      model_done(stop_reason::wait_past_deadline, now);
      return;
    }
    tickets t{};
    const verdict v = gates().ask(entry().keys, gate_question{ask_phase::attempt, now, now}, t);
    if (held_back(now, v)) return;
    start(now, remaining, t);
  }

  // A gate's verdict before an attempt, taken: `refuse` skips the entry, `wait` waits to ask
  // again. False on `go`: the attempt starts.
  FAILOVER_MACHINE_HOT bool held_back(time_point now, const verdict& v) {
    if (v.what == verdict::kind::refuse) {
      skip(now, v);
      return true;
    }
    if (v.what == verdict::kind::wait) {
      wait(now, v.wait, waiting_for::gate);
      return true;
    }
    return false;
  }

  // Opens an attempt's slot and record, and queues it for poll().
  FAILOVER_MACHINE_HOT slot* start(time_point now, std::optional<duration> remaining,
                                   const tickets& t) {
    if (slots_.in_flight() == max_in_flight)
      throw std::logic_error("failover: more attempts in flight than the machine holds");
    // The slot opens before the record is added: if adding it runs out of memory, the call ends
    // and abandon_all() still gives the gates their tickets back.
    slot* s = open_attempt(now, remaining, t, res().trace().size());
    announce(plan(), res(), index_, counters_.attempts, total_, remaining, now - start_);
    out_.push(detail::action_queue::kind::start, s->id);
    return s;
  }
  // The machine's own part of starting an attempt on the current entry, whose record will be
  // `record` in the trace: its numbers, its slot and the context it is handed.
  FAILOVER_MACHINE_HOT slot* open_attempt(time_point now, std::optional<duration> remaining,
                                          const tickets& t, std::size_t record) noexcept {
    ++counters_.attempts;
    counters_.total_attempts = ++total_;
    slot* s = slots_.open(index_, record, now, t);
    s->context.model = model();
    s->context.attempt = counters_.attempts;
    s->context.total_attempt = total_;
    s->context.remaining = remaining;
    s->context.cancel = &call().token;
    last_call_ = record;
    phase_ = phase::running;
    return s;
  }

  FAILOVER_MACHINE_COLD void on_launch(time_point now) {
    if (phase_ != phase::running || slots_.in_flight() >= max_in_flight) return;
    if (decide_start(opts(), call().token.cancelled(), total_, time_left(now)) != stop_reason::none)
      return;
    tickets t{};
    const verdict v = gates().ask(entry().keys, gate_question{ask_phase::attempt, now, now}, t);
    if (!v.is_go()) return;
    start(now, model_left(now), t);
  }

  FAILOVER_MACHINE_COLD void wait(time_point now, duration d, waiting_for why) {
    phase_ = phase::waiting;
    waiting_ = why;
    wait_ = d;
    wake_at_ = detail::sat_add(now, d);
    out_.push(detail::action_queue::kind::sleep);
  }

  // The current entry's gates refused it: record the skip and move on.
  FAILOVER_MACHINE_COLD void skip(time_point now, const verdict& v) {
    attempt_record& rec = add_record(now);
    rec.attempt = counters_.attempts + 1;  // numbered like the attempt it replaces
    rec.skipped = true;
    error e = detail::machine_error(
        error_kind::circuit_open, model(),
        v.why == stop_reason::circuit_open ? "skipped: circuit open" : "skipped: refused");
    e.retry_after = v.until > now ? v.until - now : duration::zero();
    rec.set_error(std::move(e));
    rec.stop = v.why;
    notify(&hooks_type::on_skip, attempt_skipped{model(), v.until});
    if (!earliest_reopen_ || v.until < earliest_reopen_->first)
      earliest_reopen_.emplace(v.until, index_);
    model_done(stop_reason::circuit_open, now);
  }

  // What an attempt that ended leaves behind once its slot is free.
  struct ended {
    std::size_t entry;
    std::size_t record;
    tickets held;
  };
  FAILOVER_MACHINE_HOT ended close(slot& s, time_point now) noexcept {
    record(s.record).elapsed = now - s.started;
    const ended e{s.entry, s.record, s.tickets};
    slots_.close(s);
    return e;
  }

  FAILOVER_MACHINE_HOT void on_answer(attempt_id id, outcome<R>&& answer, time_point now) {
    slot* s = slots_.find(id);
    if (!s) return;  // cancelled, or never handed out: ignored
    const ended done = close(*s, now);
    if (!answer.has_value()) {
      return failed(done, now, classify([&] {
                      return plan().classifier->classify(answer.failure(),
                                                         plan().clock->wall_now());
                    }));
    }
    try {
      res().set_value(*std::move(answer));
    } catch (...) {
      return failed(done, now, unstored_value(std::current_exception()));
    }
    // Only now are the gates and the hooks told of a success: a value whose move throws is a
    // failed attempt, and nothing counted it as a success.
    succeeded(plan(), record(done.record), done.entry, now, done.held);
    abandon_all(now, true);  // a hedged sibling still out is not wanted any more
    phase_ = phase::done;
    out_.push(detail::action_queue::kind::done);
  }

  FAILOVER_MACHINE_COLD void on_thrown(attempt_id id, std::exception_ptr thrown, time_point now) {
    slot* s = slots_.find(id);
    if (!s) return;
    const ended done = close(*s, now);
    if (!thrown)
      return failed(done, now,
                    detail::machine_error(error_kind::unknown, {},
                                          "the attempt reported an empty exception"));
    failed(done, now,
           classify([&] { return plan().classifier->classify(thrown, plan().clock->wall_now()); }));
  }

  static error unstored_value(std::exception_ptr cause) {
    return thrown_by(std::move(cause), "failover: moving the answer into the result threw");
  }
  static error thrown_by(std::exception_ptr cause, std::string_view message) {
    error e = detail::machine_error(error_kind::unknown, {}, message);
    e.exception = std::move(cause);
    return e;
  }

  FAILOVER_MACHINE_COLD void failed(const ended& s, time_point end, error classified) {
    attempt_record& rec = record(s.record);
    const std::string_view model_name = name(s.entry);
    classified.model.assign(model_name.data(), model_name.size());
    const error& e = rec.set_error(std::move(classified));
    if (e.kind == error_kind::read_timeout) ++counters_.read_timeouts;
    gates().tell(entries()[s.entry].keys, end, &e, s.held);
    if (slots_.in_flight() > 0) {  // a hedged sibling may still answer: decide after it
      notify(&hooks_type::on_attempt_end,
             attempt_ended{rec.model, rec.attempt, false, &e, rec.elapsed});
      return;
    }
    duration delay{};
    if (e.transient) {
      if (!backoff_) backoff_.emplace(entry().backoff);
      delay = backoff_->next(counters_.attempts);
    }
    const bool can_fall_back = can_answer_after(e.kind, end, total_);
    retry_decision d = decide_retry(entry().retry, opts().max_total_attempts, e, counters_, delay,
                                    model_left(end), can_fall_back);
    // The gates may veto a retry the model's own rules allow: no point waiting for a circuit that
    // will still be open, and no retry a shared budget cannot pay for.
    if (d.retry) {
      tickets none{};
      const verdict v = gates().ask(
          entry().keys, gate_question{ask_phase::plan_retry, end, detail::sat_add(end, d.wait)},
          none);
      if (!v.is_go()) d = retry_decision{false, {}, wait_reason::none, v.why};
    }
    rec.wait = d.wait;
    rec.why_wait = d.reason;
    rec.stop = d.stop;
    notify(&hooks_type::on_attempt_end,
           attempt_ended{rec.model, rec.attempt, false, &e, rec.elapsed});
    if (!d.retry) return model_done(d.stop, end);
    notify(&hooks_type::on_retry,
           retry_scheduled{model(), counters_.attempts, d.wait, d.reason, e});
    wait(end, d.wait, waiting_for::retry);
  }

  FAILOVER_MACHINE_COLD void on_timer(time_point now) {
    if (phase_ == phase::running && has_deadline_ && slots_.in_flight() > 0 &&
        now - start_ >= deadline_)
      return out_of_time_in_flight(now);
    if (phase_ != phase::waiting) return;
    phase_ = phase::running;
    if (waiting_ == waiting_for::reopen) {
      index_ = earliest_reopen_->second;
      earliest_reopen_.reset();
      routing_ = error_kind::unknown;
      models_tried_ = 0;
      begin_model();
    }
    next_attempt(now);
  }

  FAILOVER_MACHINE_COLD void on_cancel(time_point now) {
    if (phase_ == phase::waiting) {
      phase_ = phase::running;
      if (waiting_ == waiting_for::reopen)
        return finish(detail::stop_error(error_kind::cancelled, nullptr, model()),
                      stop_reason::cancelled);
      if (res().trace().size() > 0) current().stop = stop_reason::cancelled;
      return model_done(stop_reason::cancelled, now);
    }
    if (slots_.in_flight() == 0) return;
    // Attempts in flight end as cancelled; the call's error names the last failure before them.
    const std::optional<std::size_t> before = last_failure_before_flight();
    abandon_all(now, true);
    const error* prior = before ? &res().trace().attempts()[*before].error() : nullptr;
    finish(detail::stop_error(error_kind::cancelled, prior, model()), stop_reason::cancelled);
  }

  // The deadline came with attempts still out: they are abandoned (recorded as out of time), and
  // the call ends with deadline_exceeded, naming the last failure before them.
  FAILOVER_MACHINE_COLD void out_of_time_in_flight(time_point now) {
    const std::optional<std::size_t> before = last_failure_before_flight();
    abandon_all(now, true, error_kind::deadline_exceeded);
    const error* prior = before ? &res().trace().attempts()[*before].error() : nullptr;
    finish(detail::stop_error(error_kind::deadline_exceeded, prior, model()),
           stop_reason::deadline);
  }

  std::optional<std::size_t> last_failure_before_flight() noexcept {
    std::optional<std::size_t> first_in_flight;
    slots_.each([&](slot& s) {
      if (!first_in_flight || s.record < *first_in_flight) first_in_flight = s.record;
    });
    const auto& attempts = res().trace().attempts();
    for (std::size_t i = first_in_flight.value_or(attempts.size()); i-- > 0;)
      if (!attempts[i].skipped && !attempts[i].ok) return i;
    return std::nullopt;
  }

  // Every attempt in flight is given up: its gates get their tickets back, its record says it was
  // cancelled, and (`tell_driver`) the driver is asked to abort it.
  FAILOVER_MACHINE_HOT void abandon_all(time_point now, bool tell_driver,
                                        error_kind why = error_kind::cancelled) noexcept {
    if (!slots_.empty()) abandon_in_flight(now, tell_driver, why);
  }
  FAILOVER_MACHINE_COLD void abandon_in_flight(time_point now, bool tell_driver,
                                               error_kind why) noexcept {
    slots_.each([&](slot& s) {
      gates().tell(entries()[s.entry].keys, now, nullptr, s.tickets, true);
      if (tell_driver) {
        // The record of an attempt whose record could not be added (out of memory) is not there.
        if (s.record < res().trace().size()) mark_abandoned(s, now, why);
        out_.push(detail::action_queue::kind::cancel, s.id);
      }
      slots_.close(s);
    });
  }

  FAILOVER_MACHINE_COLD void mark_abandoned(const slot& s, time_point now,
                                            error_kind why) noexcept {
    try {
      const bool out_of_time = why == error_kind::deadline_exceeded;
      attempt_record& rec = record(s.record);
      rec.elapsed = now - s.started;
      rec.stop = out_of_time ? stop_reason::deadline : stop_reason::cancelled;
      rec.set_error(detail::machine_error(
          why, name(s.entry),
          out_of_time ? "the call's deadline came while in flight" : "cancelled while in flight"));
    } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory: the record stays bare
    }
  }

  // The current model is done for `why`: end the call, or walk to the next entry.
  FAILOVER_MACHINE_COLD void model_done(stop_reason why, time_point now) {
    // The model's last record says why it gave up, whichever step found it (a late wake-up, the
    // deadline or the cap found before a retry): the trace's "gave up on X" reads it.
    if (res().trace().size() > 0) {
      attempt_record& last = current();
      if (last.entry == index_ && !last.ok && last.stop == stop_reason::none) last.stop = why;
    }
    if (why == stop_reason::wait_past_deadline) out_of_time_ = true;
    if (why == stop_reason::cancelled || why == stop_reason::deadline) {
      const error_kind k =
          why == stop_reason::cancelled ? error_kind::cancelled : error_kind::deadline_exceeded;
      return finish(detail::stop_error(k, last_error(), model()), why);
    }
    // A model given up before any attempt passes on the failure that led to it (none for the
    // first model), and a skipped one is no hop.
    const bool untried = counters_.attempts == 0;
    if (untried && why == stop_reason::circuit_open) --models_tried_;
    const error_kind walk_kind = untried || !last_error() ? routing_ : last_error()->kind;
    const walk_decision w = next_entry(roles(), index_, walk_kind, why, models_tried_, opts());
    if (!w.next) {
      if (!last_call_ && earliest_reopen_) {  // every model considered is open
        const duration until = std::max(duration::zero(), earliest_reopen_->first - now);
        if (wait_for_reopen(opts(), waited_for_reopen_, until, time_left(now))) {
          waited_for_reopen_ = true;
          current().wait = until;
          current().why_wait = wait_reason::circuit;
          return wait(now, until, waiting_for::reopen);
        }
        return finish(detail::all_open_error(name(earliest_reopen_->second), until),
                      stop_reason::circuit_open);
      }
      // The last model called gave up because its next wait would cross the deadline, and
      // nothing after it answered or even ran (no entry, or only open circuits): the call ends at
      // the deadline, as if it had waited.
      if (out_of_time_ && (why == stop_reason::wait_past_deadline || untried) &&
          (w.stop == stop_reason::no_fallback || why == stop_reason::circuit_open))
        return finish(detail::stop_error(error_kind::deadline_exceeded, last_error(), model()),
                      stop_reason::deadline);
      if (!last_error())
        return finish(detail::stop_error(error_kind::deadline_exceeded, nullptr, model()),
                      stop_reason::deadline);
      return finish(*last_error(), w.stop == stop_reason::no_fallback ? why : w.stop);
    }
    notify(&hooks_type::on_fallback, fallback_taken{model(), name(*w.next), entries()[*w.next].role,
                                                    res().trace().attempts().back().error(), why});
    routing_ = walk_kind;
    index_ = *w.next;
    begin_model();
    next_attempt(now);
  }

  FAILOVER_MACHINE_COLD void finish(error e, stop_reason why) {
    res().set_error(std::move(e), why);
    notify(&hooks_type::on_give_up, gave_up{res().error(), why});
    phase_ = phase::done;
    out_.push(detail::action_queue::kind::done);
  }

  // Ends the call at once with an `unknown` error holding `cause`, saying that `what` threw. After
  // done it changes nothing: the call has its one outcome already.
  FAILOVER_MACHINE_COLD void end_with_exception(const char* what, std::exception_ptr cause,
                                                time_point now) noexcept {
    if (phase_ == phase::done) return;
    out_.clear();
    abandon_all(now, true);
    error e;
    e.kind = error_kind::unknown;
    e.exception = std::move(cause);
    try {
      if (index_ < plan().names->size()) e.model.assign(model().data(), model().size());
      e.message = detail::join({"failover: ", what, " threw; the call ended there"});
    } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory: the bare error still ends it
    }
    res().set_error(std::move(e), stop_reason::permanent_error);
    notify(&hooks_type::on_give_up, gave_up{res().error(), stop_reason::permanent_error});
    phase_ = phase::done;
    out_.push(detail::action_queue::kind::done);
  }

  Store store_;
  time_point start_;
  time_point last_now_;
  duration deadline_{};  // the call's deadline when has_deadline_ (two plain fields, read apart)
  std::size_t index_ = 0;
  int models_tried_ = 0;
  int total_ = 0;
  retry_counters counters_;
  // The small fields side by side, so that a new machine writes them in a few stores.
  bool has_deadline_ = false;
  bool out_of_time_ = false;  // a model gave up because its next wait would cross the deadline
  bool waited_for_reopen_ = false;
  phase phase_ = phase::idle;
  waiting_for waiting_ = waiting_for::retry;
  error_kind routing_ = error_kind::unknown;  // the failure that led to the current entry
  std::optional<std::size_t> last_call_;  // trace index of the latest attempt that called a model
  std::optional<time_point> share_end_;   // when the current model's share of the time ends
  duration wait_{};
  time_point wake_at_{};
  std::optional<std::pair<time_point, std::size_t>> earliest_reopen_;  // among skipped entries
  attempt_id adopted_ = 0;
  // Copied from the prototype at a model's first retry; what it throws comes out named.
  std::optional<detail::guarded_backoff<backoff_type>> backoff_;
  detail::attempt_table<tickets, max_in_flight> slots_;
  detail::action_queue out_;
};

}  // namespace failover
