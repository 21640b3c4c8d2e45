// The shared retry budget: its token bucket driven directly with constructed times, then inside
// fallback chains on fake time, where a refused retry falls back at once.
#include "catch.hpp"
#include "support.hpp"

#include <failover/failover.hpp>
#include <failover/testing.hpp>

#include <fmt/format.h>

#include <chrono>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;

namespace {

using failover::budget_options;
using failover::duration;
using failover::retry_budget;
using failover::stop_reason;
using failover::time_point;

time_point at(duration d) {
  return time_point{} + d;
}

// No floor, so only spending and successes move the tokens.
budget_options no_floor(double initial, double ratio = 0.2, double max = 20.0) {
  budget_options o;
  o.initial_tokens = initial;
  o.retry_ratio = ratio;
  o.max_tokens = max;
  o.min_retries_per_second = 0.0;
  return o;
}

int retries_granted(const retry_budget& b, time_point t, int tries) {
  int n = 0;
  for (int i = 0; i < tries; ++i) n += b.try_retry(t) ? 1 : 0;
  return n;
}

std::string validation_message(const budget_options& o) {
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

}  // namespace

TEST_CASE("budget: starts with initial_tokens and spends one per retry", "[budget]") {
  SECTION("the defaults") {
    retry_budget b;
    CHECK(b.snapshot().tokens == 10.0);
    CHECK(b.options().initial_tokens == 10.0);
  }
  SECTION("three tokens pay for three retries, then it refuses") {
    retry_budget b(no_floor(3.0));
    CHECK(b.snapshot().tokens == 3.0);
    CHECK(b.try_retry(at(1s)));
    CHECK(b.snapshot().tokens == 2.0);
    CHECK(b.try_retry(at(1s)));
    CHECK(b.try_retry(at(1s)));
    CHECK(!b.try_retry(at(1s)));
    CHECK(!b.try_retry(at(2s)));
    CHECK(b.snapshot().tokens == 0.0);
  }
  SECTION("less than one token refuses") {
    retry_budget b(no_floor(2.5));
    CHECK(retries_granted(b, at(1s), 5) == 2);
    CHECK(b.snapshot().tokens == 0.5);
  }
  SECTION("zero tokens refuse the first retry") {
    retry_budget b(no_floor(0.0));
    CHECK(!b.try_retry(at(1s)));
  }
}

TEST_CASE("budget: successes earn retry_ratio tokens, up to max_tokens", "[budget]") {
  SECTION("four successes at 0.25 earn one retry") {
    retry_budget b(no_floor(0.0, 0.25));
    for (int i = 0; i < 3; ++i) b.on_success(at(1s));
    CHECK(b.snapshot().tokens == 0.75);
    CHECK(!b.try_retry(at(1s)));
    b.on_success(at(1s));
    CHECK(b.snapshot().tokens == 1.0);
    CHECK(b.try_retry(at(1s)));
    CHECK(!b.try_retry(at(1s)));
  }
  SECTION("the default ratio: five successes per retry") {
    retry_budget b(no_floor(0.0));
    for (int i = 0; i < 5; ++i) b.on_success(at(1s));
    CHECK(retries_granted(b, at(1s), 3) == 1);
  }
  SECTION("capped at max_tokens") {
    retry_budget b(no_floor(2.0, 1.0, 3.0));
    for (int i = 0; i < 10; ++i) b.on_success(at(1s));
    CHECK(b.snapshot().tokens == 3.0);
    CHECK(retries_granted(b, at(1s), 10) == 3);
  }
  SECTION("a zero ratio earns nothing") {
    retry_budget b(no_floor(0.0, 0.0));
    for (int i = 0; i < 10; ++i) b.on_success(at(1s));
    CHECK(b.snapshot().tokens == 0.0);
    CHECK(b.snapshot().successes == 10);
  }
}

TEST_CASE("budget: first attempts never spend", "[budget]") {
  retry_budget b(no_floor(1.0));
  for (int i = 0; i < 100; ++i) b.on_first_attempt(at(1s));
  CHECK(b.snapshot().tokens == 1.0);
  CHECK(b.snapshot().first_attempts == 100);
  CHECK(b.try_retry(at(1s)));
  CHECK(!b.try_retry(at(1s)));
  b.on_first_attempt(at(2s));  // still allowed: it is counted, not charged
  CHECK(b.snapshot().first_attempts == 101);
}

TEST_CASE("budget: the per-second floor refills lazily from the first call's time", "[budget]") {
  budget_options o;
  o.initial_tokens = 0.0;
  o.retry_ratio = 0.0;
  o.min_retries_per_second = 2.0;
  o.max_tokens = 5.0;
  retry_budget b(o);

  // The first call only sets the reference: 100 s since the clock's epoch earn nothing.
  CHECK(!b.try_retry(at(100s)));
  CHECK(b.snapshot().tokens == 0.0);

  // One second later: two tokens.
  CHECK(b.try_retry(at(101s)));
  CHECK(b.try_retry(at(101s)));
  CHECK(!b.try_retry(at(101s)));

  // Half a second: one token.
  CHECK(b.try_retry(at(101500ms)));
  CHECK(!b.try_retry(at(101500ms)));

  // A quarter second: half a token, which carries over.
  CHECK(!b.try_retry(at(101750ms)));
  CHECK(b.try_retry(at(102s)));

  // A long quiet spell saves up max_tokens at most.
  CHECK(retries_granted(b, at(1000s), 20) == 5);

  // Only try_retry refills: time passing alone changes nothing until the next call.
  b.on_success(at(2000s));
  b.on_first_attempt(at(2000s));
  CHECK(b.snapshot().tokens == 0.0);
  CHECK(b.try_retry(at(2000s)));
}

TEST_CASE("budget: a time before the last refill earns nothing", "[budget]") {
  budget_options o;
  o.initial_tokens = 0.0;
  o.min_retries_per_second = 1.0;
  retry_budget b(o);
  CHECK(!b.try_retry(at(100s)));
  CHECK(!b.try_retry(at(50s)));
  CHECK(!b.try_retry(at(100s)));
  CHECK(b.try_retry(at(101s)));
}

TEST_CASE("budget: copies share one bucket", "[budget]") {
  retry_budget one(no_floor(2.0));
  const retry_budget two = one;  // NOLINT(performance-unnecessary-copy-initialization)
  CHECK(two.try_retry(at(1s)));
  CHECK(one.try_retry(at(1s)));
  CHECK(!two.try_retry(at(1s)));
  CHECK(!one.try_retry(at(1s)));
  for (int i = 0; i < 5; ++i) two.on_success(at(1s));
  CHECK(one.snapshot().tokens == 1.0);
  CHECK(one.snapshot().retries_allowed == 2);
  CHECK(one.snapshot().retries_refused == 2);

  retry_budget separate(no_floor(2.0));
  CHECK(separate.snapshot().tokens == 2.0);
}

TEST_CASE("budget: snapshot counters", "[budget]") {
  retry_budget b(no_floor(2.0, 0.5));
  b.on_first_attempt(at(1s));
  b.on_first_attempt(at(1s));
  b.on_first_attempt(at(1s));
  CHECK(retries_granted(b, at(1s), 4) == 2);
  b.on_success(at(1s));
  b.on_success(at(1s));
  const auto s = b.snapshot();
  CHECK(s.first_attempts == 3);
  CHECK(s.retries_allowed == 2);
  CHECK(s.retries_refused == 2);
  CHECK(s.successes == 2);
  CHECK(s.tokens == 1.0);
}

TEST_CASE("budget: budget_options::validate names the bad parameter", "[budget]") {
  CHECK(validation_message(budget_options{}).empty());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  struct bad_case {
    const char* parameter;
    budget_options options;
  };
  std::vector<bad_case> cases;
  auto add = [&cases](const char* name, auto change) {
    budget_options o;
    change(o);
    cases.push_back({name, o});
  };
  add("retry_ratio", [](budget_options& o) { o.retry_ratio = -0.1; });
  add("retry_ratio", [nan](budget_options& o) { o.retry_ratio = nan; });
  add("retry_ratio", [inf](budget_options& o) { o.retry_ratio = inf; });
  add("min_retries_per_second", [](budget_options& o) { o.min_retries_per_second = -1.0; });
  add("min_retries_per_second", [nan](budget_options& o) { o.min_retries_per_second = nan; });
  add("min_retries_per_second", [inf](budget_options& o) { o.min_retries_per_second = inf; });
  add("max_tokens", [](budget_options& o) { o.max_tokens = 0.5; });
  add("max_tokens", [nan](budget_options& o) { o.max_tokens = nan; });
  add("max_tokens", [inf](budget_options& o) { o.max_tokens = inf; });
  add("initial_tokens", [](budget_options& o) { o.initial_tokens = -1.0; });
  add("initial_tokens", [nan](budget_options& o) { o.initial_tokens = nan; });
  add("initial_tokens", [](budget_options& o) { o.initial_tokens = o.max_tokens + 1.0; });

  for (const auto& c : cases) {
    CAPTURE(c.parameter);
    const std::string what = validation_message(c.options);
    CAPTURE(what);
    CHECK(contains(what, c.parameter));
    REQUIRE_THROWS_AS(retry_budget(c.options), std::invalid_argument);
  }
}

TEST_CASE("budget: no_budget always allows", "[budget]") {
  CHECK(std::is_empty_v<failover::no_budget>);
  CHECK(std::is_same_v<failover::default_policies::budget, failover::no_budget>);
  CHECK(std::is_same_v<failover::resilient_policies::budget, failover::retry_budget>);
  const failover::no_budget nb;
  for (int i = 0; i < 1000; ++i) CHECK(nb.try_retry(at(1s)));
}

// ---------------------------------------------------------------------------------------------
// In a chain
// ---------------------------------------------------------------------------------------------

namespace {

struct budget_policies : failover::testing::fake_policies {
  using budget = failover::retry_budget;
};
using chain_t = failover::basic_fallback_chain<int(), budget_policies>;
using answer = failover::outcome<int>;

using failover_test::attempts;
using failover_test::exact;

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

TEST_CASE("budget chain: a refused retry falls back at once", "[budget]") {
  failover::testing::fake_clock clock;
  chain_t chain;
  const auto sleeper = failover::testing::use_fake_time(chain, clock);
  chain.budget() = retry_budget(no_floor(1.0));
  int a_calls = 0, b_calls = 0;
  chain
      .add("alpha", failing(failover::failure::http(503), a_calls), failover::role::standard,
           attempts(5), exact(1s))
      .add("beta", answering(2, b_calls));

  const auto r = chain.run();
  REQUIRE(r.has_value());
  CHECK(*r == 2);
  CHECK(r.served_by() == "beta");
  CHECK(r.fallback_used());
  CHECK(a_calls == 2);  // the first retry went, the next was refused
  CHECK(sleeper.sleeps() == std::vector<duration>{1s});
  REQUIRE(r.trace().size() == 3);
  CHECK(r.trace().attempts()[0].stop == stop_reason::none);
  CHECK(r.trace().attempts()[0].wait == 1s);
  const auto& refused = r.trace().attempts()[1];
  CHECK(refused.stop == stop_reason::budget_exhausted);
  CHECK(refused.wait == duration::zero());
  CHECK(refused.why_wait == failover::wait_reason::none);

  const std::string printed = fmt::format("{}", r.trace());
  CAPTURE(printed);
  CHECK(contains(printed, "no retry: budget exhausted"));
  CHECK(contains(printed, "gave up on alpha: no retry: budget exhausted; falling back to beta"));

  const auto s = chain.budget().snapshot();
  CHECK(s.first_attempts == 1);
  CHECK(s.retries_allowed == 1);
  CHECK(s.retries_refused == 1);
  CHECK(s.successes == 1);
}

TEST_CASE("budget chain: with nothing to fall back to, the model's error ends the call",
          "[budget]") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  chain.budget() = retry_budget(no_floor(0.0));
  int calls = 0;
  chain.add("alpha", failing(failover::failure::http(503), calls), failover::role::standard,
            attempts(5), exact(1s));
  const auto r = chain.run();
  CHECK(!r.has_value());
  CHECK(calls == 1);
  CHECK(r.error().kind == failover::error_kind::server_error);
  CHECK(r.stop() == stop_reason::budget_exhausted);
}

TEST_CASE("budget chain: one budget shared by two chains is drained by both", "[budget]") {
  failover::testing::fake_clock clock;
  chain_t one, two;
  failover::testing::use_fake_time(one, clock);
  failover::testing::use_fake_time(two, clock);
  one.budget() = retry_budget(no_floor(2.0, 0.0));
  two.budget() = one.budget();
  int a1 = 0, b1 = 0, a2 = 0, b2 = 0;
  one.add("alpha", failing(failover::failure::http(503), a1), failover::role::standard, attempts(5),
          exact(1s))
      .add("beta", answering(1, b1));
  two.add("alpha", failing(failover::failure::http(503), a2), failover::role::standard, attempts(5),
          exact(1s))
      .add("beta", answering(2, b2));

  CHECK(one.run().value() == 1);
  CHECK(a1 == 3);  // two retries spent both tokens
  const auto r = two.run();
  CHECK(r.value() == 2);
  CHECK(a2 == 1);  // nothing left for chain two
  CHECK(r.trace().attempts()[0].stop == stop_reason::budget_exhausted);

  const auto s = two.budget().snapshot();
  CHECK(s.first_attempts == 2);
  CHECK(s.retries_allowed == 2);
  CHECK(s.retries_refused == 2);
  CHECK(s.successes == 2);
  CHECK(one.budget().snapshot().retries_refused == 2);
}

TEST_CASE("budget chain: a default chain retries as its retry policy says", "[budget]") {
  failover::basic_fallback_chain<int(), failover::testing::fake_policies> chain;
  failover::testing::fake_clock clock;
  const auto sleeper = failover::testing::use_fake_time(chain, clock);
  int a_calls = 0, b_calls = 0;
  chain
      .add("alpha", failing(failover::failure::http(503), a_calls), failover::role::standard,
           attempts(5), exact(1s))
      .add("beta", answering(2, b_calls));
  for (int i = 0; i < 5; ++i) {
    const auto r = chain.run();
    CHECK(r.value() == 2);
    CHECK(r.trace().attempts()[4].stop == stop_reason::attempts_exhausted);
  }
  CHECK(a_calls == 25);  // no budget: every call gets all five attempts
  CHECK(sleeper.sleeps().size() == 20);
}

TEST_CASE("budget: one moved from still shares the bucket", "[budget]") {
  // As its copies do: a move shares the bucket, so nothing about a budget moved from is null.
  retry_budget budget(budget_options{0.5, 0.0, 20.0, 2.0});
  retry_budget moved(std::move(budget));
  CHECK(moved.try_retry(time_point{}));
  // NOLINTBEGIN(bugprone-use-after-move): what a budget moved from does is the point
  CHECK(budget.try_retry(time_point{}));
  CHECK_FALSE(budget.try_retry(time_point{}));
  budget.on_first_attempt(time_point{});
  budget.on_success(time_point{});
  CHECK(budget.snapshot().retries_allowed == 2);
  CHECK(budget.snapshot().successes == 1);
  CHECK(budget.options().retry_ratio == 0.5);
  retry_budget assigned;
  assigned = std::move(moved);
  CHECK(moved.snapshot().tokens == 0.5);
  // NOLINTEND(bugprone-use-after-move)
  CHECK(assigned.snapshot().first_attempts == 1);
}
