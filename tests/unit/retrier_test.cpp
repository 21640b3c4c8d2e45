// The retrier on fake time: every stop rule, the server wait as a floor, deadlines, cancellation,
// the attempt context, every callable form, exceptions and constructor validation.
#include "catch.hpp"
#include "support.hpp"

#include <failover/failover.hpp>
#include <failover/testing.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;

namespace {

using fake_retrier = failover::basic_retrier<failover::testing::fake_policies>;
using failover::duration;
using failover::error_kind;
using failover::stop_reason;
using failover::wait_reason;

// Jitter-free backoff: the wait before retry n is exactly min(cap, base * 2^(n-1)).
using failover_test::attempts;
using failover_test::exact;

failover::exponential_backoff<> seeded(std::uint64_t seed = 42) {
  return failover::exponential_backoff<>(failover::backoff_options{}, seed);
}

failover::failure rate_limited_after(const char* retry_after_seconds) {
  return failover::failure::http(429, "rate_limit_exceeded", "slow down")
      .header("Retry-After", retry_after_seconds);
}

// Durations as nanosecond counts, so that Catch prints them when a check fails.
std::vector<long long> ns(const std::vector<duration>& v) {
  std::vector<long long> out;
  for (const auto& d : v) out.push_back(static_cast<long long>(d.count()));
  return out;
}

// A call ends with exactly one of a value or an error.
template <class T>
void check_single_end(const failover::result<T>& r) {
  CHECK(r.stop() != stop_reason::none);
  CHECK(r.has_value() == (r.stop() == stop_reason::succeeded));
}

struct not_mapped {
  int code;
};

}  // namespace

TEST_CASE("retrier: success on the first try makes one call and never sleeps") {
  fake_retrier r("model-a", {}, seeded());
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(r, clock);
  int calls = 0;
  auto res = r.run([&] {
    ++calls;
    return 42;
  });
  REQUIRE(res.has_value());
  CHECK(*res == 42);
  CHECK(res.value() == 42);
  CHECK(calls == 1);
  CHECK(sleeper.sleeps().empty());
  CHECK(clock.elapsed() == duration::zero());
  CHECK(res.stop() == stop_reason::succeeded);
  REQUIRE(res.trace().size() == 1);
  CHECK(res.trace().attempts()[0].ok);
  CHECK(res.served_by() == "model-a");
  CHECK_FALSE(res.fallback_used());
  check_single_end(res);
}

TEST_CASE("retrier: success after transient failures") {
  fake_retrier r("model-a", {}, exact(100ms));
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(r, clock);
  int calls = 0;
  auto res = r.run([&]() -> failover::outcome<int> {
    ++calls;
    if (calls == 1) return failover::failure::http(503, "", "unavailable");
    if (calls == 2) return failover::failure::of(failover::transport_error::connection_reset);
    return 7;
  });
  REQUIRE(res.has_value());
  CHECK(*res == 7);
  CHECK(calls == 3);
  const auto sleeps = sleeper.sleeps();
  REQUIRE(sleeps.size() == 2);
  CHECK(sleeps[0] == 100ms);
  CHECK(sleeps[1] == 200ms);
  CHECK(clock.elapsed() == 300ms);
  const auto& a = res.trace().attempts();
  REQUIRE(a.size() == 3);
  CHECK(a[0].error().kind == error_kind::server_error);
  CHECK(a[0].why_wait == wait_reason::backoff);
  CHECK(a[0].wait == sleeps[0]);
  CHECK(a[1].error().kind == error_kind::connection_error);
  CHECK(a[1].wait == sleeps[1]);
  CHECK(a[2].ok);
  CHECK(a[2].why_wait == wait_reason::none);
  CHECK(res.trace().total_wait() == 300ms);
  check_single_end(res);
}

TEST_CASE("retrier: a permanent error makes exactly one call and no sleep") {
  fake_retrier r("model-a", {}, seeded());
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(r, clock);
  int calls = 0;
  auto res = r.run([&]() -> failover::outcome<int> {
    ++calls;
    return failover::failure::http(401, "invalid_api_key", "bad key");
  });
  REQUIRE_FALSE(res.has_value());
  CHECK(calls == 1);
  CHECK(sleeper.sleeps().empty());
  CHECK(res.stop() == stop_reason::permanent_error);
  CHECK(res.error().kind == error_kind::unauthorized);
  CHECK_FALSE(res.error().transient);
  REQUIRE(res.error().status.has_value());
  CHECK(*res.error().status == 401);
  CHECK(res.error().code == "invalid_api_key");
  CHECK(res.error().model == "model-a");
  CHECK(res.served_by().empty());
  REQUIRE(res.trace().size() == 1);
  CHECK(res.trace().attempts()[0].stop == stop_reason::permanent_error);
  check_single_end(res);
}

TEST_CASE("retrier: the attempts cap counts every attempt, the first included") {
  SECTION("default: 5 attempts in all, 4 sleeps") {
    fake_retrier r("model-a", {}, seeded());
    failover::testing::fake_clock clock;
    auto sleeper = failover::testing::use_fake_time(r, clock);
    int calls = 0;
    auto res = r.run([&]() -> failover::outcome<int> {
      ++calls;
      return failover::failure::http(500);
    });
    CHECK(calls == 5);
    CHECK(sleeper.sleeps().size() == 4);
    CHECK(res.stop() == stop_reason::attempts_exhausted);
    CHECK(res.error().kind == error_kind::server_error);
    REQUIRE(res.trace().size() == 5);
    for (std::size_t i = 0; i < 4; ++i) CHECK(res.trace().attempts()[i].stop == stop_reason::none);
    CHECK(res.trace().attempts()[4].stop == stop_reason::attempts_exhausted);
    CHECK(res.trace().attempts()[4].wait == duration::zero());
    check_single_end(res);
  }
  SECTION("max_attempts 3: 3 calls, 2 sleeps") {
    fake_retrier r("model-a", attempts(3), seeded());
    failover::testing::fake_clock clock;
    auto sleeper = failover::testing::use_fake_time(r, clock);
    int calls = 0;
    auto res = r.run([&]() -> failover::outcome<int> {
      ++calls;
      return failover::failure::http(529);
    });
    CHECK(calls == 3);
    CHECK(sleeper.sleeps().size() == 2);
    CHECK(res.stop() == stop_reason::attempts_exhausted);
    CHECK(res.error().kind == error_kind::overloaded);
  }
  SECTION("max_attempts 1: no retry at all") {
    fake_retrier r("model-a", attempts(1), seeded());
    failover::testing::fake_clock clock;
    auto sleeper = failover::testing::use_fake_time(r, clock);
    int calls = 0;
    auto res = r.run([&]() -> failover::outcome<int> {
      ++calls;
      return failover::failure::http(503);
    });
    CHECK(calls == 1);
    CHECK(sleeper.sleeps().empty());
    CHECK(res.stop() == stop_reason::attempts_exhausted);
  }
}

TEST_CASE("retrier: backoff waits without jitter follow base * 2^(n-1), capped") {
  fake_retrier r("model-a", attempts(7), exact(100ms, 1s));
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(r, clock);
  auto res = r.run([]() -> failover::outcome<int> { return failover::failure::http(503); });
  const std::vector<duration> expected{100ms, 200ms, 400ms, 800ms, 1s, 1s};
  CHECK(ns(sleeper.sleeps()) == ns(expected));
  CHECK(clock.elapsed().count() == duration(3500ms).count());
  CHECK(res.trace().total_wait().count() == duration(3500ms).count());
  for (const auto& a : res.trace().attempts())
    if (a.wait > duration::zero()) CHECK(a.why_wait == wait_reason::backoff);
}

TEST_CASE("retrier: jittered backoff stays within the exponential bound") {
  fake_retrier r("model-a", attempts(6),
                 failover::exponential_backoff<>(failover::backoff_options{100ms, 2.0, 1s}, 7));
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(r, clock);
  auto res = r.run([]() -> failover::outcome<int> { return failover::failure::http(503); });
  const auto sleeps = sleeper.sleeps();
  REQUIRE(sleeps.size() == 5);
  duration bound = 100ms;
  for (const auto& s : sleeps) {
    CHECK(s >= duration::zero());
    CHECK(s <= bound);
    bound = std::min<duration>(bound * 2, 1s);
  }
}

TEST_CASE("retrier: read timeouts are retried at most max_read_timeout_retries times") {
  auto read_timeout = []() -> failover::outcome<int> {
    return failover::failure::of(failover::transport_error::read_timeout);
  };
  SECTION("default: one retry, two calls") {
    fake_retrier r("model-a", {}, seeded());
    failover::testing::fake_clock clock;
    auto sleeper = failover::testing::use_fake_time(r, clock);
    int calls = 0;
    auto res = r.run([&] {
      ++calls;
      return read_timeout();
    });
    CHECK(calls == 2);
    CHECK(sleeper.sleeps().size() == 1);
    CHECK(res.stop() == stop_reason::read_timeouts_exhausted);
    CHECK(res.error().kind == error_kind::read_timeout);
  }
  SECTION("zero retries: one call") {
    failover::retry_options o;
    o.max_read_timeout_retries = 0;
    fake_retrier r("model-a", o, seeded());
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(r, clock);
    int calls = 0;
    auto res = r.run([&] {
      ++calls;
      return read_timeout();
    });
    CHECK(calls == 1);
    CHECK(res.stop() == stop_reason::read_timeouts_exhausted);
  }
  SECTION("the attempts cap still applies above the read-timeout allowance") {
    failover::retry_options o;
    o.max_read_timeout_retries = 10;
    o.max_attempts = 3;
    fake_retrier r("model-a", o, seeded());
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(r, clock);
    int calls = 0;
    auto res = r.run([&] {
      ++calls;
      return read_timeout();
    });
    CHECK(calls == 3);
    CHECK(res.stop() == stop_reason::attempts_exhausted);
  }
  SECTION("read timeouts are counted across other failures, not only in a row") {
    fake_retrier r("model-a", {}, seeded());
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(r, clock);
    int calls = 0;
    auto res = r.run([&]() -> failover::outcome<int> {
      ++calls;
      if (calls == 1 || calls == 4)
        return failover::failure::of(failover::transport_error::read_timeout);
      return failover::failure::of(failover::transport_error::connect_timeout);
    });
    CHECK(calls == 4);
    CHECK(res.stop() == stop_reason::read_timeouts_exhausted);
  }
}

TEST_CASE("retrier: connect timeouts are retried up to the attempts cap") {
  fake_retrier r("model-a", {}, seeded());
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(r, clock);
  int calls = 0;
  auto res = r.run([&]() -> failover::outcome<int> {
    ++calls;
    return failover::failure::of(failover::transport_error::connect_timeout);
  });
  CHECK(calls == 5);
  CHECK(sleeper.sleeps().size() == 4);
  CHECK(res.stop() == stop_reason::attempts_exhausted);
  CHECK(res.error().kind == error_kind::connect_timeout);
}

TEST_CASE("retrier: a server wait longer than max_server_wait stops at once") {
  fake_retrier r("model-a", {}, seeded());
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(r, clock);
  int calls = 0;
  auto res = r.run([&]() -> failover::outcome<int> {
    ++calls;
    return rate_limited_after("120");  // default max_server_wait is 60 s
  });
  CHECK(calls == 1);
  CHECK(sleeper.sleeps().empty());
  CHECK(res.stop() == stop_reason::server_wait_too_long);
  CHECK(res.error().kind == error_kind::rate_limited);
  REQUIRE(res.error().retry_after.has_value());
  CHECK(*res.error().retry_after == 120s);
  check_single_end(res);

  SECTION("a larger max_server_wait honours the same wait") {
    failover::retry_options o;
    o.max_server_wait = 200s;
    o.max_attempts = 2;
    fake_retrier patient("model-a", o, seeded());
    failover::testing::fake_clock clock2;
    auto sleeper2 = failover::testing::use_fake_time(patient, clock2);
    auto res2 = patient.run([]() -> failover::outcome<int> { return rate_limited_after("120"); });
    REQUIRE(sleeper2.sleeps().size() == 1);
    CHECK(sleeper2.sleeps()[0] >= 120s);
    CHECK(res2.stop() == stop_reason::attempts_exhausted);
  }
}

TEST_CASE("retrier: the server's wait is a floor, and the backoff is added to it") {
  SECTION("seeded jitter: every sleep is at least the server's wait") {
    fake_retrier r("model-a", {}, seeded(3));
    failover::testing::fake_clock clock;
    auto sleeper = failover::testing::use_fake_time(r, clock);
    auto res = r.run([]() -> failover::outcome<int> {
      return failover::failure::http(429).header("retry-after-ms", "1500");
    });
    const auto sleeps = sleeper.sleeps();
    REQUIRE(sleeps.size() == 4);
    for (const auto& s : sleeps) CHECK(s >= 1500ms);
    for (std::size_t i = 0; i < 4; ++i) {
      CHECK(res.trace().attempts()[i].why_wait == wait_reason::server);
      CHECK(res.trace().attempts()[i].wait == sleeps[i]);
    }
  }
  SECTION("no jitter: sleep == server wait + backoff exactly") {
    fake_retrier r("model-a", attempts(3), exact(100ms));
    failover::testing::fake_clock clock;
    auto sleeper = failover::testing::use_fake_time(r, clock);
    auto res = r.run([]() -> failover::outcome<int> { return rate_limited_after("2"); });
    const std::vector<duration> expected{2100ms, 2200ms};
    CHECK(ns(sleeper.sleeps()) == ns(expected));
    CHECK(res.stop() == stop_reason::attempts_exhausted);
  }
  SECTION("a server wait on one attempt does not leak into the next one") {
    fake_retrier r("model-a", attempts(3), exact(100ms));
    failover::testing::fake_clock clock;
    auto sleeper = failover::testing::use_fake_time(r, clock);
    int calls = 0;
    auto res = r.run([&]() -> failover::outcome<int> {
      ++calls;
      if (calls == 1) return rate_limited_after("1");
      if (calls == 2) return failover::failure::http(503);
      return 1;
    });
    const std::vector<duration> expected{1100ms, 200ms};
    CHECK(ns(sleeper.sleeps()) == ns(expected));
    REQUIRE(res.trace().size() == 3);
    CHECK(res.trace().attempts()[0].why_wait == wait_reason::server);
    CHECK(res.trace().attempts()[1].why_wait == wait_reason::backoff);
  }
}

TEST_CASE("retrier: a wait that would cross the deadline stops with deadline_exceeded") {
  fake_retrier r("model-a", {}, exact(400ms));
  r.deadline(1s);
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(r, clock);
  int calls = 0;
  auto res = r.run([&]() -> failover::outcome<int> {
    ++calls;
    return failover::failure::http(503, "upstream_busy", "busy");
  });
  // Attempt 1 at 0, wait 400ms; attempt 2 at 400ms, next wait 800ms would end past 1s.
  CHECK(calls == 2);
  REQUIRE(sleeper.sleeps().size() == 1);
  CHECK(sleeper.sleeps()[0] == 400ms);
  CHECK(clock.elapsed() == 400ms);
  REQUIRE_FALSE(res.has_value());
  CHECK(res.stop() == stop_reason::deadline);
  CHECK(res.error().kind == error_kind::deadline_exceeded);
  CHECK_FALSE(res.error().transient);
  REQUIRE(res.error().status.has_value());
  CHECK(*res.error().status == 503);
  CHECK(res.error().code == "upstream_busy");
  CHECK(res.error().model == "model-a");
  // The trace keeps the attempt's own error.
  REQUIRE(res.trace().size() == 2);
  const auto& last = res.trace().attempts()[1];
  CHECK(last.error().kind == error_kind::server_error);
  REQUIRE(last.error().status.has_value());
  CHECK(*last.error().status == 503);
  // The model gave up because its wait would cross the deadline; with nothing to take over, the
  // call ends at the deadline (res.stop() above) without waiting for it.
  CHECK(last.stop == stop_reason::wait_past_deadline);
  CHECK(last.wait == duration::zero());
  check_single_end(res);
}

TEST_CASE("retrier: a server wait past the deadline stops and keeps the server's wait") {
  fake_retrier r("model-a", {}, seeded());
  r.deadline(5s);
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(r, clock);
  int calls = 0;
  auto res = r.run([&]() -> failover::outcome<int> {
    ++calls;
    return rate_limited_after("10");
  });
  CHECK(calls == 1);
  CHECK(sleeper.sleeps().empty());
  CHECK(res.stop() == stop_reason::deadline);
  CHECK(res.error().kind == error_kind::deadline_exceeded);
  REQUIRE(res.error().retry_after.has_value());
  CHECK(*res.error().retry_after == 10s);
  REQUIRE(res.error().status.has_value());
  CHECK(*res.error().status == 429);
  CHECK(res.trace().attempts()[0].error().kind == error_kind::rate_limited);
}

TEST_CASE("retrier: an attempt that runs past the deadline is not retried") {
  fake_retrier r("model-a", {}, exact(1ms));
  r.deadline(1s);
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(r, clock);
  int calls = 0;
  auto res = r.run([&]() -> failover::outcome<int> {
    ++calls;
    clock.advance(2s);
    return failover::failure::http(503);
  });
  CHECK(calls == 1);
  CHECK(sleeper.sleeps().empty());
  CHECK(res.stop() == stop_reason::deadline);
  CHECK(res.error().kind == error_kind::deadline_exceeded);
}

TEST_CASE("retrier: a per-call deadline shorter than the retrier's applies") {
  fake_retrier r("model-a", {}, exact(1s));
  r.deadline(1h);
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(r, clock);
  failover::call_options call;
  call.deadline = 2500ms;
  std::vector<std::optional<duration>> remaining;
  auto res = r.run_with(call, [&](const failover::attempt_context& ctx) -> failover::outcome<int> {
    remaining.push_back(ctx.remaining);
    return failover::failure::http(503);
  });
  // 0: wait 1s; 1s: wait 2s would end at 3s > 2.5s.
  REQUIRE(remaining.size() == 2);
  CHECK(remaining[0] == std::optional<duration>(2500ms));
  CHECK(remaining[1] == std::optional<duration>(1500ms));
  CHECK(res.stop() == stop_reason::deadline);
}

TEST_CASE("retrier: cancellation before the call makes no call") {
  fake_retrier r("model-a", {}, seeded());
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(r, clock);
  failover::cancel_source source;
  source.cancel();
  failover::call_options call;
  call.token = source.token();
  int calls = 0;
  auto res = r.run_with(call, [&] {
    ++calls;
    return 1;
  });
  CHECK(calls == 0);
  REQUIRE_FALSE(res.has_value());
  CHECK(res.stop() == stop_reason::cancelled);
  CHECK(res.error().kind == error_kind::cancelled);
  CHECK(res.error().model == "model-a");
  CHECK(res.trace().size() == 0);
  CHECK(sleeper.sleeps().empty());
  check_single_end(res);
}

TEST_CASE("retrier: cancellation during a wait stops the call") {
  fake_retrier r("model-a", {}, exact(100ms));
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(r, clock);
  failover::cancel_source source;
  sleeper.on_sleep([&](duration) { source.cancel(); });
  failover::call_options call;
  call.token = source.token();
  int calls = 0;
  auto res = r.run_with(call, [&]() -> failover::outcome<int> {
    ++calls;
    return failover::failure::http(503, "busy_code");
  });
  CHECK(calls == 1);
  CHECK(sleeper.sleeps().size() == 1);
  REQUIRE_FALSE(res.has_value());
  CHECK(res.stop() == stop_reason::cancelled);
  CHECK(res.error().kind == error_kind::cancelled);
  REQUIRE(res.error().status.has_value());
  CHECK(*res.error().status == 503);
  CHECK(res.error().code == "busy_code");
  REQUIRE(res.trace().size() == 1);
  CHECK(res.trace().attempts()[0].stop == stop_reason::cancelled);
  CHECK(res.trace().attempts()[0].error().kind == error_kind::server_error);
  check_single_end(res);
}

TEST_CASE("retrier: cancellation from inside the callable is seen by the context and stops") {
  fake_retrier r("model-a", {}, seeded());
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(r, clock);
  failover::cancel_source source;
  failover::call_options call;
  call.token = source.token();
  int calls = 0;
  bool seen_before = true;
  bool seen_after = false;
  auto res = r.run_with(call, [&](const failover::attempt_context& ctx) -> failover::outcome<int> {
    ++calls;
    seen_before = ctx.cancelled();
    source.cancel();
    seen_after = ctx.cancelled();
    return failover::failure::http(503);
  });
  CHECK(calls == 1);
  CHECK_FALSE(seen_before);
  CHECK(seen_after);
  CHECK(res.stop() == stop_reason::cancelled);
  CHECK(res.error().kind == error_kind::cancelled);
  CHECK(sleeper.sleeps().empty());
}

TEST_CASE("retrier: the attempt context tells the model, attempt numbers and time left") {
  fake_retrier r("gpt-test", {}, exact(1s));
  r.deadline(10s);
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(r, clock);
  std::vector<failover::attempt_context> seen;  // `cancel` is only valid during the call
  std::vector<duration> timeouts;
  std::vector<std::string> models;
  std::vector<bool> cancelled;
  auto res = r.run([&](const failover::attempt_context& ctx) -> failover::outcome<int> {
    seen.push_back(ctx);
    models.emplace_back(ctx.model);
    timeouts.push_back(ctx.timeout(30s));
    cancelled.push_back(ctx.cancelled());
    CHECK(ctx.timeout(1ms) == 1ms);
    clock.advance(500ms);
    if (seen.size() < 3) return failover::failure::http(503);
    return 1;
  });
  REQUIRE(res.has_value());
  REQUIRE(seen.size() == 3);
  // Attempt 1 at 0; ends 0.5s, waits 1s; attempt 2 at 1.5s; ends 2s, waits 2s; attempt 3 at 4s.
  const std::vector<duration> remaining{10s, 8500ms, 6s};
  for (std::size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK(models[i] == "gpt-test");
    CHECK(seen[i].attempt == static_cast<int>(i) + 1);
    CHECK(seen[i].total_attempt == static_cast<int>(i) + 1);
    REQUIRE(seen[i].remaining.has_value());
    CHECK(*seen[i].remaining == remaining[i]);
    CHECK(timeouts[i] == remaining[i]);
    CHECK(seen[i].cancel != nullptr);
    CHECK_FALSE(cancelled[i]);
  }
}

TEST_CASE("retrier: without a deadline there is no remaining time and timeouts are unclamped") {
  fake_retrier r("model-a", {}, seeded());
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(r, clock);
  std::optional<duration> remaining = 1s;
  duration timeout{};
  auto res = r.run([&](const failover::attempt_context& ctx) {
    remaining = ctx.remaining;
    timeout = ctx.timeout(30s);
    return 1;
  });
  CHECK_FALSE(remaining.has_value());
  CHECK(timeout == 30s);
}

TEST_CASE("attempt_context::timeout never goes negative") {
  failover::attempt_context ctx;
  ctx.remaining = -5ms;
  CHECK(ctx.timeout(1s) == duration::zero());
  ctx.remaining = 200ms;
  CHECK(ctx.timeout(1s) == 200ms);
  CHECK(ctx.timeout(100ms) == 100ms);
  CHECK_FALSE(ctx.cancelled());
}

namespace {
int plain_function(int a, int b) {
  return a * b;
}
}  // namespace

TEST_CASE("retrier: every callable form is accepted and gets the arguments") {
  fake_retrier r("model-a", {}, seeded());
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(r, clock);

  SECTION("f() returning T") {
    auto res = r.run([] { return std::string("plain"); });
    static_assert(std::is_same_v<decltype(res), failover::result<std::string>>);
    REQUIRE(res.has_value());
    CHECK(*res == "plain");
  }
  SECTION("f() returning outcome<T>") {
    int calls = 0;
    auto res = r.run([&]() -> failover::outcome<std::string> {
      if (++calls == 1) return failover::failure::http(503);
      return std::string("second");
    });
    static_assert(std::is_same_v<decltype(res), failover::result<std::string>>);
    REQUIRE(res.has_value());
    CHECK(*res == "second");
    CHECK(calls == 2);
  }
  SECTION("f(ctx) returning T") {
    auto res = r.run([](const failover::attempt_context& ctx) { return ctx.attempt * 10; });
    static_assert(std::is_same_v<decltype(res), failover::result<int>>);
    REQUIRE(res.has_value());
    CHECK(*res == 10);
  }
  SECTION("f(ctx) returning outcome<T>") {
    auto res = r.run([](const failover::attempt_context& ctx) -> failover::outcome<int> {
      if (ctx.attempt < 3) return failover::failure::http(502);
      return ctx.attempt;
    });
    REQUIRE(res.has_value());
    CHECK(*res == 3);
  }
  SECTION("f(ctx, args...) gets the arguments") {
    const std::string prompt = "hello";
    auto res =
        r.run([](const failover::attempt_context& ctx, const std::string& p,
                 int n) { return std::string(ctx.model) + ":" + p + ":" + std::to_string(n); },
              prompt, 3);
    REQUIRE(res.has_value());
    CHECK(*res == "model-a:hello:3");
  }
  SECTION("f(args...) gets the arguments, including a function pointer") {
    auto res = r.run(&plain_function, 6, 7);
    REQUIRE(res.has_value());
    CHECK(*res == 42);
  }
  SECTION("a mutable lambda passed as an rvalue keeps its state across attempts") {
    auto res = r.run([n = 0]() mutable -> failover::outcome<int> {
      ++n;
      if (n < 3) return failover::failure::http(500);
      return n;
    });
    REQUIRE(res.has_value());
    CHECK(*res == 3);
  }
  SECTION("a failure can be thrown instead of returned") {
    int calls = 0;
    auto res = r.run([&]() -> int {
      if (++calls < 2) throw failover::failure::http(503, "", "thrown");
      return 5;
    });
    REQUIRE(res.has_value());
    CHECK(*res == 5);
    CHECK(calls == 2);
    CHECK(res.trace().attempts()[0].error().kind == error_kind::server_error);
  }
}

TEST_CASE("retrier: exceptions from the callable never escape run") {
  fake_retrier r("model-a", {}, seeded());
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(r, clock);

  SECTION("a mapped exception is retried like its failure") {
    r.classifier().on_exception<std::runtime_error>(error_kind::server_error);
    int calls = 0;
    std::optional<failover::result<int>> res;
    REQUIRE_NOTHROW(res.emplace(r.run([&]() -> int {
      if (++calls < 3) throw std::runtime_error("boom");
      return 9;
    })));
    REQUIRE(res->has_value());
    CHECK(**res == 9);
    CHECK(calls == 3);
    CHECK(res->trace().attempts()[0].error().kind == error_kind::server_error);
    CHECK(res->trace().attempts()[0].error().transient);
  }
  SECTION("an unmapped exception is a permanent unknown error that keeps the exception") {
    int calls = 0;
    std::optional<failover::result<int>> res;
    REQUIRE_NOTHROW(res.emplace(r.run([&]() -> int {
      ++calls;
      throw not_mapped{17};
    })));
    CHECK(calls == 1);
    REQUIRE_FALSE(res->has_value());
    CHECK(res->stop() == stop_reason::permanent_error);
    CHECK(res->error().kind == error_kind::unknown);
    CHECK_FALSE(res->error().transient);
    REQUIRE(res->error().exception != nullptr);
    REQUIRE_THROWS_AS(res->error().rethrow_if_exception(), not_mapped);
    try {
      res->error().rethrow_if_exception();
    } catch (const not_mapped& e) {
      CHECK(e.code == 17);
    }
  }
  SECTION("an error without an exception does not throw from rethrow_if_exception") {
    auto res = r.run([]() -> failover::outcome<int> { return failover::failure::http(401); });
    REQUIRE_NOTHROW(res.error().rethrow_if_exception());
  }
}

TEST_CASE("retrier: result::value() on failure throws call_failed carrying the error") {
  fake_retrier r("model-a", {}, seeded());
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(r, clock);
  auto res = r.run([]() -> failover::outcome<std::string> {
    return failover::failure::http(403, "permission_error", "no");
  });
  REQUIRE_FALSE(res.has_value());
  REQUIRE_FALSE(static_cast<bool>(res));
  REQUIRE_THROWS_AS(res.value(), failover::call_failed);
  const auto& cres = res;
  REQUIRE_THROWS_AS(cres.value(), failover::call_failed);
  bool threw = false;
  try {
    (void)std::move(res).value();
  } catch (const failover::call_failed& e) {
    threw = true;
    CHECK(e.error().kind == error_kind::forbidden);
    REQUIRE(e.error().status.has_value());
    CHECK(*e.error().status == 403);
    CHECK(e.error().code == "permission_error");
    CHECK(std::string(e.what()).find("forbidden") != std::string::npos);
  }
  CHECK(threw);
}

TEST_CASE("retrier: the constructor and deadline() reject bad settings") {
  REQUIRE_THROWS_AS(fake_retrier(""), std::invalid_argument);
  REQUIRE_THROWS_AS(failover::retrier(""), std::invalid_argument);
  REQUIRE_THROWS_AS(fake_retrier("m", attempts(0)), std::invalid_argument);
  REQUIRE_THROWS_AS(fake_retrier("m", attempts(-3)), std::invalid_argument);
  failover::retry_options bad_rt;
  bad_rt.max_read_timeout_retries = -1;
  REQUIRE_THROWS_AS(fake_retrier("m", bad_rt), std::invalid_argument);
  failover::retry_options bad_wait;
  bad_wait.max_server_wait = -1s;
  REQUIRE_THROWS_AS(fake_retrier("m", bad_wait), std::invalid_argument);

  fake_retrier r("m");
  REQUIRE_THROWS_AS(r.deadline(duration::zero()), std::invalid_argument);
  REQUIRE_THROWS_AS(r.deadline(-1s), std::invalid_argument);
  REQUIRE_NOTHROW(r.deadline(1ms));
  CHECK(r.options().max_attempts == 5);
}

TEST_CASE("retrier: a retrier moved from has no model to call", "[retrier]") {
  struct resilient_fake : failover::testing::fake_policies {
    using breaker = failover::circuit_breaker;
    using budget = failover::retry_budget;
  };
  failover::basic_retrier<resilient_fake> retrier("model-a");
  failover::testing::use_fake_time(retrier, failover::testing::fake_clock{});
  int calls = 0;
  auto call = [&calls] { return ++calls; };
  const failover::basic_retrier<resilient_fake> moved(std::move(retrier));
  CHECK(moved.run(call).served_by() == "model-a");
  // NOLINTBEGIN(bugprone-use-after-move): what a retrier moved from does is the point
  const auto r = retrier.run(call);
  CHECK_FALSE(r.has_value());
  CHECK(r.stop() == stop_reason::no_fallback);
  CHECK(r.trace().size() == 0);
  retrier.set_breaker(failover::circuit_breaker{});  // nothing to resolve: no crash
  CHECK(retrier.run(call).stop() == stop_reason::no_fallback);
  // NOLINTEND(bugprone-use-after-move)
  CHECK(calls == 1);
  CHECK(moved.run(call).value() == 2);
}
