// Saturating arithmetic on durations and time points: a sum or difference that would leave the
// representable range stops at its end instead of wrapping, so "wait forever" settings stay
// forever.
#pragma once

#include <chrono>
#include <limits>

namespace failover::detail {

// a + b, held within [min, max] of the representation.
template <class Rep, class Period>
constexpr std::chrono::duration<Rep, Period> sat_add(
    std::chrono::duration<Rep, Period> a, std::chrono::duration<Rep, Period> b) noexcept {
  using d = std::chrono::duration<Rep, Period>;
  const Rep x = a.count(), y = b.count();
  if (y > 0 && x > std::numeric_limits<Rep>::max() - y) return d::max();
  if (y < 0 && x < std::numeric_limits<Rep>::min() - y) return d::min();
  return d(x + y);
}

// a - b, held within [min, max] of the representation.
template <class Rep, class Period>
constexpr std::chrono::duration<Rep, Period> sat_sub(
    std::chrono::duration<Rep, Period> a, std::chrono::duration<Rep, Period> b) noexcept {
  using d = std::chrono::duration<Rep, Period>;
  const Rep x = a.count(), y = b.count();
  if (y < 0 && x > std::numeric_limits<Rep>::max() + y) return d::max();
  if (y > 0 && x < std::numeric_limits<Rep>::min() + y) return d::min();
  return d(x - y);
}

// t + d, held within the clock's range.
template <class Clock, class Dur>
constexpr std::chrono::time_point<Clock, Dur> sat_add(std::chrono::time_point<Clock, Dur> t,
                                                      Dur d) noexcept {
  return std::chrono::time_point<Clock, Dur>(sat_add(t.time_since_epoch(), d));
}

// a - b as a duration, held within its range.
template <class Clock, class Dur>
constexpr Dur sat_diff(std::chrono::time_point<Clock, Dur> a,
                       std::chrono::time_point<Clock, Dur> b) noexcept {
  return sat_sub(a.time_since_epoch(), b.time_since_epoch());
}

}  // namespace failover::detail
