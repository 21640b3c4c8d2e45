// Marks code a call runs only when an attempt fails (classification, redaction, date parsing, the
// backoff draw) or once per chain: compiled for size, so a TU that wraps a call compiles faster.
#pragma once

// A failed attempt costs a network round trip, so size-optimised code there is never the cost a
// caller sees, and the success path is left as it is. Calls to it count as unlikely branches,
// which they are. Other compilers ignore the hint.
// FAILOVER_FAILURE_STEP is the same, kept out of line as well: a helper many failure steps call
// (building an error, joining a message) is compiled once rather than inlined at each of them.
#if defined(__GNUC__) || defined(__clang__)
#define FAILOVER_FAILURE_PATH __attribute__((cold))
#define FAILOVER_FAILURE_STEP __attribute__((cold, noinline))
#elif defined(_MSC_VER)
#define FAILOVER_FAILURE_PATH
#define FAILOVER_FAILURE_STEP __declspec(noinline)
#else
#define FAILOVER_FAILURE_PATH
#define FAILOVER_FAILURE_STEP
#endif
