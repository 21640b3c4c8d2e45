// Hooks: callback_hooks see every event in order, with the facts the trace has; a throwing hook
// changes nothing; no_hooks costs nothing.
#include "catch.hpp"
#include "support.hpp"

#include <failover/failover.hpp>
#include <failover/testing.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct hooked_policies : failover::testing::fake_policies {
  using hooks = failover::callback_hooks;
};

using chain_t = failover::basic_fallback_chain<std::string(const std::string&), hooked_policies>;
using retrier_t = failover::basic_retrier<hooked_policies>;
using answer = failover::outcome<std::string>;
using failover::duration;
using failover::error_kind;
using failover::role;
using failover::stop_reason;
using failover::wait_reason;

using failover_test::attempts;
using failover_test::exact;

// Everything the hooks saw, copied out of the events (which only live during the callback).
struct recorder {
  struct start {
    std::string model;
    int attempt;
    int total_attempt;
    std::optional<duration> remaining;
  };
  struct end {
    std::string model;
    int attempt;
    bool ok;
    bool has_error;
    std::optional<error_kind> kind;
    duration elapsed;
  };
  struct retry {
    std::string model;
    int attempt;
    duration wait;
    wait_reason reason;
    error_kind kind;
  };
  struct fallback {
    std::string from;
    std::string to;
    role to_role;
    error_kind cause;
    stop_reason why;
  };
  struct give_up {
    error_kind kind;
    std::optional<int> status;
    std::string model;
    stop_reason why;
  };

  std::vector<std::string> order;
  std::vector<start> starts;
  std::vector<end> ends;
  std::vector<retry> retries;
  std::vector<fallback> fallbacks;
  std::vector<give_up> give_ups;

  template <class Target>
  void attach(Target& target) {
    auto& h = target.hooks();
    h.attempt_start = [this](const failover::attempt_started& e) {
      order.push_back("start");
      starts.push_back({std::string(e.model), e.attempt, e.total_attempt, e.remaining});
    };
    h.attempt_end = [this](const failover::attempt_ended& e) {
      order.push_back("end");
      ends.push_back({std::string(e.model), e.attempt, e.ok, e.error != nullptr,
                      e.error ? std::optional<error_kind>(e.error->kind) : std::nullopt,
                      e.elapsed});
    };
    h.retry = [this](const failover::retry_scheduled& e) {
      order.push_back("retry");
      retries.push_back({std::string(e.model), e.attempt, e.wait, e.reason, e.error.kind});
    };
    h.fallback = [this](const failover::fallback_taken& e) {
      order.push_back("fallback");
      fallbacks.push_back({std::string(e.from), std::string(e.to), e.to_role, e.cause.kind, e.why});
    };
    h.give_up = [this](const failover::gave_up& e) {
      order.push_back("give_up");
      give_ups.push_back({e.error.kind, e.error.status, e.error.model, e.why});
    };
  }
};

std::function<answer(const std::string&)> fail_with(failover::failure f) {
  return [f](const std::string&) -> answer { return f; };
}

std::function<answer(const std::string&)> echo(std::string suffix = "") {
  return [suffix](const std::string& p) -> answer { return p + suffix; };
}

std::size_t waits_in(const failover::trace& t) {
  std::size_t n = 0;
  for (const auto& a : t.attempts()) n += a.why_wait != wait_reason::none ? 1 : 0;
  return n;
}

std::size_t model_switches(const failover::trace& t) {
  std::size_t n = 0;
  for (std::size_t i = 1; i < t.size(); ++i)
    n += t.attempts()[i].entry != t.attempts()[i - 1].entry ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("hooks: no_hooks is an empty class") {
  static_assert(std::is_empty_v<failover::no_hooks>);
  CHECK(std::is_empty_v<failover::no_hooks>);
  CHECK(std::is_empty_v<failover::default_policies::hooks>);
}

TEST_CASE("hooks: events fire in order with the facts of each step") {
  chain_t chain;
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(chain, clock);
  recorder rec;
  rec.attach(chain);
  int a = 0;
  chain.add(
      "model-a",
      [&](const std::string&) -> answer {
        clock.advance(5ms);
        if (++a == 1)
          return failover::failure::http(429, "rate_limit_exceeded")
              .header("retry-after-ms", "100");
        return failover::failure::http(503);
      },
      role::standard, attempts(2), exact(10ms));
  chain.add("model-b", [&](const std::string& p) -> answer {
    clock.advance(3ms);
    return p;
  });
  auto r = chain.run("q");
  REQUIRE(r.has_value());

  const std::vector<std::string> expected{"start", "end",      "retry", "start",
                                          "end",   "fallback", "start", "end"};
  CHECK(rec.order == expected);

  REQUIRE(rec.starts.size() == 3);
  CHECK(rec.starts[0].model == "model-a");
  CHECK(rec.starts[0].attempt == 1);
  CHECK(rec.starts[0].total_attempt == 1);
  CHECK_FALSE(rec.starts[0].remaining.has_value());
  CHECK(rec.starts[1].attempt == 2);
  CHECK(rec.starts[1].total_attempt == 2);
  CHECK(rec.starts[2].model == "model-b");
  CHECK(rec.starts[2].attempt == 1);
  CHECK(rec.starts[2].total_attempt == 3);

  REQUIRE(rec.ends.size() == 3);
  CHECK_FALSE(rec.ends[0].ok);
  CHECK(rec.ends[0].has_error);
  CHECK(rec.ends[0].kind == std::optional<error_kind>(error_kind::rate_limited));
  CHECK(rec.ends[0].elapsed == 5ms);
  CHECK(rec.ends[1].kind == std::optional<error_kind>(error_kind::server_error));
  CHECK(rec.ends[2].ok);
  CHECK_FALSE(rec.ends[2].has_error);
  CHECK(rec.ends[2].model == "model-b");
  CHECK(rec.ends[2].elapsed == 3ms);

  REQUIRE(rec.retries.size() == 1);
  CHECK(rec.retries[0].model == "model-a");
  CHECK(rec.retries[0].attempt == 1);
  CHECK(rec.retries[0].wait == 110ms);
  CHECK(rec.retries[0].reason == wait_reason::server);
  CHECK(rec.retries[0].kind == error_kind::rate_limited);
  REQUIRE(sleeper.sleeps().size() == 1);
  CHECK(rec.retries[0].wait == sleeper.sleeps()[0]);
  CHECK(rec.retries[0].wait == r.trace().attempts()[0].wait);

  REQUIRE(rec.fallbacks.size() == 1);
  CHECK(rec.fallbacks[0].from == "model-a");
  CHECK(rec.fallbacks[0].to == "model-b");
  CHECK(rec.fallbacks[0].to_role == role::standard);
  CHECK(rec.fallbacks[0].cause == error_kind::server_error);
  CHECK(rec.fallbacks[0].why == stop_reason::attempts_exhausted);

  CHECK(rec.give_ups.empty());  // the call succeeded

  // The counts match the trace.
  CHECK(rec.starts.size() == r.trace().size());
  CHECK(rec.ends.size() == r.trace().size());
  CHECK(rec.retries.size() == waits_in(r.trace()));
  CHECK(rec.fallbacks.size() == model_switches(r.trace()));
}

TEST_CASE("hooks: give_up carries the final error, once") {
  chain_t chain;
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(chain, clock);
  recorder rec;
  rec.attach(chain);

  SECTION("after the last model's retries") {
    chain.add("model-a", fail_with(failover::failure::http(401)));
    chain.add("model-b", fail_with(failover::failure::http(503)), role::standard, attempts(3),
              exact(1ms));
    auto r = chain.run("q");
    REQUIRE_FALSE(r.has_value());
    REQUIRE(rec.give_ups.size() == 1);
    CHECK(rec.give_ups[0].kind == r.error().kind);
    CHECK(rec.give_ups[0].kind == error_kind::server_error);
    CHECK(rec.give_ups[0].status == std::optional<int>(503));
    CHECK(rec.give_ups[0].model == "model-b");
    CHECK(rec.give_ups[0].why == r.stop());
    CHECK(rec.order.back() == "give_up");
    CHECK(rec.starts.size() == r.trace().size());
    CHECK(rec.ends.size() == r.trace().size());
    CHECK(rec.retries.size() == waits_in(r.trace()));
    CHECK(rec.fallbacks.size() == model_switches(r.trace()));
    REQUIRE(rec.fallbacks.size() == 1);
    CHECK(rec.fallbacks[0].cause == error_kind::unauthorized);
    CHECK(rec.fallbacks[0].why == stop_reason::permanent_error);
  }
  SECTION("cancelled before any attempt") {
    chain.add("model-a", echo());
    failover::cancel_source source;
    source.cancel();
    failover::call_options call;
    call.token = source.token();
    auto r = chain.run_with(call, "q");
    CHECK(rec.starts.empty());
    REQUIRE(rec.give_ups.size() == 1);
    CHECK(rec.give_ups[0].kind == error_kind::cancelled);
    CHECK(rec.give_ups[0].why == stop_reason::cancelled);
  }
  SECTION("a content-policy reroute names the role") {
    chain.add("model-a", fail_with(failover::failure::http(400, "content_policy_violation")));
    chain.add("reviewed", echo(), role::content_policy);
    auto r = chain.run("q");
    REQUIRE(r.has_value());
    REQUIRE(rec.fallbacks.size() == 1);
    CHECK(rec.fallbacks[0].to == "reviewed");
    CHECK(rec.fallbacks[0].to_role == role::content_policy);
    CHECK(rec.fallbacks[0].cause == error_kind::content_policy);
    CHECK(rec.give_ups.empty());
  }
  SECTION("an empty chain gives up without any attempt") {
    auto r = chain.run("q");
    REQUIRE(rec.give_ups.size() == 1);
    CHECK(rec.give_ups[0].why == stop_reason::no_fallback);
    CHECK(rec.order.size() == 1);
  }
}

TEST_CASE("hooks: a retrier reports retries with the server reason") {
  retrier_t r("model-a", attempts(3), exact(10ms));
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(r, clock);
  recorder rec;
  rec.attach(r);
  auto res = r.run([]() -> failover::outcome<int> {
    return failover::failure::http(429).header("Retry-After", "1");
  });
  REQUIRE(rec.retries.size() == 2);
  CHECK(rec.retries[0].reason == wait_reason::server);
  CHECK(rec.retries[0].wait == 1010ms);
  CHECK(rec.retries[1].attempt == 2);
  CHECK(rec.retries[1].wait == 1020ms);
  CHECK(rec.fallbacks.empty());
  REQUIRE(rec.give_ups.size() == 1);
  CHECK(rec.give_ups[0].why == stop_reason::attempts_exhausted);
  CHECK(rec.give_ups[0].kind == error_kind::rate_limited);
  const std::vector<std::string> expected{"start", "end",   "retry", "start",  "end",
                                          "retry", "start", "end",   "give_up"};
  CHECK(rec.order == expected);
}

TEST_CASE("hooks: a hook that throws does not change the call's result") {
  auto build = [](chain_t& chain, failover::testing::fake_clock& clock) {
    failover::testing::use_fake_time(chain, clock);
    chain.add("model-a", fail_with(failover::failure::http(503)), role::standard, attempts(2),
              exact(5ms));
    chain.add("model-b", echo("!"));
  };
  failover::testing::fake_clock quiet_clock;
  chain_t quiet;
  build(quiet, quiet_clock);
  const auto expected = quiet.run("q");

  failover::testing::fake_clock loud_clock;
  chain_t loud;
  build(loud, loud_clock);
  int thrown = 0;
  auto& h = loud.hooks();
  h.attempt_start = [&](const failover::attempt_started&) {
    ++thrown;
    throw std::runtime_error("start hook");
  };
  h.attempt_end = [&](const failover::attempt_ended&) {
    ++thrown;
    throw std::runtime_error("end hook");
  };
  h.retry = [&](const failover::retry_scheduled&) {
    ++thrown;
    throw 1;
  };
  h.fallback = [&](const failover::fallback_taken&) {
    ++thrown;
    throw std::logic_error("fallback hook");
  };
  h.give_up = [&](const failover::gave_up&) {
    ++thrown;
    throw std::runtime_error("give-up hook");
  };
  std::optional<failover::result<std::string>> got;
  REQUIRE_NOTHROW(got.emplace(loud.run("q")));
  CHECK(thrown == 3 + 3 + 1 + 1);  // starts, ends, one retry, one fallback
  REQUIRE(got->has_value());
  REQUIRE(expected.has_value());
  CHECK(**got == *expected);
  CHECK(got->stop() == expected.stop());
  CHECK(got->served_by() == expected.served_by());
  CHECK(got->trace().size() == expected.trace().size());
  CHECK(loud_clock.elapsed() == quiet_clock.elapsed());

  SECTION("also on a failing call") {
    chain_t failing;
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(failing, clock);
    failing.hooks() = loud.hooks();
    failing.add("model-a", fail_with(failover::failure::http(401)));
    std::optional<failover::result<std::string>> f;
    REQUIRE_NOTHROW(f.emplace(failing.run("q")));
    REQUIRE_FALSE(f->has_value());
    CHECK(f->error().kind == error_kind::unauthorized);
    CHECK(f->stop() == stop_reason::permanent_error);
  }
}

namespace {
// A user's own Hooks policy: overrides one hook (the rest come from no_hooks) and throws from it.
struct throwing_hooks : failover::no_hooks {
  static int& starts() {
    static int n = 0;
    return n;
  }
  void on_attempt_start(const failover::attempt_started&) const {
    ++starts();
    throw std::runtime_error("a logging backend is down");
  }
};
struct throwing_policies : failover::testing::fake_policies {
  using hooks = throwing_hooks;
};
}  // namespace

TEST_CASE("hooks: a user's hooks that override some members and throw change nothing", "[hooks]") {
  failover::basic_fallback_chain<int(), throwing_policies> chain;
  failover::testing::use_fake_time(chain, failover::testing::fake_clock{});
  chain.add("m", [] { return 7; });
  throwing_hooks::starts() = 0;
  const auto r = chain.run();
  REQUIRE(r.has_value());
  CHECK(*r == 7);
  CHECK(throwing_hooks::starts() == 1);
}
