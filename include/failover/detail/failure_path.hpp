// Marks code a call runs only when an attempt fails (classification, redaction, date parsing, the
// backoff draw) or once per chain: compiled for size, so a TU that wraps a call compiles faster.
#pragma once

// A failed attempt costs a network round trip, so size-optimised code there is never the cost a
// caller sees, and the success path is left as it is. Calls to it count as unlikely branches,
// which they are. Other compilers ignore the hint.
#if defined(__GNUC__) || defined(__clang__)
#define FAILOVER_FAILURE_PATH __attribute__((cold))
#else
#define FAILOVER_FAILURE_PATH
#endif
