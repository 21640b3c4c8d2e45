// The retry budget's rules on plain state and plain time points: the ratio successes earn, the
// floor time earns, the cap, and a retry's one token; and that retry_budget answers as they do.
#include "catch.hpp"

#include <failover/gates/budget.hpp>
#include <failover/gates/budget_rules.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <type_traits>

using namespace std::chrono_literals;

namespace rules = failover::budget_rules;

namespace {

using failover::budget_options;
using failover::duration;
using failover::time_point;

time_point at(duration d) {
  return time_point{} + d;
}

budget_options no_floor(double initial, double ratio = 0.2, double max = 20.0) {
  budget_options o;
  o.initial_tokens = initial;
  o.retry_ratio = ratio;
  o.max_tokens = max;
  o.min_retries_per_second = 0.0;
  return o;
}

int granted(rules::state& s, const rules::limits& l, time_point t, int tries) {
  int n = 0;
  for (int i = 0; i < tries; ++i) n += rules::try_retry(s, l, t) ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("budget rules: the state is plain data, in whole millionths of a token",
          "[budget_rules]") {
  CHECK(std::is_trivially_copyable_v<rules::state>);
  const budget_options o;  // 10 of at most 20 tokens, 0.18 a success, 1 a second
  const rules::state s = rules::fresh(o);
  CHECK(s.micro_tokens == 10 * rules::one_token);
  CHECK(s.last_refill_ns == rules::never);
  const rules::limits l = rules::limits_of(o);
  CHECK(l.max_micro == 20 * rules::one_token);
  CHECK(l.earn_per_success == 180'000);
  CHECK(l.per_second == 1.0);
}

TEST_CASE("budget rules: a first attempt is counted, never charged", "[budget_rules]") {
  rules::state s = rules::fresh(no_floor(0.0));
  for (int i = 0; i < 100; ++i) rules::on_first_attempt(s);
  CHECK(s.first_attempts == 100);
  CHECK(s.micro_tokens == 0);
}

TEST_CASE("budget rules: a retry costs one whole token", "[budget_rules]") {
  const budget_options o = no_floor(3.0);
  const rules::limits l = rules::limits_of(o);
  rules::state s = rules::fresh(o);
  CHECK(granted(s, l, at(1s), 5) == 3);
  CHECK(s.retries_allowed == 3);
  CHECK(s.retries_refused == 2);
  CHECK(s.micro_tokens == 0);
  CHECK_FALSE(rules::spend(rules::one_token - 1));
  CHECK(rules::spend(rules::one_token) == std::optional<std::int64_t>(0));
}

TEST_CASE("budget rules: successes earn retries by the ratio, up to the cap", "[budget_rules]") {
  const budget_options o = no_floor(0.0, 0.2, 2.0);
  const rules::limits l = rules::limits_of(o);
  rules::state s = rules::fresh(o);
  for (int i = 0; i < 4; ++i) rules::on_success(s, l);
  CHECK_FALSE(rules::try_retry(s, l, at(0s)));  // 0.8 of a token
  rules::on_success(s, l);
  CHECK(rules::try_retry(s, l, at(0s)));  // 5 successes: one retry
  for (int i = 0; i < 100; ++i) rules::on_success(s, l);
  CHECK(s.micro_tokens == 2 * rules::one_token);  // held at max_tokens
  CHECK(s.successes == 105);
  CHECK(rules::earn(5 * rules::one_token, 1, l) == 5 * rules::one_token);  // above: left as is
  CHECK(rules::earn(0, -1, l) == 0);
}

TEST_CASE("budget rules: the floor earns tokens by elapsed time", "[budget_rules]") {
  budget_options o = no_floor(0.0);
  o.min_retries_per_second = 2.0;
  const rules::limits l = rules::limits_of(o);
  rules::state s = rules::fresh(o);

  CHECK_FALSE(rules::try_retry(s, l, at(100s)));  // the first ask starts the clock: nothing yet
  CHECK(s.last_refill_ns == at(100s).time_since_epoch().count());
  CHECK(granted(s, l, at(101s), 3) == 2);  // one second at two a second
  CHECK(granted(s, l, at(101s), 1) == 0);

  SECTION("time going back earns nothing and leaves the clock") {
    CHECK_FALSE(rules::try_retry(s, l, at(50s)));
    CHECK(s.last_refill_ns == at(101s).time_since_epoch().count());
  }
  SECTION("asks less than a millionth of a token apart do not lose their time") {
    const rules::refill_step r = rules::refill(0, 400, l);  // 400 ns: 0.8 millionths
    CHECK(r.last_refill_ns == 0);
    CHECK(r.earned_micro == 0);
    CHECK(rules::refill(0, 1000, l).earned_micro == 2);
  }
  SECTION("a long quiet period saves up at most max_tokens") {
    CHECK(granted(s, l, at(101s) + 24h, 100) == 20);
  }
  SECTION("no floor: time alone earns nothing") {
    const rules::limits none = rules::limits_of(no_floor(0.0));
    const rules::refill_step r = rules::refill(rules::never, 5, none);
    CHECK(r.last_refill_ns == rules::never);
    CHECK(rules::refill(0, 1'000'000'000'000, none).earned_micro == 0);
  }
}

TEST_CASE("budget rules: retry_budget answers as the rules alone do", "[budget_rules]") {
  budget_options o;
  o.initial_tokens = 3.0;
  o.max_tokens = 6.0;
  o.min_retries_per_second = 0.5;
  const failover::retry_budget b(o);
  const rules::limits l = rules::limits_of(o);
  rules::state s = rules::fresh(o);
  std::mt19937 rng(7);
  time_point t = at(10s);
  int refused = 0;
  for (int step = 0; step < 20000; ++step) {
    CAPTURE(step);
    t += std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 300)(rng));
    switch (std::uniform_int_distribution<int>(0, 3)(rng)) {
      case 0:
        b.on_first_attempt(t);
        rules::on_first_attempt(s);
        break;
      case 1:
        b.on_success(t);
        rules::on_success(s, l);
        break;
      default: {
        const bool want = rules::try_retry(s, l, t);
        REQUIRE(b.try_retry(t) == want);
        refused += want ? 0 : 1;
      }
    }
  }
  const failover::budget_snapshot got = b.snapshot();
  CHECK(got.tokens == static_cast<double>(s.micro_tokens) / rules::one_token);
  CHECK(got.first_attempts == s.first_attempts);
  CHECK(got.successes == s.successes);
  CHECK(got.retries_allowed == s.retries_allowed);
  CHECK(got.retries_refused == s.retries_refused);
  CHECK(refused > 1000);  // the budget did bind
  CHECK(s.retries_allowed > 1000);
}
