// A program built with FAILOVER_SEPARATE_COMPILATION (tests/CMakeLists.txt,
// failover_separate_tests): a call through the front door reaches every function of the compiled
// part (classification, redaction, the server's wait, interning the names, the errors a call stops
// with, the backoff draw and its validation, a token's wait) and behaves as it does header-only.
// This binary also runs the classifier, Retry-After and backoff unit tests, built the same way.
#include "catch.hpp"
#include "support.hpp"

#include <failover/fallback_chain.hpp>
#include <failover/testing.hpp>

#include <chrono>
#include <stdexcept>
#include <string>

#if !defined(FAILOVER_SEPARATE_COMPILATION)
#error "separate_test.cpp is built with FAILOVER_SEPARATE_COMPILATION"
#endif

using namespace std::chrono_literals;

namespace {

using chain_t = failover::basic_fallback_chain<std::string(const std::string&),
                                               failover::testing::fake_policies>;
using answer = failover::outcome<std::string>;
using failover::error_kind;
using failover::stop_reason;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("separate: a 429 is classified, redacted, waited for, fallen back from") {
  chain_t chain;
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(chain, clock);
  int a = 0;
  chain.add(
      "model-a",
      [&](const std::string&) -> answer {
        ++a;
        failover::failure f = failover::failure::http(
            429, "rate_limit_exceeded", "slow down, api_key=sk-proj-ABCDEF0123456789abcdef");
        f.retry_after = "2";
        return f;
      },
      failover::role::standard, failover_test::attempts(2), failover_test::exact(10ms));
  chain.add("model-b", [](const std::string& p) { return "b:" + p; });
  const auto r = chain.run("q");
  REQUIRE(r.has_value());
  CHECK(*r == "b:q");
  CHECK(a == 2);
  CHECK(r.served_by() == "model-b");
  CHECK(r.fallback_used());
  REQUIRE(sleeper.sleeps().size() == 1);
  CHECK(sleeper.sleeps()[0] == 2s + 10ms);  // the server's wait is a floor, the backoff on top
  const auto& t = r.trace().attempts();
  REQUIRE(t.size() == 3);
  CHECK(t[0].model == "model-a");
  CHECK(t[2].model == "model-b");
  const failover::error& e = t[0].error();
  CHECK(e.kind == error_kind::rate_limited);
  CHECK(e.transient);
  REQUIRE(e.retry_after.has_value());
  CHECK(*e.retry_after == 2s);
  CHECK(contains(e.message, "[redacted]"));
  CHECK_FALSE(contains(e.message, "ABCDEF0123456789"));
}

TEST_CASE("separate: a cancelled call ends with the stop error, last status kept") {
  chain_t chain;
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(chain, clock);
  failover::cancel_source source;
  chain.add("model-a", [&](const std::string&) -> answer {
    source.cancel();
    return failover::failure::http(401);
  });
  chain.add("model-b", [](const std::string& p) { return p; });
  failover::call_options call;
  call.token = source.token();
  const auto r = chain.run_with(call, "q");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.stop() == stop_reason::cancelled);
  CHECK(r.error().kind == error_kind::cancelled);
  REQUIRE(r.error().status.has_value());
  CHECK(*r.error().status == 401);
  CHECK(contains(r.error().message, "cancelled (last error: unauthorized"));
  // A token already cancelled does not wait.
  CHECK_FALSE(source.token().wait_for(std::chrono::hours(1)));
}

TEST_CASE("separate: backoff options are validated and the jitter drawn as header-only") {
  failover::backoff_options o;
  o.base = 100ms;
  o.cap = 1s;
  o.jitter = failover::jitter::full;
  CHECK(failover::jittered_delay(o, 1, {}, 0.5) == 50ms);
  CHECK(failover::jittered_delay(o, 3, {}, 0.5) == 200ms);  // half of 400 ms
  o.base = failover::duration::zero();
  CHECK_THROWS_AS(o.validate(), std::invalid_argument);
  try {
    o.validate();
  } catch (const std::invalid_argument& bad) {
    CHECK(contains(bad.what(), "base must be > 0"));
  }
}
