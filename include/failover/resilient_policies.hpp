// Shared health switched on: the policy bundle with a circuit breaker per model and a retry budget.
// Its own header, so that a chain on the default policies does not compile the breaker or the
// budget.
#pragma once

#include "failover/gates/breaker.hpp"
#include "failover/gates/budget.hpp"
#include "failover/policies.hpp"

namespace failover {

// A circuit breaker per model and a retry budget, both shared by every chain that is given the
// same breaker and budget objects (set_breaker(), budget()).
struct resilient_policies : default_policies {
  using breaker = failover::circuit_breaker;
  using budget = failover::retry_budget;
};

}  // namespace failover
