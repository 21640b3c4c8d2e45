// Shared model health: the circuit breaker driven directly with constructed times and errors (its
// state machine, counters, listener and options), then inside fallback chains on fake time.
#include "catch.hpp"
#include "support.hpp"

#include <failover/failover.hpp>
#include <failover/testing.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

using namespace std::chrono_literals;

namespace {

using failover::admission;
using failover::breaker_options;
using failover::circuit_breaker;
using failover::circuit_state;
using failover::duration;
using failover::error_kind;
using failover::stop_reason;
using failover::time_point;

time_point at(duration d) {
  return time_point{} + d;
}

failover::error make_error(error_kind kind, bool transient,
                           std::optional<duration> retry_after = std::nullopt) {
  failover::error e;
  e.kind = kind;
  e.transient = transient;
  e.retry_after = retry_after;
  // The status each kind usually comes with: a server's wait holds a key on 429, 503 and 529 only.
  if (kind == error_kind::rate_limited) e.status = 429;
  if (kind == error_kind::server_error) e.status = 503;
  if (kind == error_kind::overloaded) e.status = 529;
  return e;
}

failover::error server_down() {
  return make_error(error_kind::server_error, true);
}

void fail_n(const circuit_breaker& b, circuit_breaker::handle h, time_point t, int n,
            const failover::error& e = server_down()) {
  for (int i = 0; i < n; ++i) b.on_failure(h, t, e, false);
}

circuit_state state_of(const circuit_breaker& b, std::string_view key) {
  const auto s = b.snapshot(key);
  REQUIRE(s.has_value());
  return s->state;
}

// The message of the std::invalid_argument that validate() throws ("" when it does not throw).
std::string validation_message(const breaker_options& o) {
  try {
    o.validate();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return {};
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

struct recorded_event {
  std::string key;
  circuit_state from;
  circuit_state to;
  time_point until;
  std::optional<error_kind> cause;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// The breaker on its own
// ---------------------------------------------------------------------------------------------

TEST_CASE("breaker: opens after consecutive_failures transient failures, not before", "[breaker]") {
  circuit_breaker b;
  REQUIRE(b.options().consecutive_failures == 5);
  const auto h = b.resolve("m");

  SECTION("four failures leave it closed, the fifth opens it") {
    fail_n(b, h, at(1s), 4);
    CHECK(state_of(b, "m") == circuit_state::closed);
    CHECK(b.admit(h, at(1s)).allowed);
    fail_n(b, h, at(1s), 1);
    CHECK(state_of(b, "m") == circuit_state::open);
    CHECK(!b.admit(h, at(1s)).allowed);
  }
  SECTION("a success in between resets the run") {
    fail_n(b, h, at(1s), 4);
    b.on_success(h, at(1s), false);
    fail_n(b, h, at(1s), 4);
    CHECK(state_of(b, "m") == circuit_state::closed);
    CHECK(b.snapshot("m")->consecutive_failures == 4);
    fail_n(b, h, at(1s), 1);
    CHECK(state_of(b, "m") == circuit_state::open);
  }
  SECTION("a custom threshold") {
    breaker_options o;
    o.consecutive_failures = 2;
    circuit_breaker two(o);
    const auto k = two.resolve("m");
    fail_n(two, k, at(1s), 1);
    CHECK(state_of(two, "m") == circuit_state::closed);
    fail_n(two, k, at(1s), 1);
    CHECK(state_of(two, "m") == circuit_state::open);
  }
}

TEST_CASE("breaker: failure-ratio rule over the sliding window", "[breaker]") {
  breaker_options o;
  o.consecutive_failures = 100;  // only the ratio rule can open it here
  o.failure_ratio = 0.5;
  o.min_calls = 4;
  o.window = 10s;  // ten one-second buckets
  circuit_breaker b(o);
  const auto h = b.resolve("m");

  SECTION("half the calls failing, once min_calls are in the window, opens it") {
    b.on_success(h, at(100s), false);
    b.on_failure(h, at(100s), server_down(), false);
    b.on_success(h, at(101s), false);
    CHECK(state_of(b, "m") == circuit_state::closed);
    b.on_failure(h, at(101s), server_down(), false);  // 2 of 4
    CHECK(state_of(b, "m") == circuit_state::open);
  }
  SECTION("below min_calls it never opens, whatever the share") {
    fail_n(b, h, at(100s), 3);  // 3 of 3 failed, but only 3 calls
    CHECK(state_of(b, "m") == circuit_state::closed);
  }
  SECTION("a share below the ratio does not open it") {
    for (int i = 0; i < 6; ++i) b.on_success(h, at(100s), false);
    fail_n(b, h, at(100s), 5);  // 5 of 11
    CHECK(state_of(b, "m") == circuit_state::closed);
  }
  SECTION("failures older than the window stop counting") {
    fail_n(b, h, at(100s), 3);
    for (int i = 0; i < 3; ++i) b.on_success(h, at(111s), false);
    b.on_failure(h, at(111s), server_down(), false);  // 1 of 4 in the window; 4 of 7 in all
    CHECK(state_of(b, "m") == circuit_state::closed);
  }
  SECTION("the same calls inside the window do open it (control)") {
    fail_n(b, h, at(100s), 3);
    for (int i = 0; i < 3; ++i) b.on_success(h, at(105s), false);
    b.on_failure(h, at(105s), server_down(), false);  // 4 of 7
    CHECK(state_of(b, "m") == circuit_state::open);
  }
}

TEST_CASE("breaker: after a close the failure-ratio window starts empty", "[breaker]") {
  breaker_options o;
  o.consecutive_failures = 100;
  o.min_calls = 4;
  o.window = 30s;  // 3 s buckets
  o.cooldown = 1s;
  circuit_breaker b(o);
  const auto h = b.resolve("m");
  duration base{};
  SECTION("near the clock's epoch, as with a fresh failover::testing::fake_clock") {
    base = 0s;
  }
  SECTION("far from the clock's epoch") {
    base = 1000s;
  }
  CAPTURE(base.count());
  fail_n(b, h, at(base), 4);  // 4 of 4: opens by ratio
  REQUIRE(state_of(b, "m") == circuit_state::open);
  const admission probe = b.admit(h, at(base + 1s));
  REQUIRE(probe.probe);
  b.on_success(h, at(base + 1s), true);
  REQUIRE(state_of(b, "m") == circuit_state::closed);
  // One failure in a fresh window is below min_calls; the calls from before the close are gone.
  b.on_failure(h, at(base + 4s), server_down(), false);
  CHECK(state_of(b, "m") == circuit_state::closed);
}

TEST_CASE("breaker: errors about the request never count against the model", "[breaker]") {
  breaker_options o;
  o.consecutive_failures = 1;
  circuit_breaker b(o);
  const auto h = b.resolve("m");
  const error_kind kinds[] = {error_kind::bad_request, error_kind::content_policy,
                              error_kind::context_window, error_kind::cancelled,
                              error_kind::deadline_exceeded};
  for (const error_kind k : kinds) {
    CAPTURE(failover::to_string(k));
    fail_n(b, h, at(1s), 10, make_error(k, false));
    fail_n(b, h, at(1s), 10, make_error(k, true));  // even when marked worth a retry
    CHECK(state_of(b, "m") == circuit_state::closed);
    CHECK(b.snapshot("m")->failures == 0);
    CHECK(b.admit(h, at(1s)).allowed);
  }
  // The control: one failure that does count opens it at this threshold.
  fail_n(b, h, at(1s), 1);
  CHECK(state_of(b, "m") == circuit_state::open);
}

TEST_CASE("breaker: unauthorized, forbidden and not_found open at once", "[breaker]") {
  const error_kind kinds[] = {error_kind::unauthorized, error_kind::forbidden,
                              error_kind::not_found};
  for (const error_kind k : kinds) {
    CAPTURE(failover::to_string(k));
    circuit_breaker b;
    const auto h = b.resolve("m");
    b.on_failure(h, at(10s), make_error(k, false), false);
    CHECK(state_of(b, "m") == circuit_state::open);
    const admission a = b.admit(h, at(10s));
    CHECK(!a.allowed);
    CHECK(a.until == at(40s));
  }
}

TEST_CASE("breaker: with open_on_auth_errors=false auth errors only count", "[breaker]") {
  const error_kind kinds[] = {error_kind::unauthorized, error_kind::forbidden,
                              error_kind::not_found};
  for (const error_kind k : kinds) {
    CAPTURE(failover::to_string(k));
    breaker_options o;
    o.open_on_auth_errors = false;
    circuit_breaker b(o);
    const auto h = b.resolve("m");
    b.on_failure(h, at(10s), make_error(k, false), false);
    CHECK(state_of(b, "m") == circuit_state::closed);
    CHECK(b.snapshot("m")->failures == 1);
    fail_n(b, h, at(10s), 4, make_error(k, false));  // still counts toward the run
    CHECK(state_of(b, "m") == circuit_state::open);
  }
}

TEST_CASE("breaker: a server's requested wait holds the key until then, then it closes",
          "[breaker]") {
  circuit_breaker b;
  const auto h = b.resolve("m");
  SECTION("429 with retry_after") {
    b.on_failure(h, at(10s), make_error(error_kind::rate_limited, true, 45s), false);
  }
  SECTION("503 with retry_after") {
    b.on_failure(h, at(10s), make_error(error_kind::server_error, true, 45s), false);
  }
  SECTION("529 with retry_after") {
    b.on_failure(h, at(10s), make_error(error_kind::overloaded, true, 45s), false);
  }
  const auto s = b.snapshot("m");
  REQUIRE(s);
  CHECK(s->state == circuit_state::open);
  CHECK(s->open_until == at(55s));
  CHECK(s->opened == 1);
  const admission before = b.admit(h, at(54s));
  CHECK(!before.allowed);
  CHECK(before.until == at(55s));
  // Held only by the server's wait: when it is over the key closes, no probe needed.
  const admission after = b.admit(h, at(55s));
  CHECK(after.allowed);
  CHECK_FALSE(after.probe);
  CHECK(state_of(b, "m") == circuit_state::closed);
}

TEST_CASE("breaker: a server's hold is bounded by max_cooldown", "[breaker]") {
  circuit_breaker b;  // max_cooldown 60 s
  const auto h = b.resolve("m");
  b.on_failure(h, at(10s), make_error(error_kind::rate_limited, true, 24h * 365), false);
  CHECK(b.snapshot("m")->open_until == at(70s));
}

TEST_CASE("breaker: a zero wait, or a wait on another status, holds nothing", "[breaker]") {
  circuit_breaker b;
  const auto h = b.resolve("m");
  b.on_failure(h, at(10s), make_error(error_kind::rate_limited, true, 0s), false);
  CHECK(state_of(b, "m") == circuit_state::closed);
  auto e500 = make_error(error_kind::server_error, true, 30s);
  e500.status = 500;
  b.on_failure(h, at(10s), e500, false);
  CHECK(state_of(b, "m") == circuit_state::closed);
  CHECK(b.admit(h, at(11s)).allowed);
}

TEST_CASE("breaker: a probe that never reports frees its slot after a cooldown", "[breaker]") {
  circuit_breaker b;  // cooldown 30 s, one probe
  const auto h = b.resolve("m");
  fail_n(b, h, at(0s), 5);
  REQUIRE(b.admit(h, at(30s)).probe);  // its call is abandoned: no result ever comes
  CHECK_FALSE(b.admit(h, at(59s)).allowed);
  const admission again = b.admit(h, at(60s));
  CHECK(again.allowed);
  CHECK(again.probe);
}

TEST_CASE("breaker: other 4xx and unmapped exceptions do not count against the model",
          "[breaker]") {
  circuit_breaker b;
  const auto h = b.resolve("m");
  auto e413 = make_error(error_kind::unknown, false);
  e413.status = 413;
  fail_n(b, h, at(0s), 20, e413);
  CHECK(state_of(b, "m") == circuit_state::closed);
  CHECK(b.snapshot("m")->failures == 0);
}

TEST_CASE("breaker: a server error without retry_after below the threshold does not open",
          "[breaker]") {
  circuit_breaker b;
  const auto h = b.resolve("m");
  b.on_failure(h, at(10s), make_error(error_kind::rate_limited, true), false);
  CHECK(state_of(b, "m") == circuit_state::closed);
}

TEST_CASE("breaker: open rejects until the cooldown ends, then admits half-open probes",
          "[breaker]") {
  breaker_options o;
  o.half_open_probes = 2;
  circuit_breaker b(o);
  const auto h = b.resolve("m");
  fail_n(b, h, at(10s), 5);  // open until 10 s + 30 s

  for (const duration t : {10s, 20s, 39s}) {
    const admission a = b.admit(h, at(t));
    CHECK(!a.allowed);
    CHECK(!a.probe);
    CHECK(a.until == at(40s));
  }
  const admission just_before = b.admit(h, at(40s) - 1ns);
  CHECK(!just_before.allowed);
  CHECK(b.snapshot("m")->rejected == 4);

  const admission p1 = b.admit(h, at(40s));
  const admission p2 = b.admit(h, at(40s));
  const admission third = b.admit(h, at(41s));
  CHECK(p1.allowed);
  CHECK(p1.probe);
  CHECK(p2.allowed);
  CHECK(p2.probe);
  CHECK(!third.allowed);
  CHECK(!third.probe);
  CHECK(state_of(b, "m") == circuit_state::half_open);
  CHECK(b.snapshot("m")->rejected == 5);

  SECTION("a probe's answer frees its slot") {
    b.on_failure(h, at(41s), make_error(error_kind::bad_request, false), true);  // does not count
    CHECK(state_of(b, "m") == circuit_state::half_open);
    const admission again = b.admit(h, at(41s));
    CHECK(again.allowed);
    CHECK(again.probe);
  }
  SECTION("a probe success closes it") {
    b.on_success(h, at(41s), true);
    CHECK(state_of(b, "m") == circuit_state::closed);
    const admission a = b.admit(h, at(41s));
    CHECK(a.allowed);
    CHECK(!a.probe);
  }
}

TEST_CASE("breaker: failed probes lengthen the cooldown up to max_cooldown, success resets it",
          "[breaker]") {
  breaker_options o;
  o.cooldown = 30s;
  o.cooldown_multiplier = 2.0;
  o.max_cooldown = 100s;
  circuit_breaker b(o);
  const auto h = b.resolve("m");
  fail_n(b, h, at(0s), 5);
  REQUIRE(b.snapshot("m")->open_until == at(30s));

  // Each failed probe re-opens for cooldown x multiplier: 60 s, then 100 s (capped), then 100 s.
  const duration expected_cooldowns[] = {60s, 100s, 100s};
  time_point t = at(30s);
  for (const duration c : expected_cooldowns) {
    const admission a = b.admit(h, t);
    REQUIRE(a.allowed);
    REQUIRE(a.probe);
    b.on_failure(h, t, server_down(), true);
    const auto s = b.snapshot("m");
    CHECK(s->state == circuit_state::open);
    CHECK(s->open_until == t + c);
    CHECK(!(b.admit(h, t + c - 1ms).allowed));
    t += c;
  }
  CHECK(b.snapshot("m")->opened == 4);

  // A probe success closes it, and the next trip uses the base cooldown again.
  REQUIRE(b.admit(h, t).probe);
  b.on_success(h, t, true);
  REQUIRE(state_of(b, "m") == circuit_state::closed);
  fail_n(b, h, t + 1s, 5);
  CHECK(b.snapshot("m")->open_until == t + 1s + 30s);
}

TEST_CASE("breaker: a non-integral multiplier scales the cooldown", "[breaker]") {
  breaker_options o;
  o.cooldown = 10s;
  o.cooldown_multiplier = 1.5;
  circuit_breaker b(o);
  const auto h = b.resolve("m");
  fail_n(b, h, at(0s), 5);
  REQUIRE(b.admit(h, at(10s)).probe);
  b.on_failure(h, at(10s), server_down(), true);
  CHECK(b.snapshot("m")->open_until == at(25s));
}

TEST_CASE("breaker: re-opening never shortens an open deadline", "[breaker]") {
  circuit_breaker b;  // cooldown 30 s
  const auto h = b.resolve("m");

  SECTION("a 50 s server wait outlasts a later 30 s trip") {
    b.on_failure(h, at(0s), make_error(error_kind::rate_limited, true, 50s), false);
    REQUIRE(b.snapshot("m")->open_until == at(50s));
    fail_n(b, h, at(10s), 5);  // answers of calls already under way: a trip worth 30 s
    const auto s = b.snapshot("m");
    CHECK(s->open_until == at(50s));
    CHECK(s->opened == 1);
    CHECK(!b.admit(h, at(49s)).allowed);
    CHECK(b.admit(h, at(50s)).probe);  // tripped meanwhile: it needs a probe now
  }
  SECTION("a shorter server wait while open keeps the trip's deadline") {
    fail_n(b, h, at(0s), 5);
    // Out of credit: permanent, so it does not count, but its wait still opens the key.
    b.on_failure(h, at(5s), make_error(error_kind::rate_limited, false, 5s), false);
    CHECK(b.snapshot("m")->open_until == at(30s));
  }
  SECTION("a late counted failure while open re-trips from its own time") {
    fail_n(b, h, at(0s), 5);
    b.on_failure(h, at(5s), make_error(error_kind::server_error, true, 5s), false);
    CHECK(b.snapshot("m")->open_until == at(35s));  // max(5 s + 5 s, 5 s + 30 s, 30 s)
    CHECK(b.snapshot("m")->opened == 1);
  }
  SECTION("a longer server wait while open extends it") {
    fail_n(b, h, at(0s), 5);
    b.on_failure(h, at(5s), make_error(error_kind::overloaded, true, 55s), false);
    CHECK(b.snapshot("m")->open_until == at(60s));
  }
}

TEST_CASE("breaker: would_refuse is read-only", "[breaker]") {
  circuit_breaker b;
  const auto h = b.resolve("m");
  int events = 0;
  b.on_change([&events](const failover::circuit_event&) { ++events; });

  CHECK(!b.would_refuse(h, at(0s)));  // closed

  fail_n(b, h, at(0s), 5);  // open until 30 s
  REQUIRE(events == 1);
  const auto before = b.snapshot("m");
  CHECK(b.would_refuse(h, at(0s)));
  CHECK(b.would_refuse(h, at(30s) - 1ns));
  CHECK(!b.would_refuse(h, at(30s)));
  CHECK(!b.would_refuse(h, at(1h)));
  const auto after = b.snapshot("m");
  CHECK(after->state == circuit_state::open);  // no transition to half-open
  CHECK(after->rejected == before->rejected);
  CHECK(after->rejected == 0);
  CHECK(after->successes == before->successes);
  CHECK(after->failures == before->failures);
  CHECK(after->opened == before->opened);
  CHECK(after->open_until == before->open_until);
  CHECK(events == 1);

  // A probe is still available afterwards: would_refuse took no probe slot.
  const admission a = b.admit(h, at(30s));
  CHECK(a.allowed);
  CHECK(a.probe);
}

TEST_CASE("breaker: on_change reports opened, half-open and closed", "[breaker]") {
  circuit_breaker b;
  std::vector<recorded_event> seen;
  b.on_change([&seen](const failover::circuit_event& e) {
    recorded_event r{std::string(e.key), e.from, e.to, e.until, std::nullopt};
    if (e.cause) r.cause = e.cause->kind;
    seen.push_back(r);
  });
  const auto h = b.resolve("provider/model");

  fail_n(b, h, at(0s), 4);
  CHECK(seen.empty());
  fail_n(b, h, at(0s), 1);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].key == "provider/model");
  CHECK(seen[0].from == circuit_state::closed);
  CHECK(seen[0].to == circuit_state::open);
  CHECK(seen[0].until == at(30s));
  REQUIRE(seen[0].cause.has_value());
  CHECK(*seen[0].cause == error_kind::server_error);

  CHECK(!b.admit(h, at(10s)).allowed);  // a refusal is no state change
  CHECK(seen.size() == 1);

  REQUIRE(b.admit(h, at(30s)).probe);
  REQUIRE(seen.size() == 2);
  CHECK(seen[1].key == "provider/model");
  CHECK(seen[1].from == circuit_state::open);
  CHECK(seen[1].to == circuit_state::half_open);
  CHECK(seen[1].until == at(30s));
  CHECK(!(seen[1].cause.has_value()));

  b.on_failure(h, at(31s), make_error(error_kind::unauthorized, false), true);
  REQUIRE(seen.size() == 3);
  CHECK(seen[2].from == circuit_state::half_open);
  CHECK(seen[2].to == circuit_state::open);
  CHECK(seen[2].until == at(91s));  // 31 s + 30 s x 2
  REQUIRE(seen[2].cause.has_value());
  CHECK(*seen[2].cause == error_kind::unauthorized);

  REQUIRE(b.admit(h, at(91s)).probe);
  b.on_success(h, at(92s), true);
  REQUIRE(seen.size() == 5);
  CHECK(seen[3].to == circuit_state::half_open);
  CHECK(seen[4].key == "provider/model");
  CHECK(seen[4].from == circuit_state::half_open);
  CHECK(seen[4].to == circuit_state::closed);
  CHECK(!(seen[4].cause.has_value()));

  b.on_success(h, at(93s), false);  // closed stays closed: no event
  CHECK(seen.size() == 5);
}

TEST_CASE("breaker: a throwing listener changes nothing", "[breaker]") {
  auto drive = [](circuit_breaker& b) {
    const auto h = b.resolve("m");
    fail_n(b, h, at(0s), 5);
    const admission refused = b.admit(h, at(1s));
    const admission probe = b.admit(h, at(30s));
    b.on_failure(h, at(30s), server_down(), true);
    const admission probe2 = b.admit(h, at(90s));
    b.on_success(h, at(90s), true);
    CHECK(!refused.allowed);
    CHECK(probe.probe);
    CHECK(probe2.probe);
    return *b.snapshot("m");
  };
  circuit_breaker quiet;
  const auto expected = drive(quiet);

  circuit_breaker loud;
  int calls = 0;
  loud.on_change([&calls](const failover::circuit_event&) {
    ++calls;
    throw std::runtime_error("listener failed");
  });
  const auto got = drive(loud);
  CHECK(calls == 5);  // opened, half-open, opened, half-open, closed
  CHECK(got.state == expected.state);
  CHECK(got.state == circuit_state::closed);
  CHECK(got.open_until == expected.open_until);
  CHECK(got.successes == expected.successes);
  CHECK(got.failures == expected.failures);
  CHECK(got.rejected == expected.rejected);
  CHECK(got.opened == expected.opened);
  CHECK(got.opened == 2);
}

TEST_CASE("breaker: snapshot of every key and of one key", "[breaker]") {
  circuit_breaker b;
  const auto a = b.resolve("a");
  b.resolve("b");
  CHECK(!b.snapshot("c").has_value());

  b.on_success(a, at(0s), false);
  b.on_success(a, at(0s), false);
  b.on_failure(a, at(0s), make_error(error_kind::bad_request, false), false);  // not counted
  fail_n(b, a, at(0s), 5);
  CHECK(!b.admit(a, at(1s)).allowed);
  CHECK(!b.admit(a, at(2s)).allowed);

  const auto one = b.snapshot("a");
  REQUIRE(one);
  CHECK(one->key == "a");
  CHECK(one->state == circuit_state::open);
  CHECK(one->open_until == at(30s));
  CHECK(one->consecutive_failures == 5);
  CHECK(one->successes == 2);
  CHECK(one->failures == 5);
  CHECK(one->rejected == 2);
  CHECK(one->opened == 1);

  const auto all = b.snapshot();
  REQUIRE(all.size() == 2);
  bool saw_a = false, saw_b = false;
  for (const auto& s : all) {
    if (s.key == "a") {
      saw_a = true;
      CHECK(s.failures == 5);
      CHECK(s.opened == 1);
    } else if (s.key == "b") {
      saw_b = true;
      CHECK(s.state == circuit_state::closed);
      CHECK(s.successes == 0);
      CHECK(s.failures == 0);
      CHECK(s.rejected == 0);
      CHECK(s.opened == 0);
    }
  }
  CHECK(saw_a);
  CHECK(saw_b);
}

TEST_CASE("breaker: copies share the registry, resolve is stable per key", "[breaker]") {
  circuit_breaker b;
  const circuit_breaker copy = b;  // NOLINT(performance-unnecessary-copy-initialization)
  const auto h = b.resolve("m");
  CHECK(b.resolve("m") == h);
  CHECK(b.resolve(std::string("m")) == h);
  CHECK(copy.resolve("m") == h);
  CHECK(b.resolve("n") != h);

  fail_n(copy, copy.resolve("m"), at(0s), 5);
  CHECK(state_of(b, "m") == circuit_state::open);
  CHECK(!b.admit(h, at(1s)).allowed);
  CHECK(copy.snapshot("m")->rejected == 1);
  CHECK(b.snapshot().size() == 2);
  CHECK(copy.snapshot().size() == 2);

  // A breaker built separately has its own registry.
  circuit_breaker other;
  CHECK(other.resolve("m") != h);
  CHECK(other.admit(other.resolve("m"), at(1s)).allowed);
}

TEST_CASE("breaker: breaker_options::validate names each bad parameter", "[breaker]") {
  CHECK(validation_message(breaker_options{}).empty());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  struct bad_case {
    const char* parameter;
    breaker_options options;
  };
  std::vector<bad_case> cases;
  auto add = [&cases](const char* name, auto change) {
    breaker_options o;
    change(o);
    cases.push_back({name, o});
  };
  add("consecutive_failures", [](breaker_options& o) { o.consecutive_failures = 0; });
  add("failure_ratio", [](breaker_options& o) { o.failure_ratio = 0.0; });
  add("failure_ratio", [](breaker_options& o) { o.failure_ratio = 1.5; });
  add("failure_ratio", [nan](breaker_options& o) { o.failure_ratio = nan; });
  add("min_calls", [](breaker_options& o) { o.min_calls = 0; });
  add("window", [](breaker_options& o) { o.window = duration::zero(); });
  add("window", [](breaker_options& o) { o.window = -1s; });
  add("cooldown", [](breaker_options& o) { o.cooldown = duration::zero(); });
  add("cooldown_multiplier", [](breaker_options& o) { o.cooldown_multiplier = 0.5; });
  add("cooldown_multiplier", [nan](breaker_options& o) { o.cooldown_multiplier = nan; });
  add("cooldown_multiplier", [](breaker_options& o) { o.cooldown_multiplier = 1e9; });
  add("max_cooldown", [](breaker_options& o) { o.max_cooldown = o.cooldown - 1s; });
  add("half_open_probes", [](breaker_options& o) { o.half_open_probes = 0; });

  for (const auto& c : cases) {
    CAPTURE(c.parameter);
    const std::string what = validation_message(c.options);
    CAPTURE(what);
    CHECK(contains(what, c.parameter));
    REQUIRE_THROWS_AS(circuit_breaker(c.options), std::invalid_argument);
  }
}

// ---------------------------------------------------------------------------------------------
// In a chain
// ---------------------------------------------------------------------------------------------

namespace {

struct breaker_policies : failover::testing::fake_policies {
  using breaker = failover::circuit_breaker;
};
using chain_t = failover::basic_fallback_chain<int(), breaker_policies>;
using answer = failover::outcome<int>;

using failover_test::attempts;
using failover_test::exact;

// Callables count their calls, so a test can tell a skip from a call.
auto failing(failover::failure f, int& calls) {
  return [f, &calls]() -> answer {
    ++calls;
    return f;
  };
}
auto answering(int value, int& calls) {
  return [value, &calls]() -> answer {
    ++calls;
    return value;
  };
}

}  // namespace

TEST_CASE("breaker chain: an open model is skipped and the next standard model serves",
          "[breaker]") {
  failover::testing::fake_clock clock;
  circuit_breaker b;
  chain_t chain;
  const auto sleeper = failover::testing::use_fake_time(chain, clock);
  int a_calls = 0, b_calls = 0;
  chain.add("alpha", failing(failover::failure::http(503), a_calls))
      .add("beta", answering(7, b_calls));
  chain.set_breaker(b);  // after add(): re-resolves the entries
  b.on_failure(b.resolve("alpha"), clock.now(), make_error(error_kind::unauthorized, false), false);

  const auto r = chain.run();
  REQUIRE(r.has_value());
  CHECK(*r == 7);
  CHECK(a_calls == 0);
  CHECK(b_calls == 1);
  CHECK(r.served_by() == "beta");
  CHECK(r.fallback_used());
  REQUIRE(r.trace().size() == 2);
  const auto& skip = r.trace().attempts()[0];
  CHECK(skip.skipped);
  CHECK(skip.model == "alpha");
  CHECK(skip.error().kind == error_kind::circuit_open);
  CHECK(skip.error().retry_after == std::optional<duration>(30s));
  CHECK(skip.stop == stop_reason::circuit_open);
  CHECK(r.trace().calls() == 1);
  CHECK(sleeper.sleeps().empty());
  CHECK(b.snapshot("alpha")->rejected == 1);

  const std::string printed = fmt::format("{}", r.trace());
  CAPTURE(printed);
  CHECK(contains(printed, "#1 alpha try 1 at +0ms (0ms): skipped: circuit open (until +30.00s)"));
  CHECK(contains(printed, "falling back to beta (standard fallback)"));
  CHECK(contains(printed, "#2 beta try 1"));
}

TEST_CASE("breaker chain: set_breaker before add() also wires the entries", "[breaker]") {
  failover::testing::fake_clock clock;
  circuit_breaker b;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  chain.set_breaker(b);
  int a_calls = 0, b_calls = 0;
  chain.add("alpha", failing(failover::failure::http(503), a_calls))
      .add("beta", answering(7, b_calls));
  b.on_failure(b.resolve("alpha"), clock.now(), make_error(error_kind::forbidden, false), false);
  const auto r = chain.run();
  CHECK(a_calls == 0);
  CHECK(r.served_by() == "beta");
}

TEST_CASE("breaker chain: chains given copies of one breaker share health", "[breaker]") {
  failover::testing::fake_clock clock;
  breaker_options o;
  o.consecutive_failures = 2;
  circuit_breaker b(o);
  chain_t one, two;
  failover::testing::use_fake_time(one, clock);
  failover::testing::use_fake_time(two, clock);
  int a1 = 0, b1 = 0, a2 = 0, b2 = 0;
  one.add("provider/alpha", failing(failover::failure::http(500), a1), failover::role::standard,
          attempts(1))
      .add("provider/beta", answering(1, b1));
  two.add("provider/alpha", failing(failover::failure::http(500), a2), failover::role::standard,
          attempts(1))
      .add("provider/beta", answering(2, b2));
  one.set_breaker(b);
  two.set_breaker(circuit_breaker(b));

  CHECK(one.run().value() == 1);
  CHECK(two.run().value() == 2);  // two failures in all: the second, through chain 2, opens it
  CHECK(a1 == 1);
  CHECK(a2 == 1);
  CHECK(state_of(b, "provider/alpha") == circuit_state::open);

  const auto r1 = one.run();
  const auto r2 = two.run();
  CHECK(a1 == 1);
  CHECK(a2 == 1);
  CHECK(r1.trace().attempts()[0].skipped);
  CHECK(r2.trace().attempts()[0].skipped);
  CHECK(r1.value() == 1);
  CHECK(r2.value() == 2);
  CHECK(b.snapshot("provider/alpha")->rejected == 2);
}

TEST_CASE("breaker chain: when every model is open the call ends at once", "[breaker]") {
  failover::testing::fake_clock clock;
  circuit_breaker b;  // cooldown 30 s
  chain_t chain;
  const auto sleeper = failover::testing::use_fake_time(chain, clock);
  int a_calls = 0, b_calls = 0;
  chain.add("alpha", answering(1, a_calls)).add("beta", answering(2, b_calls));
  chain.set_breaker(b);
  b.on_failure(b.resolve("alpha"), clock.now(), make_error(error_kind::unauthorized, false),
               false);  // until 30 s
  b.on_failure(b.resolve("beta"), clock.now(), make_error(error_kind::server_error, true, 12s),
               false);  // until 12 s
  clock.advance(2s);

  const auto r = chain.run();
  CHECK(!r.has_value());
  CHECK(a_calls == 0);
  CHECK(b_calls == 0);
  CHECK(sleeper.sleeps().empty());
  CHECK(clock.elapsed() == 2s);
  CHECK(r.stop() == stop_reason::circuit_open);
  CHECK(r.error().kind == error_kind::circuit_open);
  CHECK(r.error().retry_after == std::optional<duration>(10s));
  CHECK(r.error().model == "beta");
  CAPTURE(r.error().message);
  CHECK(contains(r.error().message, "beta"));
  CHECK(!contains(r.error().message, "alpha"));
  REQUIRE(r.trace().size() == 2);
  CHECK(r.trace().attempts()[0].skipped);
  CHECK(r.trace().attempts()[1].skipped);
  CHECK(r.trace().calls() == 0);
}

TEST_CASE("breaker chain: wait_for_open_circuit waits once for the earliest model", "[breaker]") {
  failover::testing::fake_clock clock;
  circuit_breaker b;
  failover::chain_options opts;
  opts.wait_for_open_circuit = true;

  SECTION("the wait fits: the sleeper records it and the model is probed once") {
    chain_t chain(opts);
    const auto sleeper = failover::testing::use_fake_time(chain, clock);
    int a_calls = 0, b_calls = 0;
    chain.add("alpha", answering(1, a_calls)).add("beta", answering(2, b_calls));
    chain.set_breaker(b);
    b.on_failure(b.resolve("alpha"), clock.now(), make_error(error_kind::unauthorized, false),
                 false);
    b.on_failure(b.resolve("beta"), clock.now(), make_error(error_kind::server_error, true, 12s),
                 false);
    clock.advance(2s);

    const auto r = chain.run();
    REQUIRE(r.has_value());
    CHECK(*r == 2);
    CHECK(sleeper.sleeps() == std::vector<duration>{10s});
    CHECK(a_calls == 0);
    CHECK(b_calls == 1);
    CHECK(r.served_by() == "beta");
    REQUIRE(r.trace().size() == 3);
    const auto& last_skip = r.trace().attempts()[1];
    CHECK(last_skip.skipped);
    CHECK(last_skip.wait == 10s);
    CHECK(last_skip.why_wait == failover::wait_reason::circuit);
    CHECK(state_of(b, "beta") == circuit_state::closed);
    CHECK(contains(fmt::format("{}", r.trace()), "every model is open -> wait 10.00s (circuit)"));
  }
  SECTION("a failed probe ends the call: no second wait") {
    chain_t chain(opts);
    const auto sleeper = failover::testing::use_fake_time(chain, clock);
    int a_calls = 0, b_calls = 0;
    chain.add("alpha", answering(1, a_calls))
        .add("beta", failing(failover::failure::http(503), b_calls), failover::role::standard,
             attempts(5), exact(1s));
    chain.set_breaker(b);
    fail_n(b, b.resolve("beta"), clock.now(), 5);  // tripped: open until 30 s, then a probe
    clock.advance(5s);
    b.on_failure(b.resolve("alpha"), clock.now(), make_error(error_kind::unauthorized, false),
                 false);  // until 35 s
    clock.advance(2s);

    const auto r = chain.run();
    CHECK(!r.has_value());
    CHECK(sleeper.sleeps() == std::vector<duration>{23s});
    CHECK(a_calls == 0);
    CHECK(b_calls == 1);
    CHECK(r.error().kind == error_kind::server_error);
    CHECK(r.stop() == stop_reason::circuit_open);  // the failed probe re-opened it: no retry
    CHECK(state_of(b, "beta") == circuit_state::open);
  }
  SECTION("a deadline shorter than the wait: no wait") {
    opts.deadline = 5s;
    chain_t chain(opts);
    const auto sleeper = failover::testing::use_fake_time(chain, clock);
    int a_calls = 0, b_calls = 0;
    chain.add("alpha", answering(1, a_calls)).add("beta", answering(2, b_calls));
    chain.set_breaker(b);
    b.on_failure(b.resolve("alpha"), clock.now(), make_error(error_kind::unauthorized, false),
                 false);
    b.on_failure(b.resolve("beta"), clock.now(), make_error(error_kind::server_error, true, 12s),
                 false);
    clock.advance(2s);

    const auto r = chain.run();
    CHECK(!r.has_value());
    CHECK(sleeper.sleeps().empty());
    CHECK(b_calls == 0);
    CHECK(r.error().kind == error_kind::circuit_open);
    CHECK(r.stop() == stop_reason::circuit_open);
    CHECK(r.error().retry_after == std::optional<duration>(10s));
  }
}

TEST_CASE("breaker chain: a retry that would find the circuit open is vetoed", "[breaker]") {
  failover::testing::fake_clock clock;
  breaker_options o;
  o.consecutive_failures = 2;
  circuit_breaker b(o);
  chain_t chain;
  const auto sleeper = failover::testing::use_fake_time(chain, clock);
  int a_calls = 0, b_calls = 0;
  chain
      .add("alpha", failing(failover::failure::http(503), a_calls), failover::role::standard,
           attempts(5), exact(1s))
      .add("beta", answering(2, b_calls));
  chain.set_breaker(b);

  const auto r = chain.run();
  REQUIRE(r.has_value());
  CHECK(r.served_by() == "beta");
  CHECK(a_calls == 2);                                   // the second failure opened it
  CHECK(sleeper.sleeps() == std::vector<duration>{1s});  // no wait after it: fell back at once
  REQUIRE(r.trace().size() == 3);
  CHECK(r.trace().attempts()[0].wait == 1s);
  CHECK(r.trace().attempts()[1].stop == stop_reason::circuit_open);
  CHECK(r.trace().attempts()[1].wait == duration::zero());
  CHECK(r.trace().attempts()[1].why_wait == failover::wait_reason::none);
  CHECK(r.trace().attempts()[2].model == "beta");
}

TEST_CASE("breaker chain: a retry that waits out a server-opened circuit goes ahead", "[breaker]") {
  failover::testing::fake_clock clock;
  circuit_breaker b;
  chain_t chain;
  const auto sleeper = failover::testing::use_fake_time(chain, clock);
  int calls = 0;
  chain.add(
      "alpha",
      [&calls]() -> answer {
        if (++calls == 1) return failover::failure::http(429).header("Retry-After", "5");
        return 3;
      },
      failover::role::standard, attempts(5), exact(1s));
  chain.set_breaker(b);

  const auto r = chain.run();
  REQUIRE(r.has_value());
  CHECK(*r == 3);
  CHECK(calls == 2);
  CHECK(sleeper.sleeps() == std::vector<duration>{6s});  // the server's 5 s + the 1 s backoff
  CHECK(state_of(b, "alpha") == circuit_state::closed);  // the retry was the probe, and closed it
  CHECK(b.snapshot("alpha")->opened == 1);
}

TEST_CASE("breaker chain: a skip is no hop toward max_hops", "[breaker]") {
  failover::testing::fake_clock clock;
  circuit_breaker b;
  failover::chain_options opts;
  opts.max_hops = 2;
  chain_t chain(opts);
  failover::testing::use_fake_time(chain, clock);
  int a_calls = 0, b_calls = 0, c_calls = 0;
  chain
      .add("alpha", failing(failover::failure::http(500), a_calls), failover::role::standard,
           attempts(1))
      .add("beta", failing(failover::failure::http(500), b_calls), failover::role::standard,
           attempts(1))
      .add("gamma", answering(3, c_calls));
  chain.set_breaker(b);

  SECTION("alpha skipped: beta and gamma are the two hops") {
    b.on_failure(b.resolve("alpha"), clock.now(), make_error(error_kind::unauthorized, false),
                 false);
    const auto r = chain.run();
    REQUIRE(r.has_value());
    CHECK(r.served_by() == "gamma");
    CHECK(a_calls == 0);
    CHECK(b_calls == 1);
  }
  SECTION("alpha called: the hop limit stops before gamma (control)") {
    const auto r = chain.run();
    CHECK(!r.has_value());
    CHECK(r.stop() == stop_reason::hop_limit);
    CHECK(a_calls == 1);
    CHECK(c_calls == 0);
  }
}

TEST_CASE("breaker chain: a veto does not spend the retry budget", "[breaker]") {
  struct resilient_fake : failover::resilient_policies {
    using clock = failover::testing::fake_clock;
    using sleeper = failover::testing::fake_sleeper;
  };
  failover::testing::fake_clock clock;
  breaker_options o;
  o.consecutive_failures = 1;
  failover::basic_fallback_chain<int(), resilient_fake> chain;
  failover::testing::use_fake_time(chain, clock);
  int a_calls = 0, b_calls = 0;
  chain
      .add("alpha", failing(failover::failure::http(503), a_calls), failover::role::standard,
           attempts(5), exact(1s))
      .add("beta", answering(2, b_calls));
  chain.set_breaker(circuit_breaker(o));
  const auto r = chain.run();
  CHECK(r.served_by() == "beta");
  CHECK(a_calls == 1);
  CHECK(r.trace().attempts()[0].stop == stop_reason::circuit_open);
  CHECK(chain.budget().snapshot().retries_allowed == 0);
  CHECK(chain.budget().snapshot().retries_refused == 0);
}

TEST_CASE("breaker chain: the retrier skips an open model too", "[breaker]") {
  failover::testing::fake_clock clock;
  circuit_breaker b;
  failover::basic_retrier<breaker_policies> retrier("alpha");
  const auto sleeper = failover::testing::use_fake_time(retrier, clock);
  retrier.set_breaker(b);
  b.on_failure(b.resolve("alpha"), clock.now(), make_error(error_kind::not_found, false), false);
  int calls = 0;
  const auto r = retrier.run([&calls]() -> answer {
    ++calls;
    return 1;
  });
  CHECK(!r.has_value());
  CHECK(calls == 0);
  CHECK(r.error().kind == error_kind::circuit_open);
  CHECK(r.error().retry_after == std::optional<duration>(30s));
  CHECK(sleeper.sleeps().empty());
}

TEST_CASE("breaker: no_breaker is empty and a default chain never skips", "[breaker]") {
  CHECK(std::is_empty_v<failover::no_breaker>);
  CHECK(std::is_same_v<failover::default_policies::breaker, failover::no_breaker>);
  CHECK(std::is_same_v<failover::resilient_policies::breaker, failover::circuit_breaker>);
  const failover::no_breaker nb;
  const auto h = nb.resolve("m");
  for (int i = 0; i < 10; ++i)
    nb.on_failure(h, at(0s), make_error(error_kind::unauthorized, false), false);
  CHECK(nb.admit(h, at(0s)).allowed);
  CHECK(!nb.admit(h, at(0s)).probe);
  CHECK(!nb.would_refuse(h, at(0s)));

  failover::basic_fallback_chain<int(), failover::testing::fake_policies> chain;
  failover::testing::fake_clock clock;
  const auto sleeper = failover::testing::use_fake_time(chain, clock);
  int a_calls = 0, b_calls = 0;
  chain
      .add("alpha", failing(failover::failure::http(503), a_calls), failover::role::standard,
           attempts(2), exact(1s))
      .add("beta", answering(2, b_calls));
  for (int i = 0; i < 10; ++i) {
    const auto r = chain.run();
    CHECK(r.value() == 2);
    CHECK(r.trace().size() == 3);
    CHECK(!(r.trace().attempts()[0].skipped));
  }
  CHECK(a_calls == 20);  // every call tried alpha twice: no shared health
  CHECK(sleeper.sleeps().size() == 10);
}

TEST_CASE("breaker chain: a call abandoned during its probe frees the probe slot", "[breaker]") {
  failover::testing::fake_clock clock;
  circuit_breaker b;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  int calls = 0;
  chain.add("m", answering(1, calls));
  chain.set_breaker(b);
  fail_n(b, b.resolve("m"), clock.now(), 5);  // open until 30 s
  clock.advance(30s);
  {
    auto call = chain.begin_call(failover::call_options{});
    const auto a = call.poll();
    REQUIRE(a);
    REQUIRE(std::holds_alternative<failover::actions::start_attempt>(*a));  // the half-open probe
  }                            // dropped before its answer came
  const auto r = chain.run();  // a new probe may go at once
  REQUIRE(r.has_value());
  CHECK(state_of(b, "m") == circuit_state::closed);
}

TEST_CASE("breaker: one moved from still shares the registry", "[breaker]") {
  // A breaker is a handle to a shared registry, as its copies are: a move shares it too, so
  // nothing about a breaker moved from is null (and its calls need no check for it).
  circuit_breaker health;
  const circuit_breaker::handle h = health.resolve("m");
  circuit_breaker moved(std::move(health));
  fail_n(moved, h, at(0s), 5);
  // NOLINTBEGIN(bugprone-use-after-move): what a breaker moved from does is the point
  CHECK(state_of(health, "m") == circuit_state::open);
  CHECK(health.snapshot().size() == 1);
  CHECK_FALSE(health.admit(h, at(1s)).allowed);
  CHECK(health.resolve("m") == h);
  CHECK(health.options().consecutive_failures == 5);
  circuit_breaker assigned;
  assigned = std::move(moved);
  CHECK(moved.snapshot("m").has_value());
  // NOLINTEND(bugprone-use-after-move)
  CHECK(assigned.snapshot("m")->state == circuit_state::open);
}

TEST_CASE("breaker chain: the breaker handed to set_breaker by move can still be read",
          "[breaker]") {
  chain_t chain;
  failover::testing::use_fake_time(chain, failover::testing::fake_clock{});
  circuit_breaker health;
  chain.set_breaker(std::move(health));
  int calls = 0;
  chain.add("m", answering(3, calls));
  REQUIRE(chain.run().value() == 3);
  // NOLINTNEXTLINE(bugprone-use-after-move)
  const auto s = health.snapshot("m");
  REQUIRE(s.has_value());
  CHECK(s->successes == 1);
}
