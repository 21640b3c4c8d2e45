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

// Separate compilation, opt-in. By default every function of the library is inline and defined
// in its header. A program built with FAILOVER_SEPARATE_COMPILATION defined in every translation
// unit gets declarations only for the non-template functions marked FAILOVER_DECL (the failure
// path: classification, redaction, date parsing, the backoff draw, the errors a call stops with),
// and one of its .cpp files defines them by including <failover/compiled.hpp>. What a unit that
// wraps a call compiles is then the call's templates alone.
//   FAILOVER_DECL             `inline` by default; nothing under separate compilation.
//   FAILOVER_DEFINE_COMPILED  1 where the definitions of FAILOVER_DECL functions are compiled:
//                             every unit by default, <failover/compiled.hpp>'s unit alone under
//                             separate compilation.
#if defined(FAILOVER_SEPARATE_COMPILATION)
#define FAILOVER_DECL
#if defined(FAILOVER_COMPILED_SOURCE)
#define FAILOVER_DEFINE_COMPILED 1
#else
#define FAILOVER_DEFINE_COMPILED 0
#endif
#else
#define FAILOVER_DECL inline
#define FAILOVER_DEFINE_COMPILED 1
#endif
// Lets <failover/compiled.hpp> see that a header with FAILOVER_DECL functions came before it.
#define FAILOVER_DECL_HEADERS_SEEN 1
