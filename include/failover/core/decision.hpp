// The decision core: pure functions that say what happens after a failed attempt (retry after a
// wait, or stop and why) and which chain entry comes next. No clock, no sleep, no I/O, no threads:
// every input is an argument, so the blocking driver, tests and simulations share one set of rules.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string_view>

#include "failover/core/error.hpp"
#include "failover/detail/saturate.hpp"

namespace failover {

// Why a model (or the whole call) stopped.
enum class stop_reason : std::uint8_t {
  none,  // not stopped: retried, or succeeded
  succeeded,
  permanent_error,           // the classifier said a retry cannot help
  attempts_exhausted,        // retry_options::max_attempts reached on this model
  read_timeouts_exhausted,   // retry_options::max_read_timeout_retries used up
  server_wait_too_long,      // the server asked for more than retry_options::max_server_wait
  deadline,                  // no time left, or the next wait would cross the deadline
  cancelled,                 // the cancel token fired
  total_attempts_exhausted,  // chain_options::max_total_attempts reached
  hop_limit,                 // chain_options::max_hops models tried
  no_fallback,               // no later entry accepts this failure
  bad_request,               // a malformed request ends the chain (unless opted in)
  circuit_open,              // skipped: the model's circuit is open
  budget_exhausted,          // the shared retry budget refused a retry
  // This model gave up, another may take over: the next wait would not fit in the time this model
  // may use (what is left before the deadline, less chain_options::fallback_reserve's share when a
  // later entry could take over).
  wait_past_deadline,
  read_timeout_fallback,  // a read timeout, and a later entry can take over: no second request
};

constexpr std::string_view to_string(stop_reason r) noexcept {
  switch (r) {
    case stop_reason::none:
      return "none";
    case stop_reason::succeeded:
      return "succeeded";
    case stop_reason::permanent_error:
      return "permanent error";
    case stop_reason::attempts_exhausted:
      return "attempts exhausted";
    case stop_reason::read_timeouts_exhausted:
      return "read-timeout retries exhausted";
    case stop_reason::server_wait_too_long:
      return "server wait too long";
    case stop_reason::deadline:
      return "deadline";
    case stop_reason::cancelled:
      return "cancelled";
    case stop_reason::total_attempts_exhausted:
      return "total attempts exhausted";
    case stop_reason::hop_limit:
      return "hop limit";
    case stop_reason::no_fallback:
      return "no fallback accepts this failure";
    case stop_reason::bad_request:
      return "bad request ends the chain";
    case stop_reason::circuit_open:
      return "circuit open";
    case stop_reason::budget_exhausted:
      return "no retry: budget exhausted";
    case stop_reason::wait_past_deadline:
      return "wait would cross the deadline";
    case stop_reason::read_timeout_fallback:
      return "read timeout, a fallback takes over";
  }
  return "none";
}

// Why a wait was as long as it was.
enum class wait_reason : std::uint8_t {
  none,
  backoff,  // the Backoff policy's jittered delay
  server,   // the server's requested wait, plus the jittered delay on top
  circuit,  // every model was open: waiting for the earliest to allow a probe
};

constexpr std::string_view to_string(wait_reason r) noexcept {
  switch (r) {
    case wait_reason::none:
      return "none";
    case wait_reason::backoff:
      return "backoff";
    case wait_reason::server:
      return "server";
    case wait_reason::circuit:
      return "circuit";
  }
  return "none";
}

// Which failures a chain entry takes over from an earlier model.
enum class role : std::uint8_t {
  standard,        // after any failure, except content-policy refusals (and bad requests)
  context_window,  // only after a context_window failure
  content_policy,  // only after a content_policy refusal; opt-in, always reported
};

constexpr std::string_view to_string(role r) noexcept {
  switch (r) {
    case role::standard:
      return "standard";
    case role::context_window:
      return "context-window";
    case role::content_policy:
      return "content-policy";
  }
  return "standard";
}

// Stop rules for one model.
struct retry_options {
  int max_attempts = 5;  // attempts in all on this model, the first included
  // Retries after a read timeout, used only when no later entry can take over: the model may still
  // be working (and billing), so a second identical request rarely helps while a fallback might.
  int max_read_timeout_retries = 1;
  duration max_server_wait = std::chrono::seconds(60);  // longer server waits: fall back now

  void validate() const {
    if (max_attempts < 1)
      throw std::invalid_argument("failover::retry_options: max_attempts must be >= 1");
    if (max_read_timeout_retries < 0)
      throw std::invalid_argument("failover::retry_options: max_read_timeout_retries must be >= 0");
    if (max_server_wait < duration::zero())
      throw std::invalid_argument("failover::retry_options: max_server_wait must be >= 0");
  }
};

// Bounds for a whole call through a chain.
struct chain_options {
  int max_hops = 5;             // models tried in one call, the first included
  int max_total_attempts = 10;  // attempts across all models, so nested retries cannot multiply
  std::optional<duration> deadline;        // for the whole call, waits included; none = no deadline
  bool fallback_on_bad_request = false;    // a 400/422 normally fails everywhere: stop
  bool context_window_to_standard = true;  // with no context-window entry left, try standard ones
  // When every model's circuit is open: false = fail at once (the error says when the earliest
  // reopens); true = wait for it if that fits the deadline, then try it (once per call).
  bool wait_for_open_circuit = false;
  // With a deadline: the part of the time left when a model starts that its attempts and waits
  // leave to the entries after it, when one of them could take over. 0.5: a primary that hangs or
  // keeps failing uses at most half of what is left, and its fallback still gets the other half.
  // 0 = a model may use all the time left (its fallback then gets only what the model left over).
  double fallback_reserve = 0.5;

  void validate() const {
    if (max_hops < 1) throw std::invalid_argument("failover::chain_options: max_hops must be >= 1");
    if (max_total_attempts < 1)
      throw std::invalid_argument("failover::chain_options: max_total_attempts must be >= 1");
    if (deadline && *deadline <= duration::zero())
      throw std::invalid_argument("failover::chain_options: deadline must be > 0");
    if (!(fallback_reserve >= 0.0 && fallback_reserve < 1.0))  // also catches NaN
      throw std::invalid_argument(
          "failover::chain_options: fallback_reserve must be in [0, 1) (a share of the time left)");
  }
};

// What the attempts so far on one model (and in the whole call) add up to.
struct retry_counters {
  int attempts = 0;        // on this model, the failed one included
  int read_timeouts = 0;   // read timeouts on this model, the failed one included
  int total_attempts = 0;  // in the whole call
};

struct retry_decision {
  bool retry = false;
  duration wait = duration::zero();
  wait_reason reason = wait_reason::none;
  stop_reason stop = stop_reason::none;
};

// Before any attempt (a first one, a retry, or a fallback's first): may it start? Returns
// stop_reason::none when it may, else why not. The total cap is checked here, not only after
// transient failures, so that permanent failures on many models cannot exceed it either.
constexpr stop_reason decide_start(const chain_options& o, bool cancelled, int attempts_so_far,
                                   std::optional<duration> remaining) noexcept {
  if (cancelled) return stop_reason::cancelled;
  if (remaining && *remaining <= duration::zero()) return stop_reason::deadline;
  if (attempts_so_far >= o.max_total_attempts) return stop_reason::total_attempts_exhausted;
  return stop_reason::none;
}

// After a failed attempt: retry (and after how long) or stop (and why).
//  - `backoff_delay` is what the Backoff policy drew for this retry; it is only a wait, never a
//    verdict. When the server asked for a wait S, the wait is S + backoff_delay: S is a floor, and
//    the jittered part keeps clients that were told the same S from returning in the same instant.
//  - `remaining` is the time this model may still use (model_time(); none = no deadline). A wait
//    that does not fit in it ends this model's retries (wait_past_deadline): the walk goes on to a
//    later entry at once, and only when none can take over does the call end at the deadline.
//  - `can_fall_back`: a later entry would take over this failure (fallback_exists()). After a read
//    timeout it does at once; the same model is retried only when nothing else can answer.
constexpr retry_decision decide_retry(const retry_options& o, int max_total_attempts,
                                      const error& e, const retry_counters& c,
                                      duration backoff_delay, std::optional<duration> remaining,
                                      bool can_fall_back = false) noexcept {
  retry_decision d;
  if (e.kind == error_kind::cancelled) {
    d.stop = stop_reason::cancelled;
  } else if (e.kind == error_kind::deadline_exceeded) {
    d.stop = stop_reason::deadline;
  } else if (!e.transient) {
    d.stop = stop_reason::permanent_error;
  } else if (c.total_attempts >= max_total_attempts) {
    d.stop = stop_reason::total_attempts_exhausted;
  } else if (c.attempts >= o.max_attempts) {
    d.stop = stop_reason::attempts_exhausted;
  } else if (e.kind == error_kind::read_timeout && can_fall_back) {
    d.stop = stop_reason::read_timeout_fallback;
  } else if (e.kind == error_kind::read_timeout && c.read_timeouts > o.max_read_timeout_retries) {
    d.stop = stop_reason::read_timeouts_exhausted;
  } else if (e.retry_after && *e.retry_after > o.max_server_wait) {
    d.stop = stop_reason::server_wait_too_long;
  } else {
    const duration jitter_part =
        backoff_delay < duration::zero() ? duration::zero() : backoff_delay;
    d.wait = e.retry_after
                 ? detail::sat_add(std::max(*e.retry_after, duration::zero()), jitter_part)
                 : jitter_part;
    d.reason = e.retry_after ? wait_reason::server : wait_reason::backoff;
    if (remaining && d.wait >= *remaining) {
      d.stop = stop_reason::wait_past_deadline;
      d.wait = duration::zero();
      d.reason = wait_reason::none;
    } else {
      d.retry = true;
    }
  }
  return d;
}

// Does an entry with role `r` take over after failure kind `k`?
constexpr bool accepts(role r, error_kind k, const chain_options& o) noexcept {
  switch (k) {
    case error_kind::content_policy:
      return r == role::content_policy;
    case error_kind::context_window:
      return r == role::context_window || (o.context_window_to_standard && r == role::standard);
    default:
      return r == role::standard;
  }
}

struct walk_decision {
  std::optional<std::size_t> next;       // the entry to try next
  stop_reason stop = stop_reason::none;  // why the call ends, when there is no next
};

// After model `current` gave up (its retries ended for `why`, the failure being routed has kind
// `kind`): the next entry, or the end of the call. The walk only goes forward; a context_window
// failure prefers a context-window entry over an earlier standard one.
template <class Roles>
constexpr walk_decision next_entry(const Roles& roles, std::size_t current, error_kind kind,
                                   stop_reason why, int models_tried,
                                   const chain_options& o) noexcept {
  walk_decision w;
  if (why == stop_reason::cancelled || why == stop_reason::deadline ||
      why == stop_reason::total_attempts_exhausted) {
    w.stop = why;
    return w;
  }
  if (kind == error_kind::bad_request && !o.fallback_on_bad_request) {
    w.stop = stop_reason::bad_request;
    return w;
  }
  const std::size_t n = std::size(roles);
  std::optional<std::size_t> found;
  if (kind == error_kind::context_window) {
    for (std::size_t i = current + 1; i < n && !found; ++i)
      if (roles[i] == role::context_window) found = i;
  }
  for (std::size_t i = current + 1; i < n && !found; ++i)
    if (accepts(roles[i], kind, o)) found = i;
  if (!found) {
    w.stop = stop_reason::no_fallback;
    return w;
  }
  if (models_tried >= o.max_hops) {
    w.stop = stop_reason::hop_limit;
    return w;
  }
  w.next = found;
  return w;
}

template <class Roles>
constexpr walk_decision next_entry(const Roles& roles, std::size_t current, const error& last,
                                   stop_reason why, int models_tried,
                                   const chain_options& o) noexcept {
  return next_entry(roles, current, last.kind, why, models_tried, o);
}

// Whether a later entry would take over from model `current` after a failure of kind `kind`
// (error_kind::unknown: after any ordinary failure), within the hop limit, and within the attempt
// cap once `attempts_after` attempts have been made.
template <class Roles>
constexpr bool fallback_exists(const Roles& roles, std::size_t current, error_kind kind,
                               int models_tried, const chain_options& o,
                               int attempts_after = 0) noexcept {
  if (attempts_after >= o.max_total_attempts) return false;
  return next_entry(roles, current, kind, stop_reason::none, models_tried, o).next.has_value();
}

// The time a model may use, from the moment it starts, out of `left` before the call's deadline:
// all of it, or, when a later entry could take over, all but chain_options::fallback_reserve's
// share, so that a model that hangs or keeps failing still leaves its fallback time to answer.
// Never zero while time is left: a share that rounds to nothing is the smallest there is.
constexpr duration model_time(duration left, bool has_fallback, const chain_options& o) noexcept {
  if (!has_fallback || !(o.fallback_reserve > 0.0) || left <= duration(1)) return left;
  // The reserved part, in [0, left - 1]: computed as a part of `left`, never converted back
  // from a double that could round up past the representable range.
  const double reserved = static_cast<double>(left.count()) * o.fallback_reserve;
  const duration::rep most = left.count() - 1;
  const duration::rep r = reserved >= static_cast<double>(most)
                              ? most
                              : static_cast<duration::rep>(std::max(reserved, 0.0));
  return duration(left.count() - r);
}

// When every model a call considered was skipped because its circuit was open: wait for the
// earliest to allow a probe (if the chain opts in, it has not waited yet, and the wait fits the
// time left), or give up now.
constexpr bool wait_for_reopen(const chain_options& o, bool already_waited, duration until_reopen,
                               std::optional<duration> remaining) noexcept {
  return o.wait_for_open_circuit && !already_waited && (!remaining || until_reopen < *remaining);
}

// The first entry a call tries: the first standard one.
template <class Roles>
constexpr std::optional<std::size_t> first_entry(const Roles& roles) noexcept {
  for (std::size_t i = 0; i < std::size(roles); ++i)
    if (roles[i] == role::standard) return i;
  return std::nullopt;
}

}  // namespace failover
