// Nothing escapes run(): a value whose move throws, an argument whose copy throws, a Sleeper or a
// Backoff that throws each end the attempt or the call with an error, and nothing counts a success
// for an attempt that then failed. (A throwing Clock, Breaker or Budget does not compile:
// tests/compile_fail.)
#include "catch.hpp"
#include "support.hpp"

#include <failover/failover.hpp>
#include <failover/testing.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

using namespace std::chrono_literals;

namespace {

using failover::error_kind;
using failover::stop_reason;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A value that can be moved `moves_left` more times; the move after that throws.
struct fragile {
  int value = 0;
  int moves_left = 0;
  fragile(int v, int moves) : value(v), moves_left(moves) {}
  fragile(const fragile&) = default;
  fragile(fragile&& other) : value(other.value), moves_left(other.moves_left - 1) {
    if (other.moves_left == 0) throw std::runtime_error("this value cannot move again");
  }
  fragile& operator=(const fragile&) = default;
  fragile& operator=(fragile&&) = default;
  ~fragile() = default;
};

// An argument whose copies throw (its moves do not).
struct uncopyable_arg {
  int value = 0;
  explicit uncopyable_arg(int v) : value(v) {}
  uncopyable_arg(const uncopyable_arg&) { throw std::runtime_error("no copy"); }
  uncopyable_arg(uncopyable_arg&&) noexcept = default;
  uncopyable_arg& operator=(const uncopyable_arg&) = delete;
  uncopyable_arg& operator=(uncopyable_arg&&) noexcept = default;
  ~uncopyable_arg() = default;
};

struct counted_policies : failover::testing::fake_policies {
  using breaker = failover::circuit_breaker;
  using budget = failover::retry_budget;
  using hooks = failover::callback_hooks;
};

struct throwing_sleeper {
  bool sleep_for(failover::duration, const failover::cancel_token&) const {
    throw std::runtime_error("the sleeper broke");
  }
};
struct throwing_sleeper_policies : failover::testing::fake_policies {
  using sleeper = throwing_sleeper;
};

struct throwing_backoff {
  bool throw_on_copy = false;
  throwing_backoff() = default;
  throwing_backoff(const throwing_backoff& other) : throw_on_copy(other.throw_on_copy) {
    if (throw_on_copy) throw std::runtime_error("no copy");
  }
  throwing_backoff(throwing_backoff&&) noexcept = default;
  throwing_backoff& operator=(const throwing_backoff&) = default;
  throwing_backoff& operator=(throwing_backoff&&) noexcept = default;
  ~throwing_backoff() = default;
  failover::duration next(int) { throw std::runtime_error("no backoff today"); }
};
struct throwing_backoff_policies : failover::testing::fake_policies {
  using backoff = throwing_backoff;
};

failover::outcome<int> unavailable() {
  return failover::failure::http(503);
}

}  // namespace

TEST_CASE("no escape: a value whose move throws is a failed attempt, never a success") {
  failover::basic_fallback_chain<fragile(), counted_policies> chain;
  failover::testing::use_fake_time(chain, failover::testing::fake_clock{});
  int ok_ends = 0;
  int failed_ends = 0;
  chain.hooks().attempt_end = [&](const failover::attempt_ended& e) {
    ++(e.ok ? ok_ends : failed_ends);
  };
  // One move is allowed (into the callable's outcome); moving into the result throws.
  chain.add("fragile", [] { return fragile(1, 1); });

  SECTION("alone: the call ends with an unknown error holding what the move threw") {
    failover::result<fragile> r(nullptr);
    REQUIRE_NOTHROW(r = chain.run());
    CHECK_FALSE(r.has_value());
    CHECK(r.error().kind == error_kind::unknown);
    CHECK(contains(r.error().message, "moving the answer into the result threw"));
    CHECK(r.error().exception != nullptr);
    REQUIRE(r.trace().size() == 1);
    CHECK_FALSE(r.trace().attempts()[0].ok);
    CHECK(r.served_by().empty());
  }
  SECTION("with a fallback: it serves, and the failed attempt counted no success") {
    chain.add("sturdy", [] { return fragile(2, 100); });
    const failover::result<fragile> r = chain.run();
    REQUIRE(r.has_value());
    CHECK(r->value == 2);
    CHECK(r.served_by() == "sturdy");
    CHECK(r.trace().attempts()[0].error().kind == error_kind::unknown);
    CHECK(chain.breaker().snapshot("sturdy")->successes == 1);
  }
  CHECK(failed_ends == 1);
  CHECK(chain.breaker().snapshot("fragile")->successes == 0);
  CHECK(chain.budget().snapshot().successes == static_cast<std::uint64_t>(ok_ends));
}

TEST_CASE("no escape: a retrier whose value's move throws ends with an error") {
  failover::basic_retrier<counted_policies> retrier("fragile");
  failover::testing::use_fake_time(retrier, failover::testing::fake_clock{});
  failover::result<fragile> r(nullptr);
  REQUIRE_NOTHROW(r = retrier.run([] { return fragile(1, 1); }));
  CHECK_FALSE(r.has_value());
  CHECK(r.error().kind == error_kind::unknown);
  CHECK(retrier.breaker().snapshot("fragile")->successes == 0);
  CHECK(retrier.budget().snapshot().successes == 0);
  // A value that moves well still succeeds, and is counted.
  CHECK(retrier.run([] { return fragile(1, 100); }).has_value());
  CHECK(retrier.budget().snapshot().successes == 1);
}

TEST_CASE("no escape: an argument whose copy throws fails that attempt only") {
  SECTION("chain: the callable taking a copy fails, the one taking a reference serves") {
    failover::basic_fallback_chain<int(uncopyable_arg), failover::testing::fake_policies> chain;
    failover::testing::use_fake_time(chain, failover::testing::fake_clock{});
    chain.add("by-value", [](uncopyable_arg a) { return a.value; });
    chain.add("by-reference", [](const uncopyable_arg& a) { return a.value + 1; });
    failover::result<int> r(nullptr);
    REQUIRE_NOTHROW(r = chain.run(uncopyable_arg(41)));
    REQUIRE(r.has_value());
    CHECK(*r == 42);
    CHECK(r.served_by() == "by-reference");
    CHECK(r.trace().attempts()[0].error().kind == error_kind::unknown);
    CHECK(r.trace().attempts()[0].error().exception != nullptr);
  }
  SECTION("retrier") {
    failover::basic_retrier<failover::testing::fake_policies> retrier("m");
    failover::testing::use_fake_time(retrier, failover::testing::fake_clock{});
    const uncopyable_arg arg(1);
    failover::result<int> r(nullptr);
    REQUIRE_NOTHROW(r = retrier.run([](uncopyable_arg a) { return a.value; }, arg));
    CHECK_FALSE(r.has_value());
    CHECK(r.error().kind == error_kind::unknown);
    CHECK(retrier.run([](const uncopyable_arg& a) { return a.value; }, arg).value() == 1);
  }
}

TEST_CASE("no escape: a Sleeper that throws ends the call with an error naming it") {
  failover::basic_fallback_chain<int(), throwing_sleeper_policies> chain;
  chain.clock() = failover::testing::fake_clock{};
  int calls = 0;
  chain.add("m", [&calls] {
    ++calls;
    return unavailable();
  });
  chain.add("n", [] { return 7; });
  failover::result<int> r(nullptr);
  REQUIRE_NOTHROW(r = chain.run());
  CHECK_FALSE(r.has_value());
  CHECK(calls == 1);  // the wait before the retry threw: no more attempts, no fallback
  CHECK(r.error().kind == error_kind::unknown);
  CHECK(contains(r.error().message, "the Sleeper policy threw"));
  CHECK(r.error().model == "m");
  CHECK(r.error().exception != nullptr);
  CHECK(r.stop() == stop_reason::permanent_error);
}

TEST_CASE("no escape: a Backoff that throws ends the call with an error naming it") {
  SECTION("next() throws") {
    failover::basic_fallback_chain<int(), throwing_backoff_policies> chain;
    failover::testing::use_fake_time(chain, failover::testing::fake_clock{});
    chain.add("m", [] { return unavailable(); });
    failover::result<int> r(nullptr);
    REQUIRE_NOTHROW(r = chain.run());
    CHECK_FALSE(r.has_value());
    CHECK(contains(r.error().message, "the Backoff policy's next() threw"));
    CHECK(r.error().exception != nullptr);
    CHECK(r.stop() == stop_reason::permanent_error);
  }
  SECTION("its copy for the call throws") {
    throwing_backoff fussy;
    fussy.throw_on_copy = true;
    failover::basic_retrier<throwing_backoff_policies> strict("m", {}, std::move(fussy));
    failover::testing::use_fake_time(strict, failover::testing::fake_clock{});
    failover::result<int> r(nullptr);
    REQUIRE_NOTHROW(r = strict.run([] { return unavailable(); }));
    CHECK_FALSE(r.has_value());
    CHECK(contains(r.error().message, "copying the Backoff policy threw"));
  }
}

TEST_CASE("no escape: the stepped machine ends a call whose driver's wait threw") {
  failover::basic_fallback_chain<int(), failover::testing::fake_policies> chain;
  failover::testing::use_fake_time(chain, failover::testing::fake_clock{});
  chain.add("m", [] { return unavailable(); });
  auto call = chain.begin_call(failover::call_options{});
  const auto first = call.poll();
  REQUIRE(first);
  const auto* start = std::get_if<failover::actions::start_attempt>(&*first);
  REQUIRE(start);
  const auto t = chain.clock().now();
  call.handle(failover::events::answered<int>{start->id, unavailable()}, t);
  const auto second = call.poll();
  REQUIRE(second);
  REQUIRE(std::holds_alternative<failover::actions::sleep_until>(*second));
  std::exception_ptr timer_error;
  try {
    throw std::runtime_error("timer broke");
  } catch (...) {
    timer_error = std::current_exception();
  }
  call.handle(failover::events::driver_failed{"the timer", timer_error}, t);
  const auto third = call.poll();
  REQUIRE(third);
  CHECK(std::holds_alternative<failover::actions::done>(*third));
  call.handle(failover::events::timer_fired{}, t);  // out of turn now: nothing changes
  CHECK_FALSE(call.poll());
  const auto r = std::move(call).take();
  CHECK_FALSE(r.has_value());
  CHECK(contains(r.error().message, "the timer threw"));
  CHECK(r.error().exception == timer_error);
}
