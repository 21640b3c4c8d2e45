// The circuit breaker's rules as pure functions over one key's plain state: what a call is told
// (admit) and what an answer does (on_success, on_failure), with no lock, clock read or allocation.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "failover/core/clock.hpp"
#include "failover/core/error.hpp"
#include "failover/gates/gate.hpp"

namespace failover {

enum class circuit_state : std::uint8_t { closed, open, half_open };

constexpr std::string_view to_string(circuit_state s) noexcept {
  switch (s) {
    case circuit_state::closed:
      return "closed";
    case circuit_state::open:
      return "open";
    case circuit_state::half_open:
      return "half-open";
  }
  return "closed";
}

// Defaults and why: docs/architecture.md ("Shared health").
struct breaker_options {
  int consecutive_failures = 5;  // transient failures in a row that open the circuit
  double failure_ratio = 0.5;    // or this share of failures over the window...
  int min_calls = 20;            // ...once the window holds at least this many calls
  duration window = std::chrono::seconds(30);
  duration cooldown = std::chrono::seconds(30);      // the first open period
  double cooldown_multiplier = 2.0;                  // each failed probe lengthens it...
  duration max_cooldown = std::chrono::seconds(60);  // ...up to this: probes are cheap
  int half_open_probes = 1;                          // calls let through at once while half-open
  bool open_on_auth_errors = true;  // unauthorized / forbidden / not_found open at once

  void validate() const {
    auto bad = [](const char* what) {
      throw std::invalid_argument(std::string("failover::breaker_options: ") + what);
    };
    constexpr duration year = std::chrono::hours(24 * 365);
    if (consecutive_failures < 1) bad("consecutive_failures must be >= 1");
    if (!(failure_ratio > 0.0 && failure_ratio <= 1.0)) bad("failure_ratio must be in (0, 1]");
    if (min_calls < 1) bad("min_calls must be >= 1");
    if (window <= duration::zero() || window > year) bad("window must be in (0, 1 year]");
    if (cooldown <= duration::zero() || cooldown > year) bad("cooldown must be in (0, 1 year]");
    if (!(cooldown_multiplier >= 1.0) || cooldown_multiplier > 1e6)
      bad("cooldown_multiplier must be in [1, 1e6]");
    if (max_cooldown < cooldown || max_cooldown > year)
      bad("max_cooldown must be in [cooldown, 1 year]");
    if (half_open_probes < 1) bad("half_open_probes must be >= 1");
  }
};

namespace breaker_rules {

inline constexpr int window_buckets = 10;

// Marks a bucket that holds no calls: below any epoch a clock can produce.
inline constexpr std::int64_t unused_epoch = std::numeric_limits<std::int64_t>::min();

// One tenth of the sliding window: the calls and failures seen while the clock was in its epoch.
struct window_bucket {
  std::int64_t epoch = unused_epoch;
  std::int32_t calls = 0;
  std::int32_t failed = 0;
};

// Everything the rules know about one key. Plain data: a store may copy it, serialize it, or keep
// it under a lock; the counters at the end only feed snapshots.
struct state {
  circuit_state mode = circuit_state::closed;
  time_point open_until{};
  duration cooldown{};       // the current open period: grows with failed probes, reset on close
  int probes = 0;            // half-open probes out now
  time_point probe_since{};  // when the current half-open period's first probe went
  bool tripped = false;      // opened by failures (needs a probe), not only held by a server
  int consecutive = 0;       // counted failures since the last success
  std::array<window_bucket, window_buckets> window{};
  std::uint64_t successes = 0;  // since creation
  std::uint64_t failures = 0;   // counted failures since creation
  std::uint64_t rejected = 0;   // calls refused while open / half-open
  std::uint64_t opened = 0;     // times it opened
};

// A state change a rule made, for the listener: `until` is when an open key may be probed (the
// time of the change, for a close). A change to open was caused by the failure being reported.
struct change {
  circuit_state from = circuit_state::closed;
  circuit_state to = circuit_state::closed;
  time_point until{};
};

struct admit_result {
  admission verdict;
  std::optional<change> changed;
};

inline state fresh(const breaker_options& o) noexcept {
  state s;
  s.cooldown = o.cooldown;
  return s;
}

// Does this error say something about the model (rather than about the request)?
inline bool counts_against_model(const error& e) noexcept {
  switch (e.kind) {
    case error_kind::bad_request:
    case error_kind::content_policy:
    case error_kind::context_window:
    case error_kind::cancelled:
    case error_kind::deadline_exceeded:
    case error_kind::circuit_open:
      return false;
    default:
      // Other 4xx and unmapped exceptions (kind unknown, permanent) say nothing about the model.
      return e.transient || e.kind == error_kind::unauthorized || e.kind == error_kind::forbidden ||
             e.kind == error_kind::not_found;
  }
}

// A server's requested wait holds the key only on 429, 503 and 529: answers that speak for the
// model as a whole, not for this one request.
inline bool holds_model(const error& e) noexcept {
  if (!e.retry_after || *e.retry_after <= duration::zero()) return false;
  if (e.kind == error_kind::rate_limited || e.kind == error_kind::overloaded) return true;
  return e.kind == error_kind::server_error && e.status && *e.status == 503;
}

inline bool opens_at_once(const error& e, const breaker_options& o) noexcept {
  return o.open_on_auth_errors &&
         (e.kind == error_kind::unauthorized || e.kind == error_kind::forbidden ||
          e.kind == error_kind::not_found);
}

// ---- the sliding window --------------------------------------------------------------------

inline std::int64_t bucket_epoch(time_point now, const breaker_options& o) noexcept {
  const auto width = std::max<std::int64_t>(1, o.window.count() / window_buckets);
  return now.time_since_epoch().count() / width;
}

inline std::size_t bucket_index(std::int64_t epoch) noexcept {
  return static_cast<std::size_t>(((epoch % window_buckets) + window_buckets) % window_buckets);
}

// Adds calls to the bucket of `epoch`; a bucket that holds another epoch is emptied first.
inline void add_calls(state& s, std::int64_t epoch, std::int32_t calls,
                      std::int32_t failed) noexcept {
  window_bucket& b = s.window[bucket_index(epoch)];
  if (b.epoch != epoch) b = window_bucket{epoch, 0, 0};
  b.calls += calls;
  b.failed += failed;
}

inline bool ratio_exceeded(const state& s, const breaker_options& o, time_point now) noexcept {
  const std::int64_t ep = bucket_epoch(now, o);
  std::int64_t calls = 0, failed = 0;
  for (const auto& b : s.window) {
    if (b.epoch != unused_epoch && b.epoch <= ep && b.epoch > ep - window_buckets) {
      calls += b.calls;
      failed += b.failed;
    }
  }
  return calls >= o.min_calls &&
         static_cast<double>(failed) >= o.failure_ratio * static_cast<double>(calls);
}

// ---- the transitions -----------------------------------------------------------------------

// Before a call. Closed admits and changes nothing (a store may answer it without the state).
inline admit_result admit(state& s, const breaker_options& o, time_point now) noexcept {
  admit_result r;
  if (s.mode == circuit_state::open) {
    if (now < s.open_until) {
      ++s.rejected;
      r.verdict = {false, false, s.open_until};
      return r;
    }
    if (!s.tripped) {  // held only by a server's wait, which is over: no probe needed
      s.mode = circuit_state::closed;
      r.changed = change{circuit_state::open, circuit_state::closed, now};
      return r;
    }
    s.mode = circuit_state::half_open;
    s.probes = 0;
    r.changed = change{circuit_state::open, circuit_state::half_open, s.open_until};
  }
  if (s.mode == circuit_state::half_open) {
    // A probe that never reported (its call was abandoned, or its result lost) must not wedge
    // the key: after a cooldown its slot is free again.
    if (s.probes >= o.half_open_probes && now - s.probe_since >= s.cooldown) s.probes = 0;
    if (s.probes < o.half_open_probes) {
      if (s.probes == 0) s.probe_since = now;
      ++s.probes;
      r.verdict = {true, true, s.open_until};
      return r;
    }
    ++s.rejected;
    r.verdict = {false, false, now};  // a probe is out: come back when it has answered
  }
  return r;
}

// The part of a success that commutes with every other success: its count, the end of a failure
// run, a call in the window. A store may defer it (and fold it in before the next rule runs).
inline void count_success(state& s, const breaker_options& o, time_point now) noexcept {
  ++s.successes;
  s.consecutive = 0;
  add_calls(s, bucket_epoch(now, o), 1, 0);
}

// The rest of a success: a probe frees its slot, and a key past its open period closes.
inline std::optional<change> settle_success(state& s, const breaker_options& o, time_point now,
                                            bool probe) noexcept {
  const circuit_state from = s.mode;
  if (probe && s.probes > 0 && from == circuit_state::half_open) --s.probes;
  if (from == circuit_state::closed || now < s.open_until) return std::nullopt;
  s.mode = circuit_state::closed;
  s.cooldown = o.cooldown;
  s.tripped = false;
  s.window = {};  // the calls from before the close say nothing about the model now
  s.consecutive = 0;
  return change{from, circuit_state::closed, now};
}

// Does settle_success have anything to do? Only for a probe or a key that is not closed.
inline bool success_settles(circuit_state mode, bool probe) noexcept {
  return probe || mode != circuit_state::closed;
}

inline std::optional<change> on_success(state& s, const breaker_options& o, time_point now,
                                        bool probe) noexcept {
  count_success(s, o, now);
  return settle_success(s, o, now, probe);
}

// After a failed call (or one given up: a cancelled probe frees its slot and counts nothing).
inline std::optional<change> on_failure(state& s, const breaker_options& o, time_point now,
                                        const error& e, bool probe) noexcept {
  const bool counts = counts_against_model(e);
  const circuit_state from = s.mode;
  if (probe && s.probes > 0 && from == circuit_state::half_open) --s.probes;
  // A server's requested wait holds the key until then (at most max_cooldown: a probe a minute
  // is cheap, a year-long hold from one header is not), whatever the counters say.
  std::optional<time_point> server_until;
  if (holds_model(e)) server_until = now + std::min<duration>(*e.retry_after, o.max_cooldown);
  if (!counts && !server_until) return std::nullopt;
  bool trip = false;
  if (counts) {
    ++s.failures;
    const int run = ++s.consecutive;
    add_calls(s, bucket_epoch(now, o), 1, 1);
    trip = from == circuit_state::half_open || run >= o.consecutive_failures ||
           opens_at_once(e, o) || ratio_exceeded(s, o, now);
  }
  if (!trip && !server_until) return std::nullopt;
  time_point until = server_until.value_or(now);
  if (trip) {
    if (from == circuit_state::half_open) {  // a failed probe: back off longer, within bounds
      const double next = std::chrono::duration<double>(s.cooldown).count() * o.cooldown_multiplier;
      s.cooldown = std::min<duration>(
          o.max_cooldown,
          std::chrono::duration_cast<duration>(std::chrono::duration<double>(
              std::min(next, std::chrono::duration<double>(o.max_cooldown).count()))));
    }
    until = std::max(until, now + s.cooldown);
    s.tripped = true;
  }
  // Re-opening keeps the later deadline, never the shorter one.
  if (from == circuit_state::open) until = std::max(until, s.open_until);
  s.open_until = until;
  if (from == circuit_state::open) return std::nullopt;
  if (!trip) s.tripped = from == circuit_state::half_open;  // a held half-open key stays tripped
  s.mode = circuit_state::open;
  ++s.opened;
  return change{from, circuit_state::open, s.open_until};
}

// Would a call at `t` be refused? Read-only: no transition, no counter.
inline bool would_refuse(const state& s, time_point t) noexcept {
  return s.mode == circuit_state::open && t < s.open_until;
}

}  // namespace breaker_rules
}  // namespace failover
