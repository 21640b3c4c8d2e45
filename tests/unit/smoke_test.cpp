#include "catch.hpp"
#include <failover/failover.hpp>
TEST_CASE("smoke") { REQUIRE(failover::to_string(failover::error_kind::rate_limited) == "rate_limited"); }
