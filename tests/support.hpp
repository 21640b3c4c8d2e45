// Helpers shared by the unit tests: exact (jitter-free) backoff and retry options in one line.
#pragma once

#include <chrono>

#include <failover/core/backoff.hpp>
#include <failover/core/decision.hpp>

namespace failover_test {

// Waits of exactly base, 2*base, 4*base, ...: tests can assert each one.
inline failover::exponential_backoff<> exact(failover::duration base,
                                             failover::duration cap = std::chrono::hours(1)) {
  return failover::exponential_backoff<>(
      failover::backoff_options{base, 2.0, cap, failover::jitter::none});
}

inline failover::retry_options attempts(int n) {
  failover::retry_options o;
  o.max_attempts = n;
  return o;
}

}  // namespace failover_test
