// failover: keeps applications working when the LLM APIs they call fail. Retry with backoff and
// jitter, honour the server's wait, fall back to other models, and show every step in a trace.
#pragma once

#define FAILOVER_VERSION_MAJOR 0
#define FAILOVER_VERSION_MINOR 2
#define FAILOVER_VERSION_PATCH 0

#include "failover/core/backoff.hpp"
#include "failover/core/classifier.hpp"
#include "failover/core/clock.hpp"
#include "failover/core/completion.hpp"
#include "failover/core/context.hpp"
#include "failover/core/decision.hpp"
#include "failover/core/error.hpp"
#include "failover/core/outcome.hpp"
#include "failover/core/remedy.hpp"
#include "failover/core/retry_after.hpp"
#include "failover/drivers/blocking.hpp"
#include "failover/drivers/callback.hpp"
#include "failover/fallback_chain.hpp"
#include "failover/format.hpp"
#include "failover/gates/breaker.hpp"
#include "failover/gates/budget.hpp"
#include "failover/gates/gate.hpp"
#include "failover/gates/gate_set.hpp"
#include "failover/machine/call_machine.hpp"
#include "failover/machine/callback_hooks.hpp"
#include "failover/machine/hooks.hpp"
#include "failover/policies.hpp"
#include "failover/resilient_policies.hpp"
#include "failover/retrier.hpp"
