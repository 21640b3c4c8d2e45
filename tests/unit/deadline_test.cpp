// A deadline leaves room for fallback; a server wait too long to honour falls back however absurd
// it is; a read timeout moves on when another model can answer; durations at their limits saturate
// instead of overflowing. All on fake time.
#include "catch.hpp"
#include "support.hpp"

#include <failover/failover.hpp>
#include <failover/format.hpp>
#include <failover/testing.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <variant>
#include <vector>

using namespace std::chrono_literals;

namespace {

using chain_t = failover::basic_fallback_chain<std::string(const std::string&),
                                               failover::testing::fake_policies>;
using answer = failover::outcome<std::string>;
using failover::duration;
using failover::error_kind;
using failover::role;
using failover::stop_reason;

using failover_test::attempts;
using failover_test::exact;

struct model_log {
  int calls = 0;
  std::vector<std::optional<duration>> remaining;  // ctx.remaining of each attempt
};

// Fails with `f` after `takes` of fake time, recording what it was told.
auto failing_after(failover::testing::fake_clock clock, failover::failure f, duration takes,
                   model_log& log) {
  return [clock, f, takes, &log](const failover::attempt_context& ctx, const std::string&) {
    ++log.calls;
    log.remaining.push_back(ctx.remaining);
    clock.advance(takes);
    return answer(f);
  };
}

auto answering(failover::testing::fake_clock clock, std::string text, model_log& log) {
  return [clock, text, &log](const failover::attempt_context& ctx, const std::string&) {
    ++log.calls;
    log.remaining.push_back(ctx.remaining);
    clock.advance(10ms);
    return answer(text);
  };
}

// Runs out exactly when its context says its time is up, then reports a read timeout: a model
// that hangs, bounded only by what the chain tells it.
auto hanging(failover::testing::fake_clock clock, model_log& log) {
  return [clock, &log](const failover::attempt_context& ctx, const std::string&) -> answer {
    ++log.calls;
    log.remaining.push_back(ctx.remaining);
    clock.advance(*ctx.remaining);
    return failover::failure::of(failover::transport_error::read_timeout, "stalled");
  };
}

failover::failure status_with_wait(int status, std::string retry_after) {
  failover::failure f = failover::failure::http(status);
  f.header("Retry-After", retry_after);
  return f;
}

chain_t chain_with_deadline(duration deadline, failover::testing::fake_clock& clock) {
  failover::chain_options o;
  o.deadline = deadline;
  chain_t chain(o);
  failover::testing::use_fake_time(chain, clock);
  return chain;
}

}  // namespace

TEST_CASE("deadline: a primary that keeps failing leaves the backup time to answer") {
  failover::testing::fake_clock clock;
  chain_t chain = chain_with_deadline(3s, clock);
  model_log primary, backup;
  // 503 in 5ms each time; waits 500ms, 1s, 2s: the third would cross the primary's share.
  chain.add("primary", failing_after(clock, failover::failure::http(503), 5ms, primary),
            role::standard, attempts(10), exact(500ms));
  chain.add("backup", answering(clock, "ok", backup));
  const auto r = chain.run("q");
  REQUIRE(r.has_value());
  CHECK(*r == "ok");
  CHECK(r.served_by() == "backup");
  CHECK(r.fallback_used());
  CHECK(primary.calls == 2);  // 0ms; 505ms; the next wait (1s) ends past the 1.5s share
  CHECK(backup.calls == 1);
  const auto& gave_up = r.trace().attempts()[1];
  CHECK(gave_up.model == "primary");
  CHECK(gave_up.stop == stop_reason::wait_past_deadline);
  // The backup was called at once, with everything that was left.
  REQUIRE(backup.remaining.size() == 1);
  REQUIRE(backup.remaining[0].has_value());
  CHECK(*backup.remaining[0] == 3s - 510ms);
  CHECK(clock.elapsed() < 1s);
  // The trace says why the primary was left.
  CHECK(fmt::format("{}", r.trace()).find("gave up on primary: wait would cross the deadline") !=
        std::string::npos);
}

TEST_CASE("deadline: a server wait that cannot fit falls back at once, not at the deadline") {
  failover::testing::fake_clock clock;
  chain_t chain = chain_with_deadline(20s, clock);
  model_log primary, backup;
  chain.add("primary", failing_after(clock, status_with_wait(429, "30"), 8ms, primary));
  chain.add("backup", answering(clock, "ok", backup));
  const auto r = chain.run("q");
  REQUIRE(r.has_value());
  CHECK(r.served_by() == "backup");
  CHECK(primary.calls == 1);
  CHECK(r.trace().attempts()[0].stop == stop_reason::wait_past_deadline);
  CHECK(clock.elapsed() == 18ms);  // no wait at all
}

TEST_CASE("deadline: with nothing to take over, a wait past the deadline ends the call") {
  failover::testing::fake_clock clock;
  chain_t chain = chain_with_deadline(20s, clock);
  model_log only;
  chain.add("only", failing_after(clock, status_with_wait(429, "30"), 8ms, only));
  const auto r = chain.run("q");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.stop() == stop_reason::deadline);
  CHECK(r.error().kind == error_kind::deadline_exceeded);
  CHECK(r.error().status == std::optional<int>(429));
  CHECK(only.calls == 1);
  // The last model may use all the time: no reserve is kept when nothing comes after it.
  CHECK(only.remaining[0] == std::optional<duration>(20s));
}

TEST_CASE("deadline: a primary that hangs uses at most its share, the backup gets the rest") {
  failover::testing::fake_clock clock;
  chain_t chain = chain_with_deadline(60s, clock);
  model_log primary, backup;
  chain.add("primary", hanging(clock, primary));
  chain.add("backup", answering(clock, "ok", backup));
  const auto r = chain.run("q");
  REQUIRE(r.has_value());
  CHECK(r.served_by() == "backup");
  CHECK(primary.remaining == std::vector<std::optional<duration>>{30s});
  CHECK(backup.remaining == std::vector<std::optional<duration>>{30s});

  SECTION("fallback_reserve 0 lets a model use all the time") {
    failover::chain_options o;
    o.deadline = 60s;
    o.fallback_reserve = 0.0;
    chain_t greedy(o);
    failover::testing::fake_clock c2;
    failover::testing::use_fake_time(greedy, c2);
    model_log p2, b2;
    greedy.add("primary", hanging(c2, p2));
    greedy.add("backup", answering(c2, "ok", b2));
    const auto g = greedy.run("q");
    CHECK_FALSE(g.has_value());
    CHECK(g.stop() == stop_reason::deadline);
    CHECK(p2.remaining == std::vector<std::optional<duration>>{60s});
    CHECK(b2.calls == 0);
  }
}

TEST_CASE("deadline: chain_options::fallback_reserve is validated") {
  for (double bad : {-0.1, 1.0, 2.0, std::nan("")}) {
    failover::chain_options o;
    o.fallback_reserve = bad;
    CHECK_THROWS_WITH(o.validate(), Catch::Contains("fallback_reserve"));
  }
}

TEST_CASE("read timeout: another model takes over at once, alone the model is retried") {
  const auto timeout = failover::failure::of(failover::transport_error::read_timeout, "silent");
  SECTION("with a backup: one request to the silent model, then the backup") {
    failover::testing::fake_clock clock;
    chain_t chain;
    failover::testing::use_fake_time(chain, clock);
    model_log primary, backup;
    chain.add("primary", failing_after(clock, timeout, 10s, primary));
    chain.add("backup", answering(clock, "ok", backup));
    const auto r = chain.run("q");
    REQUIRE(r.has_value());
    CHECK(r.served_by() == "backup");
    CHECK(primary.calls == 1);
    CHECK(r.trace().attempts()[0].stop == stop_reason::read_timeout_fallback);
    CHECK(clock.elapsed() == 10s + 10ms);  // not 20s: no second identical request
  }
  SECTION("30s read timeouts and a 60s deadline: the backup is reached") {
    failover::testing::fake_clock clock;
    chain_t chain = chain_with_deadline(60s, clock);
    model_log primary, backup;
    chain.add("primary", failing_after(clock, timeout, 30s, primary));
    chain.add("backup", answering(clock, "ok", backup));
    const auto r = chain.run("q");
    REQUIRE(r.has_value());
    CHECK(r.served_by() == "backup");
    CHECK(primary.calls == 1);
  }
  SECTION("alone: retried up to max_read_timeout_retries") {
    failover::testing::fake_clock clock;
    chain_t chain;
    failover::testing::use_fake_time(chain, clock);
    model_log only;
    failover::retry_options o;
    o.max_read_timeout_retries = 2;
    chain.add("only", failing_after(clock, timeout, 1s, only), role::standard, o, exact(10ms));
    const auto r = chain.run("q");
    REQUIRE_FALSE(r.has_value());
    CHECK(only.calls == 3);
    CHECK(r.stop() == stop_reason::read_timeouts_exhausted);
  }
  SECTION("a later entry that would not take this failure does not count") {
    failover::testing::fake_clock clock;
    chain_t chain;
    failover::testing::use_fake_time(chain, clock);
    model_log only, policy;
    chain.add("only", failing_after(clock, timeout, 1s, only), role::standard, attempts(5),
              exact(10ms));
    chain.add("policy", answering(clock, "ok", policy), role::content_policy);
    const auto r = chain.run("q");
    CHECK_FALSE(r.has_value());
    CHECK(only.calls == 2);  // max_read_timeout_retries = 1 by default
    CHECK(policy.calls == 0);
  }
}

TEST_CASE("server wait: any wait above max_server_wait falls back now, however absurd") {
  const failover::wall_time now = failover::wall_time(std::chrono::hours(24 * 365 * 56));
  const std::vector<std::string> waits = {
      "61",                            // just above the 60s cap
      "31536001",                      // a year and a second
      "99999999999999999999",          // 20 digits
      "Fri, 31 Dec 9999 23:59:59 GMT"  // a date no clock can hold
  };
  for (const std::string& wait : waits) {
    CAPTURE(wait);
    failover::testing::fake_clock clock(now);
    chain_t chain;
    failover::testing::use_fake_time(chain, clock);
    model_log primary, backup;
    chain.add("primary", failing_after(clock, status_with_wait(429, wait), 1ms, primary));
    chain.add("backup", answering(clock, "ok", backup));
    const auto r = chain.run("q");
    REQUIRE(r.has_value());
    CHECK(r.served_by() == "backup");
    CHECK(primary.calls == 1);  // never retried after a short wait
    CHECK(r.trace().attempts()[0].stop == stop_reason::server_wait_too_long);
    CHECK(r.trace().attempts()[0].wait == duration::zero());
  }
  SECTION("an HTTP-date 400 days ahead") {
    failover::testing::fake_clock clock(failover::wall_time(std::chrono::seconds(784111777)) -
                                        std::chrono::hours(24 * 400));  // RFC 9110's example
    chain_t chain;
    failover::testing::use_fake_time(chain, clock);
    model_log primary, backup;
    chain.add(
        "primary",
        failing_after(clock, status_with_wait(503, "Sun, 06 Nov 1994 08:49:37 GMT"), 1ms, primary));
    chain.add("backup", answering(clock, "ok", backup));
    const auto r = chain.run("q");
    REQUIRE(r.has_value());
    CHECK(primary.calls == 1);
    CHECK(r.trace().attempts()[0].stop == stop_reason::server_wait_too_long);
  }
}

namespace {

// Records each wait and advances the clock by at most an hour, so a wait of duration::max()
// can be observed without the fake time line overflowing.
struct capped_sleeper {
  failover::testing::fake_clock clock;
  std::shared_ptr<std::vector<duration>> waits = std::make_shared<std::vector<duration>>();
  bool sleep_for(duration d, const failover::cancel_token& token) const {
    if (token.cancelled()) return false;
    waits->push_back(d);
    clock.advance(std::min<duration>(d, std::chrono::hours(1)));
    return true;
  }
};

struct capped_policies : failover::testing::fake_policies {
  using sleeper = capped_sleeper;
};

using capped_chain =
    failover::basic_fallback_chain<std::string(const std::string&), capped_policies>;

}  // namespace

// Run under UBSan by the asan-ubsan gate: an overflow anywhere is a test failure there.
TEST_CASE("durations at their limits saturate: every duration option at max() and at 0") {
  const duration limits[] = {duration::max(), duration::zero(), duration(1)};
  for (duration d : limits) {
    CAPTURE(d.count());
    SECTION("backoff base and cap, every jitter") {
      for (auto j : {failover::jitter::none, failover::jitter::full, failover::jitter::equal,
                     failover::jitter::decorrelated, failover::jitter::rising}) {
        failover::backoff_options b{std::max(d, duration(1)), 2.0, duration::max(), j};
        REQUIRE_NOTHROW(b.validate());
        capped_chain chain;
        failover::testing::fake_clock clock;
        chain.clock() = clock;
        chain.sleeper() = capped_sleeper{clock};
        int calls = 0;
        chain.add(
            "m",
            [&](const std::string&) -> answer {
              return ++calls < 3 ? answer(failover::failure::http(503)) : answer("ok");
            },
            role::standard, attempts(5), failover::exponential_backoff<>(b));
        const auto r = chain.run("q");
        CHECK(r.has_value());
        for (duration w : *chain.sleeper().waits) CHECK(w >= duration::zero());
        if (j == failover::jitter::none && d == duration::max()) {
          // base = cap = max(): the wait is "forever", never a negative or tiny one.
          REQUIRE_FALSE(chain.sleeper().waits->empty());
          CHECK(chain.sleeper().waits->front() == duration::max());
        }
      }
    }
    SECTION("max_server_wait, the chain's and the call's deadline, a server wait of max()") {
      failover::retry_options ro;
      ro.max_server_wait = d;
      REQUIRE_NOTHROW(ro.validate());
      failover::chain_options co;
      if (d > duration::zero()) co.deadline = d;
      REQUIRE_NOTHROW(co.validate());
      capped_chain chain(co);
      failover::testing::fake_clock clock;
      chain.clock() = clock;
      chain.sleeper() = capped_sleeper{clock};
      int calls = 0;
      chain.add(
          "m",
          [&](const std::string&) -> answer {
            return ++calls < 2 ? answer(status_with_wait(429, "99999999999999999999"))
                               : answer("ok");
          },
          role::standard, ro, exact(1s, duration::max()));
      chain.add("backup", [](const std::string&) -> answer { return "b"; });
      failover::call_options call;
      call.deadline = d;
      const auto r = chain.run_with(call, "q");
      CHECK(r.stop() != stop_reason::none);
      for (duration w : *chain.sleeper().waits) CHECK(w >= duration::zero());
    }
    SECTION("a clock that goes backwards under a huge deadline") {
      failover::chain_options co;
      co.deadline = duration::max();
      chain_t chain(co);
      failover::testing::fake_clock clock;
      failover::testing::use_fake_time(chain, clock);
      clock.advance(std::chrono::hours(1));
      int calls = 0;
      chain.add(
          "m",
          [&](const failover::attempt_context& ctx, const std::string&) -> answer {
            CHECK((!ctx.remaining || *ctx.remaining > duration::zero()));
            clock.advance(-std::chrono::minutes(30));  // a clock stepping back
            return ++calls < 3 ? answer(failover::failure::http(503)) : answer("ok");
          },
          role::standard, attempts(5), exact(1ms));
      const auto r = chain.run("q");
      CHECK(r.has_value());
      CHECK(calls == 3);
    }
  }
}

namespace {

struct breaker_policies : failover::testing::fake_policies {
  using breaker = failover::circuit_breaker;
  using budget = failover::retry_budget;
  using hooks = failover::callback_hooks;
};
using breaker_chain =
    failover::basic_fallback_chain<std::string(const std::string&), breaker_policies>;

failover::error unauthorized() {
  failover::error e;
  e.kind = error_kind::unauthorized;
  return e;
}

}  // namespace

TEST_CASE("deadline review: time held back only for a fallback that can answer") {
  failover::testing::fake_clock clock;
  failover::chain_options o;
  o.deadline = 10s;
  SECTION("the only fallback's circuit is open: the primary may use all the time") {
    breaker_chain chain(o);
    failover::testing::use_fake_time(chain, clock);
    failover::circuit_breaker b;
    model_log primary, backup;
    int calls = 0;
    chain.add(
        "primary",
        [&](const failover::attempt_context& ctx, const std::string&) -> answer {
          primary.remaining.push_back(ctx.remaining);
          clock.advance(5ms);
          return ++calls <= 3 ? answer(failover::failure::http(503)) : answer("ok");
        },
        role::standard, attempts(5), exact(1s));
    chain.add("backup", answering(clock, "b", backup));
    chain.set_breaker(b);
    b.on_failure(b.resolve("backup"), clock.now(), unauthorized(), false);  // opens at once
    const auto r = chain.run("q");
    REQUIRE(r.has_value());
    CHECK(r.served_by() == "primary");  // at about 7s; with half the time kept back it failed
    REQUIRE_FALSE(primary.remaining.empty());
    CHECK(primary.remaining[0] == std::optional<duration>(10s));
  }
  SECTION("the attempt cap leaves no room for a fallback: nothing is held back") {
    o.max_total_attempts = 1;
    chain_t chain(o);
    failover::testing::use_fake_time(chain, clock);
    model_log primary, backup;
    chain.add("primary", hanging(clock, primary));
    chain.add("backup", answering(clock, "b", backup));
    (void)chain.run("q");
    CHECK(primary.remaining == std::vector<std::optional<duration>>{10s});
  }
  SECTION("a first model skipped, the next one's share rounds to nothing: one outcome, no crash") {
    breaker_chain chain;
    failover::testing::use_fake_time(chain, clock);
    failover::circuit_breaker b;
    model_log a, bb, c;
    chain.add("a", answering(clock, "a", a));
    chain.add("b", answering(clock, "b", bb));
    chain.add("c", answering(clock, "c", c));
    chain.set_breaker(b);
    b.on_failure(b.resolve("a"), clock.now(), unauthorized(), false);
    failover::call_options call;
    call.deadline = duration(1);  // 1 ns
    const auto r = chain.run_with(call, "q");
    CHECK(r.stop() != stop_reason::none);
    CHECK(r.has_value() == (r.stop() == stop_reason::succeeded));
  }
  SECTION("a share of a huge deadline never overflows") {
    o.deadline = duration::max();
    o.fallback_reserve = 1e-20;
    chain_t chain(o);
    failover::testing::use_fake_time(chain, clock);
    model_log primary, backup;
    chain.add("primary", answering(clock, "p", primary));
    chain.add("backup", answering(clock, "b", backup));
    REQUIRE(chain.run("q").has_value());
    REQUIRE(primary.remaining[0].has_value());
    CHECK(*primary.remaining[0] > duration::zero());
  }
}

TEST_CASE("deadline review: the hooks, the budget and the trace agree with what happened") {
  failover::testing::fake_clock clock;
  failover::chain_options o;
  o.deadline = 10s;
  breaker_chain chain(o);
  failover::testing::use_fake_time(chain, clock);
  failover::retry_budget budget;
  chain.budget() = budget;
  std::vector<std::optional<duration>> hook_saw;
  chain.hooks().attempt_start = [&](const failover::attempt_started& e) {
    hook_saw.push_back(e.remaining);
  };
  model_log primary, backup;
  chain.add("primary", answering(clock, "p", primary));
  chain.add("backup", answering(clock, "b", backup));

  SECTION("the first attempt's hook is told the attempt's own share") {
    REQUIRE(chain.run("q").has_value());
    CHECK(hook_saw == primary.remaining);
  }
  SECTION("a call cancelled before it starts is no first attempt") {
    failover::cancel_source cancel;
    cancel.cancel();
    failover::call_options call;
    call.token = cancel.token();
    CHECK(chain.run_with(call, "q").stop() == stop_reason::cancelled);
    CHECK(budget.snapshot().first_attempts == 0);
  }
  SECTION("events after done, and an answer given twice, change nothing") {
    failover::call_options call;
    auto m = chain.begin_call(call);
    const auto a = m.poll();
    REQUIRE(a);
    const auto* s = std::get_if<failover::actions::start_attempt>(&*a);
    REQUIRE(s);
    const failover::attempt_id id = s->id;
    CHECK_FALSE(m.poll());  // one attempt at a time: nothing more until it answers
    m.handle(failover::events::answered<std::string>{id, answer("x")}, clock.now());
    const auto d = m.poll();
    REQUIRE(d);
    CHECK(std::holds_alternative<failover::actions::done>(*d));
    m.handle(failover::events::answered<std::string>{id, answer("y")}, clock.now());
    m.handle(failover::events::driver_failed{"a timer", nullptr}, clock.now());
    m.handle(failover::events::cancelled{}, clock.now());
    CHECK_FALSE(m.poll());
    const auto r = std::move(m).take();
    REQUIRE(r.has_value());
    CHECK(*r == "x");
    CHECK(r.trace().size() == 1);
    CHECK(budget.snapshot().first_attempts == 1);
  }
}

TEST_CASE("deadline review: a clock stepping back gives no more time than the deadline") {
  failover::testing::fake_clock clock;
  failover::chain_options o;
  o.deadline = 10s;
  chain_t chain(o);
  failover::testing::use_fake_time(chain, clock);
  std::vector<std::optional<duration>> seen;
  int calls = 0;
  chain.add(
      "only",
      [&](const failover::attempt_context& ctx, const std::string&) -> answer {
        seen.push_back(ctx.remaining);
        clock.advance(-std::chrono::minutes(55));
        return ++calls < 3 ? answer(failover::failure::http(503)) : answer("ok");
      },
      role::standard, attempts(5), exact(1ms));
  REQUIRE(chain.run("q").has_value());
  for (const auto& s : seen) CHECK((s && *s <= 10s));
}

TEST_CASE("deadline review: a late wake-up is recorded as the reason the model gave up") {
  // A sleeper that oversleeps: each wait takes five times as long as asked.
  struct late_sleeper {
    failover::testing::fake_clock clock;
    bool sleep_for(duration d, const failover::cancel_token&) const {
      clock.advance(5 * d);
      return true;
    }
  };
  struct late_policies : failover::testing::fake_policies {
    using sleeper = late_sleeper;
  };
  failover::testing::fake_clock clock;
  failover::chain_options o;
  o.deadline = 10s;
  failover::basic_fallback_chain<std::string(const std::string&), late_policies> chain(o);
  chain.clock() = clock;
  chain.sleeper() = late_sleeper{clock};
  model_log primary, backup;
  chain.add("primary", failing_after(clock, failover::failure::http(503), 5ms, primary),
            role::standard, attempts(10), exact(1s));
  chain.add("backup", answering(clock, "ok", backup));
  const auto r = chain.run("q");
  REQUIRE(r.has_value());
  CHECK(r.served_by() == "backup");
  // The primary's last record waited 1s (slept 5s, past its 5s share): it says why it gave up.
  const auto& a = r.trace().attempts();
  REQUIRE(a.size() == 2);
  CHECK(a[0].stop == stop_reason::wait_past_deadline);
  CHECK(fmt::format("{}", r.trace()).find("gave up on primary") != std::string::npos);
}

TEST_CASE("deadline review: a trace's sums saturate") {
  failover::trace t;
  for (int i = 0; i < 3; ++i) {
    auto& rec = t.add("m", std::uint16_t{0}, role::standard, i + 1, duration::max());
    rec.wait = duration::max();
    rec.elapsed = duration::max();
  }
  CHECK(t.total_wait() == duration::max());
  CHECK(t.elapsed() == duration::max());
}
