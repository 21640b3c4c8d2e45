// failover: keeps applications working when the LLM APIs they call fail. Retry with backoff and
// jitter, honour the server's wait, fall back to other models, and show every step in a trace.
#pragma once

#define FAILOVER_VERSION_MAJOR 0
#define FAILOVER_VERSION_MINOR 2
#define FAILOVER_VERSION_PATCH 0

#include "failover/backoff.hpp"
#include "failover/callback_hooks.hpp"
#include "failover/circuit_breaker.hpp"
#include "failover/classifier.hpp"
#include "failover/clock.hpp"
#include "failover/completion.hpp"
#include "failover/context.hpp"
#include "failover/decision.hpp"
#include "failover/drivers/blocking.hpp"
#include "failover/drivers/callback.hpp"
#include "failover/error.hpp"
#include "failover/fallback_chain.hpp"
#include "failover/format.hpp"
#include "failover/gates/gate.hpp"
#include "failover/gates/gate_set.hpp"
#include "failover/hooks.hpp"
#include "failover/machine/call_machine.hpp"
#include "failover/outcome.hpp"
#include "failover/policies.hpp"
#include "failover/remedy.hpp"
#include "failover/resilient_policies.hpp"
#include "failover/retrier.hpp"
#include "failover/retry_after.hpp"
#include "failover/retry_budget.hpp"
