// The circuit breaker's rules on plain state and plain time points, with no breaker object, no
// lock and no store: every transition, which errors count, and that the in-process breaker (its
// lock-free success tally included) tells calls exactly what the rules alone would.
#include "catch.hpp"

#include <failover/gates/breaker.hpp>
#include <failover/gates/breaker_rules.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <type_traits>

using namespace std::chrono_literals;

namespace rules = failover::breaker_rules;

namespace {

using failover::breaker_options;
using failover::circuit_state;
using failover::duration;
using failover::error_kind;
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
  if (kind == error_kind::rate_limited) e.status = 429;
  if (kind == error_kind::server_error) e.status = 503;
  if (kind == error_kind::overloaded) e.status = 529;
  return e;
}

failover::error server_down() {
  return make_error(error_kind::server_error, true);
}

failover::error cancelled() {
  return make_error(error_kind::cancelled, false);
}

// A key opened by five failures at `t` (default options: open until t + 30 s).
rules::state tripped_at(time_point t, const breaker_options& o = {}) {
  rules::state s = rules::fresh(o);
  for (int i = 0; i < o.consecutive_failures; ++i) rules::on_failure(s, o, t, server_down(), false);
  REQUIRE(s.mode == circuit_state::open);
  return s;
}

bool same(const rules::state& a, const rules::state& b) {
  bool window = true;
  for (std::size_t i = 0; i < a.window.size(); ++i)
    window = window && a.window[i].epoch == b.window[i].epoch &&
             a.window[i].calls == b.window[i].calls && a.window[i].failed == b.window[i].failed;
  return window && a.mode == b.mode && a.open_until == b.open_until && a.cooldown == b.cooldown &&
         a.probes == b.probes && a.probe_since == b.probe_since && a.tripped == b.tripped &&
         a.consecutive == b.consecutive && a.successes == b.successes && a.failures == b.failures &&
         a.rejected == b.rejected && a.opened == b.opened;
}

}  // namespace

TEST_CASE("breaker rules: the state is plain data a store can copy byte for byte",
          "[breaker_rules]") {
  CHECK(std::is_trivially_copyable_v<rules::state>);
  const breaker_options o;
  const rules::state s = rules::fresh(o);
  CHECK(s.mode == circuit_state::closed);
  CHECK(s.cooldown == o.cooldown);
  CHECK(s.probes == 0);
  CHECK_FALSE(s.tripped);
}

TEST_CASE("breaker rules: closed opens on the failure that reaches the threshold",
          "[breaker_rules]") {
  const breaker_options o;  // 5 in a row
  rules::state s = rules::fresh(o);
  for (int i = 0; i < 4; ++i) CHECK_FALSE(rules::on_failure(s, o, at(1s), server_down(), false));
  CHECK(s.mode == circuit_state::closed);
  CHECK(s.consecutive == 4);
  const auto c = rules::on_failure(s, o, at(1s), server_down(), false);
  REQUIRE(c);
  CHECK(c->from == circuit_state::closed);
  CHECK(c->to == circuit_state::open);
  CHECK(c->until == at(31s));
  CHECK(s.open_until == at(31s));
  CHECK(s.tripped);
  CHECK(s.opened == 1);
  CHECK(s.failures == 5);

  SECTION("a success in the run starts it again") {
    rules::state t = rules::fresh(o);
    for (int i = 0; i < 4; ++i) rules::on_failure(t, o, at(1s), server_down(), false);
    CHECK_FALSE(rules::on_success(t, o, at(1s), false));
    CHECK(t.consecutive == 0);
    for (int i = 0; i < 4; ++i) rules::on_failure(t, o, at(1s), server_down(), false);
    CHECK(t.mode == circuit_state::closed);
  }
}

TEST_CASE("breaker rules: closed admits and changes nothing", "[breaker_rules]") {
  // The in-process breaker answers a closed key without its lock on the strength of this.
  const breaker_options o;
  rules::state s = rules::fresh(o);
  rules::on_failure(s, o, at(1s), server_down(), false);
  rules::on_success(s, o, at(2s), false);
  const rules::state before = s;
  const rules::admit_result r = rules::admit(s, o, at(3s));
  CHECK(r.verdict.allowed);
  CHECK_FALSE(r.verdict.probe);
  CHECK_FALSE(r.changed);
  CHECK(same(s, before));
  CHECK_FALSE(rules::would_refuse(s, at(3s)));
}

TEST_CASE("breaker rules: open refuses until the cooldown ends", "[breaker_rules]") {
  const breaker_options o;
  rules::state s = tripped_at(at(10s));  // until 40 s
  for (const time_point t : {at(10s), at(39s), at(40s) - 1ns}) {
    const auto r = rules::admit(s, o, t);
    CHECK_FALSE(r.verdict.allowed);
    CHECK(r.verdict.until == at(40s));
    CHECK_FALSE(r.changed);
    CHECK(s.mode == circuit_state::open);
    CHECK(rules::would_refuse(s, t));
  }
  CHECK(s.rejected == 3);
  CHECK_FALSE(rules::would_refuse(s, at(40s)));
  CHECK(s.mode == circuit_state::open);  // would_refuse moved nothing
}

TEST_CASE("breaker rules: half-open hands out a limited number of probes", "[breaker_rules]") {
  breaker_options o;
  o.half_open_probes = 2;
  rules::state s = tripped_at(at(0s), o);
  const auto p1 = rules::admit(s, o, at(30s));
  REQUIRE(p1.changed);
  CHECK(p1.changed->from == circuit_state::open);
  CHECK(p1.changed->to == circuit_state::half_open);
  CHECK(p1.changed->until == at(30s));
  CHECK(p1.verdict.allowed);
  CHECK(p1.verdict.probe);
  const auto p2 = rules::admit(s, o, at(31s));
  CHECK(p2.verdict.probe);
  CHECK_FALSE(p2.changed);
  const auto third = rules::admit(s, o, at(32s));
  CHECK_FALSE(third.verdict.allowed);
  CHECK(third.verdict.until == at(32s));  // come back when a probe has answered
  CHECK(s.mode == circuit_state::half_open);
  CHECK(s.probes == 2);
  CHECK(s.probe_since == at(30s));
  CHECK_FALSE(rules::would_refuse(s, at(32s)));  // half-open is asked, not refused in advance
}

TEST_CASE("breaker rules: a probe's success closes and starts afresh", "[breaker_rules]") {
  const breaker_options o;
  rules::state s = tripped_at(at(0s));
  REQUIRE(rules::admit(s, o, at(30s)).verdict.probe);
  REQUIRE_FALSE(rules::on_failure(s, o, at(30s), server_down(), true) == std::nullopt);
  REQUIRE(s.cooldown == 60s);
  REQUIRE(rules::admit(s, o, at(90s)).verdict.probe);
  const auto c = rules::on_success(s, o, at(91s), true);
  REQUIRE(c);
  CHECK(c->from == circuit_state::half_open);
  CHECK(c->to == circuit_state::closed);
  CHECK(c->until == at(91s));
  CHECK(s.mode == circuit_state::closed);
  CHECK(s.cooldown == o.cooldown);  // the next trip waits the base cooldown again
  CHECK_FALSE(s.tripped);
  CHECK(s.consecutive == 0);
  for (const auto& b : s.window) CHECK(b.calls == 0);  // the window starts empty
  CHECK(s.successes == 1);
}

TEST_CASE("breaker rules: a probe's failure reopens for a longer cooldown, within max_cooldown",
          "[breaker_rules]") {
  breaker_options o;
  o.cooldown_multiplier = 1.5;
  o.max_cooldown = 60s;
  rules::state s = tripped_at(at(0s), o);
  REQUIRE(rules::admit(s, o, at(30s)).verdict.probe);
  const auto c = rules::on_failure(s, o, at(30s), server_down(), true);
  REQUIRE(c);
  CHECK(c->from == circuit_state::half_open);
  CHECK(c->to == circuit_state::open);
  CHECK(c->until == at(75s));  // 30 s x 1.5
  CHECK(s.probes == 0);
  REQUIRE(rules::admit(s, o, at(75s)).verdict.probe);
  rules::on_failure(s, o, at(75s), server_down(), true);
  CHECK(s.open_until == at(135s));  // 67.5 s, capped at 60 s
  CHECK(s.opened == 3);
}

TEST_CASE("breaker rules: a cancelled probe frees its slot and counts nothing", "[breaker_rules]") {
  const breaker_options o;
  rules::state s = tripped_at(at(0s));
  REQUIRE(rules::admit(s, o, at(30s)).verdict.probe);
  REQUIRE_FALSE(rules::admit(s, o, at(30s)).verdict.allowed);
  const rules::state before = s;
  CHECK_FALSE(rules::on_failure(s, o, at(31s), cancelled(), true));
  CHECK(s.mode == circuit_state::half_open);
  CHECK(s.probes == 0);
  CHECK(s.failures == before.failures);
  CHECK(s.consecutive == before.consecutive);
  CHECK(s.window[0].calls == before.window[0].calls);
  const auto again = rules::admit(s, o, at(31s));
  CHECK(again.verdict.allowed);
  CHECK(again.verdict.probe);

  SECTION("a cancelled call that was no probe frees nobody's slot") {
    CHECK_FALSE(rules::on_failure(s, o, at(32s), cancelled(), false));
    CHECK(s.probes == 1);
  }
}

TEST_CASE("breaker rules: a probe that never reports frees its slot after a cooldown",
          "[breaker_rules]") {
  const breaker_options o;
  rules::state s = tripped_at(at(0s));
  REQUIRE(rules::admit(s, o, at(30s)).verdict.probe);
  CHECK_FALSE(rules::admit(s, o, at(60s) - 1ns).verdict.allowed);
  CHECK(rules::admit(s, o, at(60s)).verdict.probe);
}

TEST_CASE("breaker rules: which errors count against the model", "[breaker_rules]") {
  struct row {
    error_kind kind;
    bool transient;
    bool counts;
  };
  const row rows[] = {
      {error_kind::server_error, true, true},       {error_kind::rate_limited, true, true},
      {error_kind::overloaded, true, true},         {error_kind::connect_timeout, true, true},
      {error_kind::read_timeout, true, true},       {error_kind::connection_error, true, true},
      {error_kind::invalid_response, true, true},   {error_kind::unauthorized, false, true},
      {error_kind::forbidden, false, true},         {error_kind::not_found, false, true},
      {error_kind::rate_limited, false, false},     {error_kind::unknown, false, false},
      {error_kind::bad_request, true, false},       {error_kind::content_policy, true, false},
      {error_kind::context_window, true, false},    {error_kind::cancelled, true, false},
      {error_kind::deadline_exceeded, true, false}, {error_kind::circuit_open, true, false},
  };
  breaker_options o;
  o.consecutive_failures = 1;
  o.open_on_auth_errors = false;
  for (const row& r : rows) {
    CAPTURE(failover::to_string(r.kind), r.transient);
    const failover::error e = make_error(r.kind, r.transient);
    CHECK(rules::counts_against_model(e) == r.counts);
    rules::state s = rules::fresh(o);
    const auto c = rules::on_failure(s, o, at(1s), e, false);
    CHECK(c.has_value() == r.counts);
    CHECK(s.failures == (r.counts ? 1U : 0U));
  }
}

TEST_CASE("breaker rules: auth errors open at once unless told otherwise", "[breaker_rules]") {
  breaker_options o;
  rules::state s = rules::fresh(o);
  CHECK(rules::on_failure(s, o, at(0s), make_error(error_kind::forbidden, false), false));
  CHECK(s.open_until == at(30s));
  o.open_on_auth_errors = false;
  rules::state quiet = rules::fresh(o);
  CHECK_FALSE(rules::on_failure(quiet, o, at(0s), make_error(error_kind::forbidden, false), false));
  CHECK(quiet.consecutive == 1);
}

TEST_CASE("breaker rules: a server's wait holds the key, and the hold ends without a probe",
          "[breaker_rules]") {
  const breaker_options o;  // max_cooldown 60 s
  rules::state s = rules::fresh(o);
  const auto c =
      rules::on_failure(s, o, at(10s), make_error(error_kind::rate_limited, true, 45s), false);
  REQUIRE(c);
  CHECK(c->until == at(55s));
  CHECK_FALSE(s.tripped);
  CHECK_FALSE(rules::admit(s, o, at(55s) - 1ns).verdict.allowed);
  const auto r = rules::admit(s, o, at(55s));
  CHECK(r.verdict.allowed);
  CHECK_FALSE(r.verdict.probe);
  REQUIRE(r.changed);
  CHECK(r.changed->to == circuit_state::closed);

  SECTION("a hold is capped at max_cooldown") {
    rules::state t = rules::fresh(o);
    rules::on_failure(t, o, at(10s), make_error(error_kind::overloaded, true, 24h), false);
    CHECK(t.open_until == at(70s));
  }
  SECTION("a wait on a 500, or a zero wait, holds nothing") {
    rules::state t = rules::fresh(o);
    auto e500 = make_error(error_kind::server_error, true, 30s);
    e500.status = 500;
    CHECK_FALSE(rules::on_failure(t, o, at(10s), e500, false));
    CHECK_FALSE(
        rules::on_failure(t, o, at(10s), make_error(error_kind::rate_limited, true, 0s), false));
    CHECK(t.mode == circuit_state::closed);
  }
  SECTION("a permanent 429 with a wait holds the key but counts nothing") {
    rules::state t = rules::fresh(o);
    CHECK(rules::on_failure(t, o, at(10s), make_error(error_kind::rate_limited, false, 5s), false));
    CHECK(t.failures == 0);
    CHECK(t.open_until == at(15s));
  }
}

TEST_CASE("breaker rules: re-opening never shortens an open deadline", "[breaker_rules]") {
  const breaker_options o;
  rules::state s = rules::fresh(o);
  rules::on_failure(s, o, at(0s), make_error(error_kind::rate_limited, true, 50s), false);
  for (int i = 0; i < 5; ++i)
    CHECK_FALSE(rules::on_failure(s, o, at(10s), server_down(), false));  // already open
  CHECK(s.open_until == at(50s));
  CHECK(s.tripped);  // it now needs a probe
  CHECK(s.opened == 1);
  CHECK(rules::admit(s, o, at(50s)).verdict.probe);
}

TEST_CASE("breaker rules: the failure ratio over the sliding window", "[breaker_rules]") {
  breaker_options o;
  o.consecutive_failures = 100;
  o.min_calls = 4;
  o.window = 10s;  // ten 1 s buckets
  rules::state s = rules::fresh(o);
  rules::on_failure(s, o, at(100s), server_down(), false);
  rules::on_failure(s, o, at(100s), server_down(), false);
  rules::on_success(s, o, at(101s), false);
  CHECK_FALSE(rules::ratio_exceeded(s, o, at(101s)));              // 3 calls: below min_calls
  CHECK(rules::on_failure(s, o, at(101s), server_down(), false));  // 3 of 4
  CHECK(rules::bucket_epoch(at(101s), o) == 101);

  SECTION("calls older than the window stop counting") {
    rules::state t = rules::fresh(o);
    for (int i = 0; i < 3; ++i) rules::on_failure(t, o, at(100s), server_down(), false);
    for (int i = 0; i < 3; ++i) rules::on_success(t, o, at(110s), false);
    CHECK_FALSE(rules::on_failure(t, o, at(110s), server_down(), false));  // 1 of 4 in the window
    CHECK(rules::ratio_exceeded(t, o, at(109s)) == false);
  }
}

TEST_CASE("breaker rules: a success is a count, then a settling only when it can change the mode",
          "[breaker_rules]") {
  CHECK_FALSE(rules::success_settles(circuit_state::closed, false));
  CHECK(rules::success_settles(circuit_state::closed, true));
  CHECK(rules::success_settles(circuit_state::open, false));
  CHECK(rules::success_settles(circuit_state::half_open, false));

  const breaker_options o;
  SECTION("settling a closed key's success changes nothing") {
    rules::state s = rules::fresh(o);
    rules::on_failure(s, o, at(1s), server_down(), false);
    rules::count_success(s, o, at(2s));
    const rules::state counted = s;
    CHECK_FALSE(rules::settle_success(s, o, at(2s), false));
    CHECK(same(s, counted));
  }
  SECTION("a success that is no probe, once the open period is over, closes the key") {
    rules::state s = tripped_at(at(0s));
    CHECK_FALSE(rules::on_success(s, o, at(29s), false));  // a call admitted before it opened
    CHECK(s.mode == circuit_state::open);
    CHECK(rules::on_success(s, o, at(30s), false));
    CHECK(s.mode == circuit_state::closed);
  }
}

TEST_CASE("breaker rules: the in-process breaker answers as the rules alone do",
          "[breaker_rules]") {
  // Random reports on one key, through the breaker (store, lock-free tally, published mode) and
  // through the rules on a plain state: every verdict and every snapshot field agree.
  breaker_options o;
  o.consecutive_failures = 3;
  o.min_calls = 5;
  o.window = 10s;
  o.cooldown = 2s;
  o.max_cooldown = 8s;
  o.half_open_probes = 2;
  failover::circuit_breaker b(o);
  const auto h = b.resolve("m");
  rules::state s = rules::fresh(o);
  int changes = 0, events = 0;
  b.on_change([&events](const failover::circuit_event&) { ++events; });

  const failover::error reports[] = {
      server_down(), cancelled(), make_error(error_kind::bad_request, false),
      make_error(error_kind::rate_limited, true, 3s), make_error(error_kind::unauthorized, false)};
  std::mt19937 rng(12345);
  time_point t = at(1000s);
  bool probe = false;
  for (int step = 0; step < 5000; ++step) {
    CAPTURE(step);
    t += std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 700)(rng));
    const int op = std::uniform_int_distribution<int>(0, 9)(rng);
    if (op < 3) {
      const failover::admission got = b.admit(h, t);
      const rules::admit_result want = rules::admit(s, o, t);
      changes += want.changed ? 1 : 0;
      REQUIRE(got.allowed == want.verdict.allowed);
      REQUIRE(got.probe == want.verdict.probe);
      REQUIRE(got.until == want.verdict.until);
      probe = got.probe;
    } else if (op < 7) {
      b.on_success(h, t, probe);
      changes += rules::on_success(s, o, t, probe) ? 1 : 0;
      probe = false;
    } else if (op < 9) {
      const auto& e = reports[std::uniform_int_distribution<int>(0, 9)(rng) % 5 == 0
                                  ? std::uniform_int_distribution<int>(1, 4)(rng)
                                  : 0];
      b.on_failure(h, t, e, probe);
      changes += rules::on_failure(s, o, t, e, probe) ? 1 : 0;
      probe = false;
    } else {
      REQUIRE(b.would_refuse(h, t) == rules::would_refuse(s, t));
    }
    if (step % 50 == 0) {  // a snapshot folds the tally in: take one now and then, not always
      const auto snap = b.snapshot("m");
      REQUIRE(snap);
      REQUIRE(snap->state == s.mode);
      REQUIRE(snap->open_until == s.open_until);
      REQUIRE(snap->consecutive_failures == s.consecutive);
      REQUIRE(snap->successes == s.successes);
      REQUIRE(snap->failures == s.failures);
      REQUIRE(snap->rejected == s.rejected);
      REQUIRE(snap->opened == s.opened);
    }
  }
  CHECK(events == changes);
  CHECK(s.opened > 10);  // the sequence went round the states many times
}
