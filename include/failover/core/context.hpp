// What each attempt is told (model, attempt number, time left, cancellation) and what each call may
// set (its own deadline and cancel token).
#pragma once

#include <algorithm>
#include <optional>
#include <string_view>

#include "failover/core/clock.hpp"
#include "failover/core/error.hpp"

namespace failover {

// Passed to the user callable for each attempt. Valid during that attempt only: `model` and
// `cancel` refer to the chain and the call, so copy what you need to keep.
struct attempt_context {
  std::string_view model;  // the chain entry's name
  int attempt = 1;         // on this model, from 1
  int total_attempt = 1;   // in this call, from 1
  // The time this attempt may use (none = no deadline): what is left before the call's deadline,
  // or less when a later entry could take over (chain_options::fallback_reserve, model_time()).
  std::optional<duration> remaining;
  const cancel_token* cancel = nullptr;

  // A timeout for this attempt's own I/O: `wanted`, shrunk so it never runs past the deadline.
  duration timeout(duration wanted) const noexcept {
    return remaining ? std::min(wanted, std::max(*remaining, duration::zero())) : wanted;
  }
  bool cancelled() const noexcept { return cancel && cancel->cancelled(); }
};

// Per-call settings.
struct call_options {
  std::optional<duration> deadline;  // the earlier of this and the chain's deadline applies
  cancel_token token;                // checked before each attempt and during each wait
};

namespace detail {
// What run() passes for "no per-call settings": one shared constant instead of a temporary
// built and destroyed by every call.
inline const call_options no_call_options{};
}  // namespace detail

}  // namespace failover
