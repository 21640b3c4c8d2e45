// The fallback chain on fake time: routing by role, the chain's bounds (hops, total attempts,
// deadline, cancellation), exceptions, add() validation, the trace, and a thread-safety smoke test.
#include "catch.hpp"
#include "driver_scenarios.hpp"
#include "support.hpp"

#include <failover/drivers/callback.hpp>
#include <failover/failover.hpp>
#include <failover/testing.hpp>
#include <failover/testing/fake_loop.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
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
using failover::wait_reason;

using failover_test::attempts;
using failover_test::exact;

// A callable that counts its calls and always fails with `f`.
std::function<answer(const std::string&)> failing(failover::failure f, int& calls) {
  return [f, &calls](const std::string&) -> answer {
    ++calls;
    return f;
  };
}

// A callable that counts its calls and answers "<name>:<prompt>".
std::function<answer(const std::string&)> answering(std::string name, int& calls) {
  return [name, &calls](const std::string& prompt) -> answer {
    ++calls;
    return name + ":" + prompt;
  };
}

template <class T>
void check_single_end(const failover::result<T>& r) {
  CHECK(r.stop() != stop_reason::none);
  CHECK(r.has_value() == (r.stop() == stop_reason::succeeded));
  CHECK(r.served_by().empty() == !r.has_value());
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("chain: callables receive the run() arguments and the attempt context") {
  chain_t chain;
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(chain, clock);
  std::string seen_prompt;
  std::string seen_model;
  chain.add("model-a", [&](const failover::attempt_context& ctx, const std::string& p) {
    seen_prompt = p;
    seen_model = std::string(ctx.model);
    return p + "!";
  });
  auto r = chain.run("hello");
  REQUIRE(r.has_value());
  CHECK(*r == "hello!");
  CHECK(seen_prompt == "hello");
  CHECK(seen_model == "model-a");
  CHECK(r.served_by() == "model-a");
  CHECK_FALSE(r.fallback_used());
  CHECK_FALSE(r.trace().policy_rerouted());
  check_single_end(r);
}

TEST_CASE("chain: a standard fallback after retries are exhausted, and it shows") {
  chain_t chain;
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(chain, clock);
  int a = 0;
  int b = 0;
  chain.add("model-a", failing(failover::failure::http(503), a), role::standard, attempts(3),
            exact(10ms));
  chain.add("model-b", answering("b", b));
  auto r = chain.run("q");
  REQUIRE(r.has_value());
  CHECK(*r == "b:q");
  CHECK(a == 3);
  CHECK(b == 1);
  CHECK(sleeper.sleeps().size() == 2);
  CHECK(r.served_by() == "model-b");
  CHECK(r.fallback_used());
  CHECK(r.trace().fallback_used());
  const auto& t = r.trace().attempts();
  REQUIRE(t.size() == 4);
  for (std::size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK(t[i].model == "model-a");
    CHECK(t[i].entry == 0);
    CHECK(t[i].attempt == static_cast<int>(i) + 1);
    CHECK_FALSE(t[i].ok);
  }
  CHECK(t[2].stop == stop_reason::attempts_exhausted);
  CHECK(t[3].model == "model-b");
  CHECK(t[3].entry == 1);
  CHECK(t[3].attempt == 1);
  CHECK(t[3].ok);
  check_single_end(r);
}

TEST_CASE("chain: a fallback never looks like plain success") {
  chain_t chain;
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(chain, clock);
  int a = 0;
  int b = 0;
  chain.add("model-a", failing(failover::failure::http(401), a));
  chain.add("model-b", answering("b", b));
  auto fallback = chain.run("x");

  chain_t plain;
  failover::testing::use_fake_time(plain, clock);
  int c = 0;
  plain.add("model-b", answering("b", c));
  auto direct = plain.run("x");

  REQUIRE(fallback.has_value());
  REQUIRE(direct.has_value());
  CHECK(*fallback == *direct);      // the same value...
  CHECK(fallback.fallback_used());  // ...but only one of them is a plain success
  CHECK_FALSE(direct.fallback_used());
  CHECK(fallback.trace().size() == 2);
  CHECK(direct.trace().size() == 1);
  CHECK(fallback.trace().attempts()[0].error().kind == error_kind::unauthorized);
}

TEST_CASE("chain: a content-policy refusal is never sent to a standard entry") {
  const auto refusal = failover::failure::http(400, "content_policy_violation", "refused");
  int a = 0;
  int b = 0;
  int c = 0;

  SECTION("without a content-policy entry the chain ends") {
    chain_t chain;
    failover::testing::fake_clock clock;
    auto sleeper = failover::testing::use_fake_time(chain, clock);
    chain.add("model-a", failing(refusal, a));
    chain.add("model-b", answering("b", b));
    auto r = chain.run("q");
    REQUIRE_FALSE(r.has_value());
    CHECK(a == 1);
    CHECK(b == 0);
    CHECK(sleeper.sleeps().empty());
    CHECK(r.error().kind == error_kind::content_policy);
    CHECK(r.stop() == stop_reason::permanent_error);
    CHECK_FALSE(r.trace().policy_rerouted());
    CHECK_FALSE(r.fallback_used());
    check_single_end(r);
  }
  SECTION("with a content-policy entry it is routed there, and says so") {
    chain_t chain;
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    chain.add("model-a", failing(refusal, a));
    chain.add("model-b", answering("b", b));
    chain.add("reviewed", answering("c", c), role::content_policy);
    auto r = chain.run("q");
    REQUIRE(r.has_value());
    CHECK(*r == "c:q");
    CHECK(a == 1);
    CHECK(b == 0);
    CHECK(c == 1);
    CHECK(r.served_by() == "reviewed");
    CHECK(r.fallback_used());
    CHECK(r.trace().policy_rerouted());
    REQUIRE(r.trace().size() == 2);
    CHECK(r.trace().attempts()[1].role == role::content_policy);
    CHECK(r.trace().attempts()[1].entry == 2);
    check_single_end(r);
  }
  SECTION("a content-policy entry does not take over other failures") {
    chain_t chain;
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    chain.add("model-a", failing(failover::failure::http(401), a));
    chain.add("reviewed", answering("c", c), role::content_policy);
    chain.add("model-b", answering("b", b));
    auto r = chain.run("q");
    REQUIRE(r.has_value());
    CHECK(c == 0);
    CHECK(b == 1);
    CHECK(r.served_by() == "model-b");
    CHECK_FALSE(r.trace().policy_rerouted());
  }
}

TEST_CASE("chain: a context-window failure prefers a context-window entry") {
  const auto too_long = failover::failure::http(400, "context_length_exceeded");
  int a = 0;
  int b = 0;
  int c = 0;

  SECTION("it skips an earlier standard entry") {
    chain_t chain;
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    chain.add("model-a", failing(too_long, a));
    chain.add("model-b", answering("b", b));
    chain.add("long-ctx", answering("c", c), role::context_window);
    auto r = chain.run("q");
    REQUIRE(r.has_value());
    CHECK(a == 1);  // not retried on the same model
    CHECK(b == 0);
    CHECK(c == 1);
    CHECK(r.served_by() == "long-ctx");
    CHECK(r.trace().attempts()[1].role == role::context_window);
    CHECK_FALSE(r.trace().policy_rerouted());
  }
  SECTION("with none it goes to the next standard entry") {
    chain_t chain;
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    chain.add("model-a", failing(too_long, a));
    chain.add("model-b", answering("b", b));
    auto r = chain.run("q");
    REQUIRE(r.has_value());
    CHECK(b == 1);
    CHECK(r.served_by() == "model-b");
  }
  SECTION("with context_window_to_standard=false it ends") {
    failover::chain_options o;
    o.context_window_to_standard = false;
    chain_t chain(o);
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    chain.add("model-a", failing(too_long, a));
    chain.add("model-b", answering("b", b));
    auto r = chain.run("q");
    REQUIRE_FALSE(r.has_value());
    CHECK(a == 1);
    CHECK(b == 0);
    CHECK(r.error().kind == error_kind::context_window);
    check_single_end(r);
  }
  SECTION("a context-window entry does not take over other failures") {
    chain_t chain;
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    chain.add("model-a", failing(failover::failure::http(404), a));
    chain.add("long-ctx", answering("c", c), role::context_window);
    auto r = chain.run("q");
    REQUIRE_FALSE(r.has_value());
    CHECK(c == 0);
    CHECK(r.error().kind == error_kind::not_found);
  }
}

TEST_CASE("chain: a bad request ends the chain unless fallback_on_bad_request") {
  int a = 0;
  int b = 0;
  SECTION("default: ends") {
    chain_t chain;
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    chain.add("model-a", failing(failover::failure::http(400, "", "malformed"), a));
    chain.add("model-b", answering("b", b));
    auto r = chain.run("q");
    REQUIRE_FALSE(r.has_value());
    CHECK(a == 1);
    CHECK(b == 0);
    CHECK(r.stop() == stop_reason::bad_request);
    CHECK(r.error().kind == error_kind::bad_request);
    check_single_end(r);
  }
  SECTION("422 is a bad request too") {
    chain_t chain;
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    chain.add("model-a", failing(failover::failure::http(422), a));
    chain.add("model-b", answering("b", b));
    auto r = chain.run("q");
    CHECK(b == 0);
    CHECK(r.stop() == stop_reason::bad_request);
  }
  SECTION("opted in: falls back") {
    failover::chain_options o;
    o.fallback_on_bad_request = true;
    chain_t chain(o);
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    chain.add("model-a", failing(failover::failure::http(400), a));
    chain.add("model-b", answering("b", b));
    auto r = chain.run("q");
    REQUIRE(r.has_value());
    CHECK(a == 1);
    CHECK(b == 1);
    CHECK(r.served_by() == "model-b");
  }
}

TEST_CASE("chain: 401, 403 and 404 are not retried on the same model but fall back") {
  for (int status : {401, 403, 404}) {
    CAPTURE(status);
    chain_t chain;
    failover::testing::fake_clock clock;
    auto sleeper = failover::testing::use_fake_time(chain, clock);
    int a = 0;
    int b = 0;
    chain.add("model-a", failing(failover::failure::http(status), a));
    chain.add("model-b", answering("b", b));
    auto r = chain.run("q");
    REQUIRE(r.has_value());
    CHECK(a == 1);
    CHECK(b == 1);
    CHECK(sleeper.sleeps().empty());
    CHECK(r.served_by() == "model-b");
    REQUIRE(r.trace().size() == 2);
    CHECK(r.trace().attempts()[0].stop == stop_reason::permanent_error);
    REQUIRE(r.trace().attempts()[0].error().status.has_value());
    CHECK(*r.trace().attempts()[0].error().status == status);
  }
}

TEST_CASE("chain: the hop limit bounds the models tried") {
  failover::chain_options o;
  o.max_hops = 2;
  chain_t chain(o);
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(chain, clock);
  int a = 0;
  int b = 0;
  int c = 0;
  chain.add("model-a", failing(failover::failure::http(503), a), role::standard, attempts(1));
  chain.add("model-b", failing(failover::failure::http(500), b), role::standard, attempts(1));
  chain.add("model-c", failing(failover::failure::http(503), c), role::standard, attempts(1));
  auto r = chain.run("q");
  REQUIRE_FALSE(r.has_value());
  CHECK(a == 1);
  CHECK(b == 1);
  CHECK(c == 0);
  CHECK(r.stop() == stop_reason::hop_limit);
  CHECK(r.error().model == "model-b");
  CHECK(r.error().kind == error_kind::server_error);
  check_single_end(r);
}

TEST_CASE("chain: the total attempts cap applies across models") {
  SECTION("exhausted on the first model: the second is never called") {
    failover::chain_options o;
    o.max_total_attempts = 3;
    chain_t chain(o);
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    int a = 0;
    int b = 0;
    chain.add("model-a", failing(failover::failure::http(503), a), role::standard, attempts(5));
    chain.add("model-b", failing(failover::failure::http(503), b), role::standard, attempts(5));
    auto r = chain.run("q");
    CHECK(a + b == 3);
    CHECK(a == 3);
    CHECK(r.stop() == stop_reason::total_attempts_exhausted);
    CHECK(r.trace().size() == 3);
    check_single_end(r);
  }
  SECTION("shared between models") {
    failover::chain_options o;
    o.max_total_attempts = 3;
    chain_t chain(o);
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    int a = 0;
    int b = 0;
    chain.add("model-a", failing(failover::failure::http(503), a), role::standard, attempts(2));
    chain.add("model-b", failing(failover::failure::http(503), b), role::standard, attempts(5));
    auto r = chain.run("q");
    CHECK(a == 2);
    CHECK(b == 1);
    CHECK(r.stop() == stop_reason::total_attempts_exhausted);
  }
  SECTION("permanent errors on every model still count against the cap") {
    failover::chain_options o;
    o.max_total_attempts = 2;
    chain_t chain(o);
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    int a = 0;
    int b = 0;
    int c = 0;
    chain.add("model-a", failing(failover::failure::http(401), a));
    chain.add("model-b", failing(failover::failure::http(401), b));
    chain.add("model-c", failing(failover::failure::http(401), c));
    auto r = chain.run("q");
    INFO("max_total_attempts = 2, but the chain made " << (a + b + c) << " attempts");
    CHECK(a + b + c <= 2);
    CHECK(c == 0);
    REQUIRE_FALSE(r.has_value());
  }
}

TEST_CASE("chain: the chain deadline spans models") {
  failover::chain_options o;
  o.deadline = 10s;
  chain_t chain(o);
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(chain, clock);
  int a = 0;
  int b = 0;
  int c = 0;
  std::vector<std::optional<duration>> remaining;
  auto slow_failure = [&](int& calls) {
    int* counter = &calls;
    return [counter, &remaining, &clock](const failover::attempt_context& ctx,
                                         const std::string&) -> answer {
      ++*counter;
      remaining.push_back(ctx.remaining);
      clock.advance(3s);
      return failover::failure::http(503, "busy_code");
    };
  };
  chain.add("model-a", slow_failure(a), role::standard, attempts(2), exact(1s));
  chain.add("model-b", slow_failure(b), role::standard, attempts(5), exact(1s));
  chain.add("model-c", slow_failure(c), role::standard, attempts(5), exact(1s));
  auto r = chain.run("q");
  // Each model with a fallback after it may use half of what is left when it starts
  // (fallback_reserve 0.5). a: 10s left, its share ends at 5s. a1 0-3s, wait 1s fits; a2 4-7s
  // (told 1s; attempts exhausted). b: 3s left, share 1.5s; b1 7-10s; its wait does not fit: it
  // gives up (wait_past_deadline) and c would start with no time left: the call ends.
  CHECK(a == 2);
  CHECK(b == 1);
  CHECK(c == 0);
  REQUIRE(remaining.size() == 3);
  CHECK(remaining[0] == std::optional<duration>(5s));
  CHECK(remaining[1] == std::optional<duration>(1s));
  CHECK(remaining[2] == std::optional<duration>(1500ms));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.stop() == stop_reason::deadline);
  CHECK(r.error().kind == error_kind::deadline_exceeded);
  REQUIRE(r.error().status.has_value());
  CHECK(*r.error().status == 503);
  CHECK(r.error().code == "busy_code");
  CHECK(r.error().model == "model-b");
  CHECK(r.trace().attempts()[2].error().kind == error_kind::server_error);
  CHECK(r.trace().attempts()[2].stop == stop_reason::wait_past_deadline);
  check_single_end(r);
}

TEST_CASE("chain: a deadline reached between models stops before the next one") {
  failover::chain_options o;
  o.deadline = 5s;
  chain_t chain(o);
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(chain, clock);
  int b = 0;
  chain.add("model-a", [&](const std::string&) -> answer {
    clock.advance(6s);
    return failover::failure::http(401, "invalid_api_key");
  });
  chain.add("model-b", answering("b", b));
  auto r = chain.run("q");
  CHECK(b == 0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.stop() == stop_reason::deadline);
  CHECK(r.error().kind == error_kind::deadline_exceeded);
  CHECK(r.error().code == "invalid_api_key");
  REQUIRE(r.trace().size() == 1);
  CHECK(r.trace().attempts()[0].error().kind == error_kind::unauthorized);
}

TEST_CASE("chain: the earlier of the chain's and the call's deadlines applies") {
  std::vector<std::optional<duration>> remaining;
  auto record = [&](const failover::attempt_context& ctx, const std::string&) -> answer {
    remaining.push_back(ctx.remaining);
    return failover::failure::http(503);
  };
  SECTION("call deadline shorter") {
    failover::chain_options o;
    o.deadline = 100s;
    chain_t chain(o);
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    chain.add("model-a", record, role::standard, {}, exact(1s));
    failover::call_options call;
    call.deadline = 2s;
    auto r = chain.run_with(call, "q");
    // 0: wait 1s; 1s: the 2s wait would cross the 2s deadline.
    REQUIRE(remaining.size() == 2);
    CHECK(remaining[0] == std::optional<duration>(2s));
    CHECK(remaining[1] == std::optional<duration>(1s));
    CHECK(r.stop() == stop_reason::deadline);
  }
  SECTION("chain deadline shorter") {
    failover::chain_options o;
    o.deadline = 2s;
    chain_t chain(o);
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    chain.add("model-a", record, role::standard, {}, exact(1s));
    failover::call_options call;
    call.deadline = 100s;
    auto r = chain.run_with(call, "q");
    REQUIRE(remaining.size() == 2);
    CHECK(remaining[0] == std::optional<duration>(2s));
    CHECK(r.stop() == stop_reason::deadline);
  }
  SECTION("no chain deadline: the call's applies") {
    chain_t chain;
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    chain.add("model-a", record, role::standard, {}, exact(1s));
    failover::call_options call;
    call.deadline = 2s;
    auto r = chain.run_with(call, "q");
    REQUIRE(remaining.size() == 2);
    CHECK(remaining[0] == std::optional<duration>(2s));
  }
}

TEST_CASE("chain: cancellation between models stops the walk") {
  chain_t chain;
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(chain, clock);
  failover::cancel_source source;
  int b = 0;
  chain.add("model-a", [&](const std::string&) -> answer {
    source.cancel();
    return failover::failure::http(401);
  });
  chain.add("model-b", answering("b", b));
  failover::call_options call;
  call.token = source.token();
  auto r = chain.run_with(call, "q");
  CHECK(b == 0);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.stop() == stop_reason::cancelled);
  CHECK(r.error().kind == error_kind::cancelled);
  REQUIRE(r.error().status.has_value());
  CHECK(*r.error().status == 401);
  check_single_end(r);
}

TEST_CASE("chain: cancellation during a wait stops before the next attempt or model") {
  chain_t chain;
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(chain, clock);
  failover::cancel_source source;
  sleeper.on_sleep([&](duration) { source.cancel(); });
  int a = 0;
  int b = 0;
  chain.add("model-a", failing(failover::failure::http(503), a));
  chain.add("model-b", answering("b", b));
  failover::call_options call;
  call.token = source.token();
  auto r = chain.run_with(call, "q");
  CHECK(a == 1);
  CHECK(b == 0);
  CHECK(r.stop() == stop_reason::cancelled);
  CHECK(r.error().kind == error_kind::cancelled);
}

TEST_CASE("chain: exceptions from callables never escape and can fall back") {
  chain_t chain;
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(chain, clock);
  int b = 0;
  chain.add("model-a", [](const std::string&) -> std::string { throw std::logic_error("bug"); });
  chain.add("model-b", answering("b", b));
  std::optional<failover::result<std::string>> r;
  REQUIRE_NOTHROW(r.emplace(chain.run("q")));
  REQUIRE(r->has_value());
  CHECK(b == 1);
  const auto& first = r->trace().attempts()[0];
  CHECK(first.error().kind == error_kind::unknown);
  CHECK_FALSE(first.error().transient);
  REQUIRE_THROWS_AS(first.error().rethrow_if_exception(), std::logic_error);

  SECTION("a mapped exception is retried on the same model") {
    chain_t mapped;
    failover::testing::use_fake_time(mapped, clock);
    mapped.classifier().on_exception<std::runtime_error>(error_kind::overloaded);
    int calls = 0;
    mapped.add("model-a", [&](const std::string& p) -> std::string {
      if (++calls < 3) throw std::runtime_error("overloaded");
      return p;
    });
    auto m = mapped.run("q");
    REQUIRE(m.has_value());
    CHECK(calls == 3);
    CHECK_FALSE(m.fallback_used());
  }
  SECTION("an exception on the last model is the final error") {
    chain_t last;
    failover::testing::use_fake_time(last, clock);
    last.add("model-a", [](const std::string&) -> std::string { throw 42; });
    std::optional<failover::result<std::string>> f;
    REQUIRE_NOTHROW(f.emplace(last.run("q")));
    REQUIRE_FALSE(f->has_value());
    REQUIRE_THROWS_AS(f->error().rethrow_if_exception(), int);
    REQUIRE_THROWS_AS(f->value(), failover::call_failed);
  }
}

TEST_CASE("chain: a chain with no standard entry fails cleanly") {
  failover::testing::fake_clock clock;
  SECTION("only non-standard entries") {
    chain_t chain;
    failover::testing::use_fake_time(chain, clock);
    int c = 0;
    int d = 0;
    chain.add("long-ctx", answering("c", c), role::context_window);
    chain.add("reviewed", answering("d", d), role::content_policy);
    std::optional<failover::result<std::string>> r;
    REQUIRE_NOTHROW(r.emplace(chain.run("q")));
    REQUIRE_FALSE(r->has_value());
    CHECK(c == 0);
    CHECK(d == 0);
    CHECK(r->stop() == stop_reason::no_fallback);
    CHECK(r->trace().size() == 0);
    CHECK(r->served_by().empty());
    check_single_end(*r);
  }
  SECTION("no entry at all") {
    chain_t chain;
    failover::testing::use_fake_time(chain, clock);
    std::optional<failover::result<std::string>> r;
    REQUIRE_NOTHROW(r.emplace(chain.run("q")));
    REQUIRE_FALSE(r->has_value());
    CHECK(r->stop() == stop_reason::no_fallback);
    REQUIRE_THROWS_AS(r->value(), failover::call_failed);
  }
}

TEST_CASE("chain: a call starts at the first standard entry, whatever was added before it") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  int c = 0;
  int d = 0;
  int a = 0;
  int b = 0;
  chain.add("long-ctx", answering("c", c), role::context_window);
  chain.add("reviewed", answering("d", d), role::content_policy);
  // No standard entry yet: nothing to call.
  CHECK(chain.run("q").stop() == stop_reason::no_fallback);
  chain.add("model-a", answering("a", a));
  chain.add("model-b", answering("b", b));
  const failover::result<std::string> r = chain.run("q");
  REQUIRE(r.has_value());
  CHECK(*r == "a:q");
  CHECK(r.served_by() == "model-a");
  REQUIRE(r.trace().size() == 1);
  CHECK(r.trace().attempts()[0].entry == 2);
  CHECK((a == 1 && b == 0 && c == 0 && d == 0));
  // The stepped machine starts at the same entry.
  auto call = chain.begin_call(failover::call_options{});
  const auto first = call.poll();
  REQUIRE(first);
  const auto* start = std::get_if<failover::actions::start_attempt>(&*first);
  REQUIRE(start);
  CHECK(start->entry == 2);
}

TEST_CASE("chain: copies keep their start entry, a chain moved from has nothing to call") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  int c = 0;
  int a = 0;
  chain.add("long-ctx", answering("c", c), role::context_window);
  chain.add("model-a", answering("a", a));

  const chain_t copy = chain;  // NOLINT(performance-unnecessary-copy-initialization): the test
  CHECK(copy.run("q").served_by() == "model-a");

  chain_t moved(std::move(chain));
  CHECK(moved.run("q").served_by() == "model-a");
  // NOLINTNEXTLINE(bugprone-use-after-move): what a chain moved from does is the point
  const failover::result<std::string> from_moved = chain.run("q");
  CHECK_FALSE(from_moved.has_value());
  CHECK(from_moved.stop() == stop_reason::no_fallback);
  CHECK(from_moved.trace().size() == 0);

  chain_t assigned;
  assigned = std::move(moved);
  CHECK(assigned.run("q").served_by() == "model-a");
  // NOLINTNEXTLINE(bugprone-use-after-move)
  CHECK(moved.run("q").stop() == stop_reason::no_fallback);
  CHECK(a == 3);
  CHECK(c == 0);
}

TEST_CASE("chain: add() and the constructor reject bad settings, naming what is wrong") {
  chain_t chain;
  auto what_of = [&](auto&& add) -> std::string {
    try {
      add();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "(no exception)";
  };
  int calls = 0;
  const std::string empty_name = what_of([&] { chain.add("", answering("x", calls)); });
  CHECK(contains(empty_name, "name"));

  const std::string empty_fn =
      what_of([&] { chain.add("named-entry", std::function<std::string(const std::string&)>{}); });
  CHECK(contains(empty_fn, "named-entry"));
  CHECK(contains(empty_fn, "empty"));

  std::string (*null_fn)(const std::string&) = nullptr;
  const std::string null_ptr = what_of([&] { chain.add("null-entry", null_fn); });
  CHECK(contains(null_ptr, "null-entry"));
  {
    // Any callable wrapper that says it is empty (not only std::function) is refused; one that says
    // it holds something, and a lambda without captures, are taken.
    chain_t other;
    struct wrapper {
      bool holds = false;
      std::string operator()(const std::string& s) const { return s; }
      explicit operator bool() const noexcept { return holds; }
    };
    const std::string empty_wrapper = what_of([&] { other.add("wrapped-entry", wrapper{}); });
    CHECK(contains(empty_wrapper, "wrapped-entry"));
    CHECK(contains(empty_wrapper, "empty"));
    CHECK(what_of([&] { other.add("full-wrapper", wrapper{true}); }) == "(no exception)");
    CHECK(what_of([&] { other.add("plain-lambda", [](const std::string& s) { return s; }); }) ==
          "(no exception)");
    CHECK(other.size() == 2);
  }

  const std::string bad_retry =
      what_of([&] { chain.add("m", answering("x", calls), role::standard, attempts(0)); });
  CHECK(contains(bad_retry, "max_attempts"));

  failover::retry_options bad_rt;
  bad_rt.max_read_timeout_retries = -1;
  const std::string bad_read =
      what_of([&] { chain.add("m", answering("x", calls), role::standard, bad_rt); });
  CHECK(contains(bad_read, "max_read_timeout_retries"));

  // A rejected add leaves the chain unchanged.
  CHECK(chain.size() == 0);
  REQUIRE_NOTHROW(chain.add("m", answering("x", calls)));
  CHECK(chain.size() == 1);

  failover::chain_options hops;
  hops.max_hops = 0;
  REQUIRE_THROWS_AS(chain_t(hops), std::invalid_argument);
  failover::chain_options total;
  total.max_total_attempts = 0;
  REQUIRE_THROWS_AS(chain_t(total), std::invalid_argument);
  failover::chain_options deadline;
  deadline.deadline = duration::zero();
  REQUIRE_THROWS_AS(chain_t(deadline), std::invalid_argument);
}

TEST_CASE("chain: the trace records every attempt in full") {
  chain_t chain;
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(chain, clock);
  int a = 0;
  chain.add(
      "model-a",
      [&](const std::string&) -> answer {
        clock.advance(7ms);
        if (++a == 1)
          return failover::failure::http(429, "rate_limit_exceeded").header("retry-after-ms", "50");
        return failover::failure::http(503, "", "unavailable");
      },
      role::standard, attempts(2), exact(10ms));
  int b = 0;
  chain.add(
      "model-b",
      [&](const std::string& p) -> answer {
        clock.advance(7ms);
        if (++b == 1) return failover::failure::http(500);
        return p;
      },
      role::standard, attempts(2), exact(10ms));
  auto r = chain.run("q");
  REQUIRE(r.has_value());
  const auto& t = r.trace().attempts();
  REQUIRE(t.size() == 4);

  // a1: 0..7ms, rate limited, waits 50ms (server) + 10ms (backoff).
  CHECK(t[0].model == "model-a");
  CHECK(t[0].entry == 0);
  CHECK(t[0].role == role::standard);
  CHECK(t[0].attempt == 1);
  CHECK(t[0].start == duration::zero());
  CHECK(t[0].elapsed == 7ms);
  CHECK_FALSE(t[0].ok);
  CHECK(t[0].error().kind == error_kind::rate_limited);
  REQUIRE(t[0].error().status.has_value());
  CHECK(*t[0].error().status == 429);
  CHECK(t[0].error().code == "rate_limit_exceeded");
  CHECK(t[0].error().model == "model-a");
  CHECK(t[0].wait == 60ms);
  CHECK(t[0].why_wait == wait_reason::server);
  CHECK(t[0].stop == stop_reason::none);

  // a2: 67..74ms, 503, last attempt on model-a.
  CHECK(t[1].model == "model-a");
  CHECK(t[1].attempt == 2);
  CHECK(t[1].start == 67ms);
  CHECK(t[1].elapsed == 7ms);
  CHECK(t[1].error().kind == error_kind::server_error);
  REQUIRE(t[1].error().status.has_value());
  CHECK(*t[1].error().status == 503);
  CHECK(t[1].error().code.empty());
  CHECK(t[1].wait == duration::zero());
  CHECK(t[1].why_wait == wait_reason::none);
  CHECK(t[1].stop == stop_reason::attempts_exhausted);

  // b1: 74..81ms, 500, waits 10ms (backoff; a fresh backoff per model).
  CHECK(t[2].model == "model-b");
  CHECK(t[2].entry == 1);
  CHECK(t[2].attempt == 1);
  CHECK(t[2].start == 74ms);
  CHECK(t[2].elapsed == 7ms);
  CHECK(t[2].error().kind == error_kind::server_error);
  CHECK(t[2].wait == 10ms);
  CHECK(t[2].why_wait == wait_reason::backoff);
  CHECK(t[2].stop == stop_reason::none);

  // b2: 91..98ms, ok.
  CHECK(t[3].model == "model-b");
  CHECK(t[3].attempt == 2);
  CHECK(t[3].start == 91ms);
  CHECK(t[3].elapsed == 7ms);
  CHECK(t[3].ok);
  CHECK(t[3].why_wait == wait_reason::none);
  CHECK(t[3].stop == stop_reason::none);

  CHECK(r.trace().elapsed() == 98ms);
  CHECK(r.trace().total_wait() == 70ms);
  CHECK(clock.elapsed() == 98ms);
  const std::vector<duration> expected_sleeps{60ms, 10ms};
  CHECK(sleeper.sleeps() == expected_sleeps);
  CHECK(r.trace().name(0) == "model-a");
  CHECK(r.trace().name(1) == "model-b");
}

TEST_CASE("chain: a trace stays valid after the chain is gone or grows") {
  const std::string long_a = "a-model-name-long-enough-to-live-on-the-heap";
  const std::string long_b = "b-model-name-long-enough-to-live-on-the-heap";
  failover::testing::fake_clock clock;
  std::optional<failover::result<std::string>> kept;
  {
    chain_t chain;
    failover::testing::use_fake_time(chain, clock);
    int a = 0;
    int b = 0;
    chain.add(long_a, failing(failover::failure::http(401), a));
    chain.add(long_b, answering("b", b));
    kept.emplace(chain.run("q"));

    // More entries after the call: the earlier trace keeps its names.
    int c = 0;
    for (int i = 0; i < 20; ++i)
      chain.add("extra-model-number-" + std::to_string(i), answering("c", c));
    CHECK(kept->trace().attempts()[0].model == long_a);
    CHECK(kept->trace().name(1) == long_b);
    CHECK(kept->trace().name(2).empty());
  }
  REQUIRE(kept->has_value());
  CHECK(kept->trace().attempts()[0].model == long_a);
  CHECK(kept->trace().attempts()[1].model == long_b);
  CHECK(kept->served_by() == long_b);
  CHECK(kept->trace().name(0) == long_a);

  // Copies of the trace stay valid too.
  const failover::trace copy = kept->trace();
  kept.reset();
  CHECK(copy.attempts()[1].model == long_b);
  CHECK(copy.served_by() == long_b);
}

TEST_CASE("chain: every call ends with exactly one outcome") {
  failover::testing::fake_clock clock;
  const std::vector<failover::failure> failures{
      failover::failure::http(429),
      failover::failure::http(400),
      failover::failure::http(401),
      failover::failure::http(400, "content_policy_violation"),
      failover::failure::http(400, "context_length_exceeded"),
      failover::failure::of(failover::transport_error::read_timeout),
      failover::failure::http(429).header("Retry-After", "3600"),
  };
  for (std::size_t i = 0; i < failures.size(); ++i) {
    for (bool second_answers : {false, true}) {
      CAPTURE(i, second_answers);
      chain_t chain;
      failover::testing::use_fake_time(chain, clock);
      int a = 0;
      int b = 0;
      chain.add("model-a", failing(failures[i], a), role::standard, attempts(2));
      if (second_answers) {
        chain.add("model-b", answering("b", b));
      } else {
        chain.add("model-b", failing(failover::failure::http(503), b), role::standard, attempts(2));
      }
      auto r = chain.run("q");
      check_single_end(r);
      CHECK(static_cast<std::size_t>(a + b) == r.trace().size());
      if (!r.has_value()) {
        CHECK(r.error().kind != error_kind::unknown);
        CHECK_FALSE(r.error().model.empty());
      }
    }
  }
}

TEST_CASE("chain: the same chain runs from several threads at once") {
  SECTION("default policies, first model answers") {
    failover::fallback_chain<int(int)> chain;
    std::atomic<int> first_calls{0};
    chain.add("model-a", [&](int x) {
      first_calls.fetch_add(1);
      return x * 2;
    });
    // Captureless lambdas: add() must build warning-free with them (it once tripped -Waddress).
    chain.add("model-b", [](int x) { return -x; });
    chain.add("model-c", [](int x) { return -x; });
    constexpr int threads = 4;
    constexpr int calls = 200;
    std::vector<int> bad(threads, 0);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (int i = 0; i < calls; ++i) {
          const int x = t * 1000 + i;
          auto r = chain.run(x);
          if (!r.has_value() || *r != 2 * x || r.served_by() != "model-a" || r.fallback_used())
            ++bad[static_cast<std::size_t>(t)];
        }
      });
    }
    for (auto& th : pool) th.join();
    for (int t = 0; t < threads; ++t) CHECK(bad[static_cast<std::size_t>(t)] == 0);
    CHECK(first_calls.load() == threads * calls);
  }
  SECTION("fake policies, retries and a fallback in every call") {
    failover::basic_fallback_chain<int(int), failover::testing::fake_policies> chain;
    failover::testing::fake_clock clock;
    auto sleeper = failover::testing::use_fake_time(chain, clock);
    chain.add(
        "model-a", [](int) -> failover::outcome<int> { return failover::failure::http(503); },
        role::standard, attempts(2));
    chain.add("model-b", [](int x) { return x + 1; });
    constexpr int threads = 4;
    constexpr int calls = 100;
    std::vector<int> bad(threads, 0);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (int i = 0; i < calls; ++i) {
          const int x = t * 1000 + i;
          auto r = chain.run(x);
          if (!r.has_value() || *r != x + 1 || r.served_by() != "model-b" || r.trace().size() != 3)
            ++bad[static_cast<std::size_t>(t)];
        }
      });
    }
    for (auto& th : pool) th.join();
    for (int t = 0; t < threads; ++t) CHECK(bad[static_cast<std::size_t>(t)] == 0);
    CHECK(sleeper.sleeps().size() == static_cast<std::size_t>(threads * calls));
  }
}

TEST_CASE("chain: an exception mapping that itself throws still ends the call with one outcome",
          "[chain]") {
  chain_t chain;
  failover::testing::use_fake_time(chain, failover::testing::fake_clock{});
  chain.classifier().on_exception<std::runtime_error>(
      [](const std::runtime_error&) -> failover::failure {
        throw std::logic_error("a broken mapping");
      });
  int fallback_calls = 0;
  chain.add("m", [](const std::string&) -> std::string { throw std::runtime_error("boom"); });
  chain.add("n", [&](const std::string& s) {
    ++fallback_calls;
    return s;
  });
  failover::result<std::string> r = chain.run("x");
  REQUIRE(r.has_value());  // the unknown error on "m" falls back to "n"
  CHECK(fallback_calls == 1);
  CHECK(r.trace().attempts()[0].error().kind == error_kind::unknown);
  CHECK(r.trace().attempts()[0].error().exception != nullptr);
}

TEST_CASE("chain: begin_call keeps its own copy of the call options", "[chain]") {
  chain_t chain;
  failover::testing::use_fake_time(chain, failover::testing::fake_clock{});
  chain.add("m", [](const std::string& s) { return s; });
  auto call = chain.begin_call(failover::call_options{});  // a temporary: must not dangle
  const auto first = call.poll();
  REQUIRE(first);
  const auto* start = std::get_if<failover::actions::start_attempt>(&*first);
  REQUIRE(start);
  CHECK(start->entry == 0);
  CHECK_FALSE(start->context->cancelled());  // the token it points to is the machine's copy
  const failover::attempt_id id = start->id;
  const auto t = chain.clock().now();
  call.handle(failover::events::answered<std::string>{id, std::string("v")}, t);
  REQUIRE(call.poll());
  CHECK(call.is_done());
  // Out of turn: nothing changes, the call stays done with its one outcome.
  call.handle(failover::events::answered<std::string>{id, std::string("w")}, t);
  call.handle(failover::events::timer_fired{}, t);
  CHECK_FALSE(call.poll());
  const auto r = std::move(call).take();
  REQUIRE(r.has_value());
  CHECK(*r == "v");
  CHECK(r.trace().size() == 1);
}

TEST_CASE(
    "drivers: run(), the stepped machine, the callback driver and the virtual-time driver end "
    "every call alike",
    "[chain]") {
  // run() handles a call whose first attempt succeeds on its own and hands any other call to the
  // machine; begin_call() runs the machine from the start. Both must make the same call.
  const auto scenarios = failover_test::driver_scenarios();
  for (const auto& [name, builder] : scenarios) {
    SECTION(name) {
      auto blocking = failover_test::build(builder);
      auto step = failover_test::build(builder);
      const auto r1 = blocking->chain.run_with(blocking->options, "q");
      const auto r2 = failover_test::stepped(*step, "q");
      failover_test::check_same(r1, r2);
      auto async = failover_test::build(builder);
      failover_test::check_same(r1, failover_test::via_callback(*async, "q"));
      auto sim = failover_test::build(builder);
      failover_test::check_same(r1, failover_test::via_sim(*sim, "q"));
      // run() takes its own path (no call options to read): where the scenario sets none, it
      // must end the call the same way too.
      if (!blocking->options.deadline && !blocking->options.token.cancelled()) {
        auto plain = failover_test::build(builder);
        failover_test::check_same(plain->chain.run("q"), r2);
      }
    }
  }
}

TEST_CASE("chain: a chain moved from takes new entries as an empty chain does", "[chain]") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  int a = 0;
  int b = 0;
  chain.add("model-a", answering("a", a));
  const chain_t moved(std::move(chain));
  // NOLINTBEGIN(bugprone-use-after-move): what a chain moved from does is the point
  CHECK(chain.size() == 0);
  chain.add("model-b", answering("b", b));
  const auto r = chain.run("q");
  // NOLINTEND(bugprone-use-after-move)
  REQUIRE(r.has_value());
  CHECK(r.served_by() == "model-b");
  CHECK(r.trace().name(0) == "model-b");
  CHECK(r.trace().name(1).empty());
  CHECK(moved.run("q").served_by() == "model-a");
  CHECK(a == 1);
  CHECK(b == 1);
}

TEST_CASE("chain: traces of chains built per request outlive them, names and all", "[chain]") {
  // Each chain has names of its own and is gone before its result is read (run under ASan).
  failover::testing::fake_clock clock;
  std::vector<failover::result<std::string>> kept;
  for (int i = 0; i < 50; ++i) {
    chain_t chain;
    failover::testing::use_fake_time(chain, clock);
    int a = 0;
    int b = 0;
    const std::string id = std::to_string(i);
    chain.add("per-request-primary-" + id, failing(failover::failure::http(401), a));
    chain.add("per-request-fallback-" + id, answering("b", b));
    kept.push_back(chain.run("q"));
  }
  for (int i = 0; i < 50; ++i) {
    const auto& r = kept[static_cast<std::size_t>(i)];
    const std::string id = std::to_string(i);
    REQUIRE(r.trace().size() == 2);
    CHECK(r.trace().attempts()[0].model == "per-request-primary-" + id);
    CHECK(r.served_by() == "per-request-fallback-" + id);
    CHECK(r.trace().name(0) == "per-request-primary-" + id);
  }
}
