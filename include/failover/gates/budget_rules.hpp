// The retry budget's rules as pure functions over its plain state: a token bucket that successes
// fill by a ratio and time fills by a floor, and that each retry empties by one token.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include "failover/core/clock.hpp"

namespace failover {

struct budget_options {
  // Tokens a success earns. With the floor, retries stay near 20% of calls: at 100 calls/s, 1.19
  // upstream calls per offered call during an outage (docs/benchmarks.md).
  double retry_ratio = 0.18;
  double min_retries_per_second = 1.0;  // the floor, earned by time alone
  double max_tokens = 20.0;             // the most a quiet period can save up
  double initial_tokens = 10.0;         // what a new budget starts with

  void validate() const {
    auto bad = [](const char* what) {
      throw std::invalid_argument(std::string("failover::budget_options: ") + what);
    };
    if (!(retry_ratio >= 0.0) || !std::isfinite(retry_ratio)) bad("retry_ratio must be >= 0");
    if (!(min_retries_per_second >= 0.0) || !std::isfinite(min_retries_per_second))
      bad("min_retries_per_second must be >= 0");
    if (!(max_tokens >= 1.0) || !(max_tokens <= 1e9)) bad("max_tokens must be in [1, 1e9]");
    if (!(retry_ratio <= 1e9)) bad("retry_ratio must be <= 1e9");
    if (!(min_retries_per_second <= 1e9)) bad("min_retries_per_second must be <= 1e9");
    if (!(initial_tokens >= 0.0) || initial_tokens > max_tokens)
      bad("initial_tokens must be in [0, max_tokens]");
  }
};

namespace budget_rules {

// Tokens are fixed-point, a millionth of a token each: whole words, so that a store can update
// them with one compare-and-set.
inline constexpr std::int64_t one_token = 1'000'000;

// The last refill's time before the first retry was asked for.
inline constexpr std::int64_t never = std::numeric_limits<std::int64_t>::min();

// The options in the bucket's units, computed once.
struct limits {
  std::int64_t max_micro = 0;
  std::int64_t earn_per_success = 0;
  double per_second = 0.0;  // the floor
};

inline limits limits_of(const budget_options& o) noexcept {
  return {static_cast<std::int64_t>(o.max_tokens * one_token),
          static_cast<std::int64_t>(o.retry_ratio * one_token), o.min_retries_per_second};
}

// The whole bucket. Two words move: `micro_tokens` and `last_refill_ns`; the counts feed snapshots.
struct state {
  std::int64_t micro_tokens = 0;
  std::int64_t last_refill_ns = never;
  std::uint64_t first_attempts = 0;
  std::uint64_t retries_allowed = 0;
  std::uint64_t retries_refused = 0;
  std::uint64_t successes = 0;
};

inline state fresh(const budget_options& o) noexcept {
  state s;
  s.micro_tokens = static_cast<std::int64_t>(o.initial_tokens * one_token);
  return s;
}

// ---- one word at a time (what a compare-and-set loop runs) -----------------------------------

// The tokens after `micro` more are earned: never above the cap, and a bucket already at (or
// above) the cap is left as it is.
inline std::int64_t earn(std::int64_t have, std::int64_t micro, const limits& l) noexcept {
  if (micro <= 0 || have >= l.max_micro) return have;
  return std::min(l.max_micro, have + micro);
}

// The tokens after one retry is paid for, or nothing when a whole token is not there.
inline std::optional<std::int64_t> spend(std::int64_t have) noexcept {
  if (have < one_token) return std::nullopt;
  return have - one_token;
}

// The floor: min_retries_per_second tokens per second of elapsed time, credited lazily. The first
// ask only starts the clock; less than a millionth of a token leaves the clock where it was, so
// frequent asks still add up.
struct refill_step {
  std::int64_t last_refill_ns;  // the clock to store (unchanged: nothing to do)
  std::int64_t earned_micro;    // what moving the clock there earns
};

inline refill_step refill(std::int64_t last_ns, std::int64_t now_ns, const limits& l) noexcept {
  if (l.per_second <= 0.0) return {last_ns, 0};
  if (last_ns == never) return {now_ns, 0};
  if (now_ns <= last_ns) return {last_ns, 0};
  const double earned = static_cast<double>(now_ns - last_ns) * 1e-9 * l.per_second * one_token;
  if (earned < 1.0) return {last_ns, 0};
  return {now_ns, static_cast<std::int64_t>(std::min(earned, static_cast<double>(l.max_micro)))};
}

// ---- the whole bucket ----------------------------------------------------------------------

// A call's first attempt: always allowed (it is counted, not charged).
inline void on_first_attempt(state& s) noexcept {
  ++s.first_attempts;
}

// A success earns retry_ratio tokens, up to max_tokens.
inline void on_success(state& s, const limits& l) noexcept {
  ++s.successes;
  s.micro_tokens = earn(s.micro_tokens, l.earn_per_success, l);
}

// Before a retry: the floor is credited, then one token is spent if there is one. False means:
// do not retry, fall back.
inline bool try_retry(state& s, const limits& l, time_point now) noexcept {
  const refill_step r = refill(s.last_refill_ns, now.time_since_epoch().count(), l);
  s.last_refill_ns = r.last_refill_ns;
  s.micro_tokens = earn(s.micro_tokens, r.earned_micro, l);
  if (const auto left = spend(s.micro_tokens)) {
    s.micro_tokens = *left;
    ++s.retries_allowed;
    return true;
  }
  ++s.retries_refused;
  return false;
}

}  // namespace budget_rules
}  // namespace failover
