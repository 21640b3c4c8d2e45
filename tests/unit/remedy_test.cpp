// Remedies on fake time: each remedy from a real chain's failed call, the calls that have none, and
// the pure rule's order when several could apply.
#include "catch.hpp"
#include "support.hpp"

#include <failover/core/remedy.hpp>
#include <failover/fallback_chain.hpp>
#include <failover/gates/breaker.hpp>
#include <failover/testing.hpp>

#include <chrono>
#include <functional>
#include <string>

using namespace std::chrono_literals;

namespace {

using chain_t = failover::basic_fallback_chain<std::string(const std::string&),
                                               failover::testing::fake_policies>;
using answer = failover::outcome<std::string>;
using failover::error_kind;
using failover::remedy;
using failover::role;
using failover::stop_reason;

using failover_test::attempts;
using failover_test::exact;

std::function<answer(const std::string&)> failing(failover::failure f) {
  return [f](const std::string&) -> answer { return f; };
}

std::function<answer(const std::string&)> answering() {
  return [](const std::string& prompt) -> answer { return "ok:" + prompt; };
}

std::string name(remedy r) {
  return std::string(failover::to_string(r));
}

failover::failure context_too_long() {
  return failover::failure::http(400, "context_length_exceeded", "too long");
}

failover::failure refused() {
  return failover::failure::http(400, "content_policy_violation", "refused");
}

struct breaker_policies : failover::testing::fake_policies {
  using breaker = failover::circuit_breaker;
};

struct fake_chain {
  explicit fake_chain(failover::chain_options o = {}) : chain(o) {
    failover::testing::use_fake_time(chain, clock);
  }
  chain_t chain;
  failover::testing::fake_clock clock;
};

}  // namespace

TEST_CASE("remedy: an input too long with no context-window entry: add one") {
  fake_chain c;
  c.chain.add("a", failing(context_too_long()));
  auto r = c.chain.run("q");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().kind == error_kind::context_window);
  CHECK(failover::remedy_for(r) == remedy::add_context_window_entry);

  // A standard entry may take a context_window failure and fail the same way: still no entry
  // with a longer window was there.
  fake_chain two;
  two.chain.add("a", failing(context_too_long()));
  two.chain.add("b", failing(context_too_long()));
  auto r2 = two.chain.run("q");
  REQUIRE(r2.trace().size() == 2);
  CHECK(failover::remedy_for(r2) == remedy::add_context_window_entry);
}

TEST_CASE("remedy: a context-window entry that fails too leaves no remedy") {
  fake_chain c;
  c.chain.add("a", failing(context_too_long()));
  c.chain.add("long", failing(context_too_long()), role::context_window);
  auto r = c.chain.run("q");
  REQUIRE(r.trace().size() == 2);
  CHECK(r.trace().attempts()[1].role == role::context_window);
  CHECK(r.error().kind == error_kind::context_window);  // the input was too long
  CHECK(failover::remedy_for(r) == remedy::none);
}

TEST_CASE("remedy: a content-policy refusal with no policy entry: add one (opt-in)") {
  fake_chain c;
  c.chain.add("a", failing(refused()));
  c.chain.add("b", answering());  // a standard entry never takes a refusal
  auto r = c.chain.run("q");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().kind == error_kind::content_policy);
  CHECK(failover::remedy_for(r) == remedy::add_content_policy_entry);

  fake_chain with;
  with.chain.add("a", failing(refused()));
  with.chain.add("reviewed", failing(refused()), role::content_policy);
  auto r2 = with.chain.run("q");
  REQUIRE(r2.trace().size() == 2);
  CHECK(failover::remedy_for(r2) == remedy::none);
}

TEST_CASE("remedy: the deadline ran out: raise it") {
  failover::chain_options o;
  o.deadline = 5s;
  fake_chain c(o);
  c.chain.add("a", failing(failover::failure::http(503)), role::standard, attempts(100),
              exact(1s, 1s));
  auto r = c.chain.run("q");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.stop() == stop_reason::deadline);
  CHECK(r.error().kind == error_kind::deadline_exceeded);
  CHECK(failover::remedy_for(r) == remedy::raise_deadline);
}

TEST_CASE("remedy: rejected credentials: check them, on the last model as on the only one") {
  fake_chain c;
  c.chain.add("a", failing(failover::failure::http(401, "invalid_api_key")));
  auto r = c.chain.run("q");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().kind == error_kind::unauthorized);
  CHECK(failover::remedy_for(r) == remedy::check_credentials);

  fake_chain two;
  two.chain.add("a", failing(failover::failure::http(401)));
  two.chain.add("b", failing(failover::failure::http(401)));
  auto r2 = two.chain.run("q");
  REQUIRE(r2.trace().size() == 2);
  CHECK(failover::remedy_for(r2) == remedy::check_credentials);

  // A 403 is a permission the key lacks, not a wrong key: no remedy is claimed.
  fake_chain forbidden;
  forbidden.chain.add("a", failing(failover::failure::http(403)));
  CHECK(failover::remedy_for(forbidden.chain.run("q")) == remedy::none);
}

TEST_CASE("remedy: a server wait above the cap: raise the cap, below it there is none") {
  failover::retry_options cap = attempts(3);
  cap.max_server_wait = 10s;
  fake_chain c;
  c.chain.add("a", failing(failover::failure::http(429).header("Retry-After", "120")),
              role::standard, cap, exact(1ms));
  auto r = c.chain.run("q");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.stop() == stop_reason::server_wait_too_long);
  CHECK(r.trace().attempts().back().stop == stop_reason::server_wait_too_long);
  CHECK(failover::remedy_for(r) == remedy::raise_max_server_wait);

  fake_chain below;
  below.chain.add("a", failing(failover::failure::http(429).header("Retry-After", "2")),
                  role::standard, cap, exact(1ms));
  auto r2 = below.chain.run("q");
  REQUIRE_FALSE(r2.has_value());
  CHECK(r2.stop() == stop_reason::attempts_exhausted);
  CHECK(failover::remedy_for(r2) == remedy::none);
}

TEST_CASE("remedy: the hop limit stopped a fallback that was ready: raise it") {
  failover::chain_options o;
  o.max_hops = 1;
  fake_chain c(o);
  c.chain.add("a", failing(failover::failure::http(503)), role::standard, attempts(1));
  c.chain.add("b", answering());
  auto r = c.chain.run("q");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.stop() == stop_reason::hop_limit);
  CHECK(failover::remedy_for(r) == remedy::raise_max_hops);
}

TEST_CASE("remedy: read timeouts with no fallback to take over: raise the read timeout") {
  const auto timed_out = failover::failure::of(failover::transport_error::read_timeout);
  failover::retry_options o = attempts(5);
  o.max_read_timeout_retries = 1;
  fake_chain c;
  c.chain.add("a", failing(timed_out), role::standard, o, exact(1ms));
  auto r = c.chain.run("q");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.trace().size() == 2);
  CHECK(r.stop() == stop_reason::read_timeouts_exhausted);
  CHECK(failover::remedy_for(r) == remedy::raise_read_timeout);

  // Its attempts ran out on read timeouts: the same remedy.
  fake_chain one;
  one.chain.add("a", failing(timed_out), role::standard, attempts(1));
  r = one.chain.run("q");
  CHECK(r.stop() == stop_reason::attempts_exhausted);
  CHECK(failover::remedy_for(r) == remedy::raise_read_timeout);

  // A fallback took over and answered: nothing to change.
  fake_chain two;
  two.chain.add("a", failing(timed_out), role::standard, o, exact(1ms));
  two.chain.add("b", answering());
  r = two.chain.run("q");
  REQUIRE(r.has_value());
  CHECK(r.trace().attempts()[0].stop == stop_reason::read_timeout_fallback);
  CHECK(failover::remedy_for(r) == remedy::none);
}

TEST_CASE("remedy: a deadline stop that came from a wait past the deadline: raise it") {
  failover::chain_options o;
  o.deadline = 5s;
  fake_chain c(o);
  // The first backoff (10 s) would cross the deadline: the model gives up at once, and with no
  // entry to take over the call ends at the deadline.
  c.chain.add("a", failing(failover::failure::http(503)), role::standard, attempts(5),
              exact(10s, 10s));
  auto r = c.chain.run("q");
  REQUIRE_FALSE(r.has_value());
  REQUIRE(r.trace().size() == 1);
  CHECK(r.trace().attempts()[0].stop == stop_reason::wait_past_deadline);
  CHECK(r.stop() == stop_reason::deadline);
  CHECK(failover::remedy_for(r) == remedy::raise_deadline);
}

TEST_CASE("remedy: a context-window entry skipped by an open circuit was there: no remedy") {
  // The pure rule: an entry that was reached is no missing entry, whatever happened to it.
  failover::error e;
  e.kind = error_kind::context_window;
  CHECK(failover::remedy_for(e, stop_reason::circuit_open, {true, false}) == remedy::none);

  // From a trace: the skipped entry's record carries its role.
  failover::testing::fake_clock clock;
  failover::circuit_breaker b;
  failover::basic_fallback_chain<std::string(const std::string&), breaker_policies> chain;
  failover::testing::use_fake_time(chain, clock);
  chain.add("a", failing(context_too_long()));
  chain.add("long", answering(), role::context_window);
  chain.set_breaker(b);
  failover::error tripped;
  tripped.kind = error_kind::server_error;
  tripped.transient = true;
  for (int i = 0; i < 10; ++i) b.on_failure(b.resolve("long"), clock.now(), tripped, false);
  auto r = chain.run("q");
  REQUIRE_FALSE(r.has_value());
  REQUIRE(r.trace().size() == 2);
  CHECK(r.trace().attempts()[1].skipped);
  CHECK(r.trace().attempts()[1].role == role::context_window);
  CHECK(r.error().kind == error_kind::context_window);  // the input was too long
  CHECK(failover::remedy_for(r) == remedy::none);
}

TEST_CASE("remedy: Gemini's invalid key (a 400 the adapter marks unauthorized): check it") {
  // openai::error_failure reads INVALID_ARGUMENT with reason API_KEY_INVALID as this failure.
  failover::failure bad_key = failover::failure::http(400, "INVALID_ARGUMENT", "API key not valid");
  bad_key.kind = error_kind::unauthorized;
  fake_chain c;
  c.chain.add("gemini", failing(bad_key));
  auto r = c.chain.run("q");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().status == 400);
  CHECK(r.error().kind == error_kind::unauthorized);
  CHECK(failover::remedy_for(r) == remedy::check_credentials);
}

TEST_CASE("remedy: none where no setting is known to help") {
  SECTION("a success, also after a fallback") {
    fake_chain c;
    c.chain.add("a", failing(failover::failure::http(401)));
    c.chain.add("b", answering());
    auto r = c.chain.run("q");
    REQUIRE(r.has_value());
    CHECK(failover::remedy_for(r) == remedy::none);
  }
  SECTION("a server that stays down") {
    fake_chain c;
    c.chain.add("a", failing(failover::failure::http(503)), role::standard, attempts(3), exact(1s));
    auto r = c.chain.run("q");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.stop() == stop_reason::attempts_exhausted);
    CHECK(failover::remedy_for(r) == remedy::none);
  }
  SECTION("a bad request") {
    fake_chain c;
    c.chain.add("a", failing(failover::failure::http(400, "", "bad field")));
    c.chain.add("b", answering());
    auto r = c.chain.run("q");
    CHECK(r.stop() == stop_reason::bad_request);
    CHECK(failover::remedy_for(r) == remedy::none);
  }
  SECTION("an unknown model") {
    fake_chain c;
    c.chain.add("a", failing(failover::failure::http(404, "model_not_found")));
    CHECK(failover::remedy_for(c.chain.run("q")) == remedy::none);
  }
  SECTION("cancelled by the caller, even with a deadline set") {
    failover::chain_options o;
    o.deadline = 60s;
    fake_chain c(o);
    failover::cancel_source cancel;
    c.chain.add("a", [&](const std::string&) -> answer {
      cancel.cancel();
      return failover::failure::http(503);
    });
    failover::call_options call;
    call.token = cancel.token();
    auto r = c.chain.run_with(call, "q");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.stop() == stop_reason::cancelled);
    CHECK(failover::remedy_for(r) == remedy::none);
  }
}

TEST_CASE("remedy: the rule's order when several could apply") {
  failover::error e;
  e.kind = error_kind::context_window;
  // The call-ending settings come before what the failure was.
  CHECK(failover::remedy_for(e, stop_reason::hop_limit, {}) == remedy::raise_max_hops);
  CHECK(failover::remedy_for(e, stop_reason::deadline, {}) == remedy::raise_deadline);
  CHECK(failover::remedy_for(e, stop_reason::permanent_error, {}) ==
        remedy::add_context_window_entry);
  CHECK(failover::remedy_for(e, stop_reason::permanent_error, {true, false}) == remedy::none);
  e.kind = error_kind::content_policy;
  CHECK(failover::remedy_for(e, stop_reason::permanent_error, {true, false}) ==
        remedy::add_content_policy_entry);
  CHECK(failover::remedy_for(e, stop_reason::permanent_error, {false, true}) == remedy::none);
  e.kind = error_kind::rate_limited;
  CHECK(failover::remedy_for(e, stop_reason::server_wait_too_long, {}) ==
        remedy::raise_max_server_wait);
  e.kind = error_kind::deadline_exceeded;
  CHECK(failover::remedy_for(e, stop_reason::deadline, {}) == remedy::raise_deadline);
  e.kind = error_kind::cancelled;
  CHECK(failover::remedy_for(e, stop_reason::cancelled, {}) == remedy::none);
}

TEST_CASE("remedy: every remedy has a sentence, none has none") {
  CHECK(name(remedy::none).empty());
  for (remedy r : {remedy::add_context_window_entry, remedy::add_content_policy_entry,
                   remedy::raise_deadline, remedy::check_credentials, remedy::raise_max_server_wait,
                   remedy::raise_max_hops, remedy::raise_read_timeout}) {
    INFO(static_cast<int>(r));
    CHECK_FALSE(name(r).empty());
  }
  CHECK(name(remedy::raise_deadline).find("deadline") != std::string::npos);
}
