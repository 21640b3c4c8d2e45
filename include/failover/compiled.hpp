// The compiled part of failover, for a program built with FAILOVER_SEPARATE_COMPILATION.
//
// By default failover is header-only: every function is inline, and every translation unit that
// wraps a call compiles the failure path again (classification, redaction, Retry-After and
// HTTP-date parsing, the backoff draw, the errors a call stops with). Define
// FAILOVER_SEPARATE_COMPILATION for every translation unit of the program, and include this
// header in exactly one .cpp file, alone or before any other failover header:
//
//   // failover.cpp
//   #include <failover/compiled.hpp>
//
// With CMake: target_compile_definitions(app PUBLIC FAILOVER_SEPARATE_COMPILATION) and add
// failover.cpp to the program's sources (or to a static library it links). Templates stay in the
// headers either way; the optional adapters and drivers are unaffected.
#pragma once

#if !defined(FAILOVER_SEPARATE_COMPILATION)
#error \
    "failover/compiled.hpp: FAILOVER_SEPARATE_COMPILATION is not defined. Define it for every translation unit of the program (CMake: target_compile_definitions(<target> PUBLIC FAILOVER_SEPARATE_COMPILATION)), or do not include this header: without it failover is header-only"
#endif
#if defined(FAILOVER_DECL_HEADERS_SEEN)
#error \
    "failover/compiled.hpp: a failover header was included before it in this file, and declared its functions without defining them. Include failover/compiled.hpp first (best alone) in its .cpp file"
#endif

#define FAILOVER_COMPILED_SOURCE 1

// Every header with FAILOVER_DECL functions.
#include "failover/core/backoff.hpp"
#include "failover/core/classifier.hpp"
#include "failover/core/clock.hpp"
#include "failover/core/outcome.hpp"
#include "failover/core/retry_after.hpp"
#include "failover/detail/redact.hpp"
#include "failover/machine/plan.hpp"
