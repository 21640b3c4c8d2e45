// Catch2 v3 when the build found it, else v2.13: tests include this and use the common macros.
#pragma once
#if defined(FAILOVER_CATCH_V3)
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
