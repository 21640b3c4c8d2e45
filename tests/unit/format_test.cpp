// fmt formatting: enums, errors, traces and durations; credentials never reach formatted output.
#include "catch.hpp"
#include "support.hpp"

#include <failover/failover.hpp>
#include <failover/testing.hpp>

#include <chrono>
#include <functional>
#include <string>
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

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  for (;;) {
    const std::size_t end = text.find('\n', start);
    lines.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return lines;
}

using failover_test::attempts;
using failover_test::exact;

std::function<answer(const std::string&)> fail_with(failover::failure f) {
  return [f](const std::string&) -> answer { return f; };
}

std::function<answer(const std::string&)> echo() {
  return [](const std::string& p) -> answer { return p; };
}

}  // namespace

TEST_CASE("format: enums print their names") {
  CHECK(fmt::format("{}", error_kind::rate_limited) == "rate_limited");
  CHECK(fmt::format("{}", error_kind::deadline_exceeded) == "deadline_exceeded");
  CHECK(fmt::format("{}", error_kind::content_policy) == "content_policy");
  CHECK(fmt::format("{}", stop_reason::attempts_exhausted) ==
        std::string(failover::to_string(stop_reason::attempts_exhausted)));
  CHECK(fmt::format("{}", stop_reason::hop_limit) ==
        std::string(failover::to_string(stop_reason::hop_limit)));
  CHECK(fmt::format("{}", wait_reason::server) == "server");
  CHECK(fmt::format("{}", wait_reason::backoff) == "backoff");
  CHECK(fmt::format("{}", role::standard) == "standard");
  CHECK(fmt::format("{}", role::content_policy) ==
        std::string(failover::to_string(role::content_policy)));
  CHECK(fmt::format("{}", failover::jitter::decorrelated) == "decorrelated");
  CHECK(fmt::format("{}", failover::jitter::none) == "none");

  // Every kind has a distinct, non-empty name.
  std::vector<std::string> names;
  for (int k = 0; k < failover::error_kind_count; ++k) {
    const std::string name = fmt::format("{}", static_cast<error_kind>(k));
    CAPTURE(k, name);
    CHECK_FALSE(name.empty());
    for (const auto& other : names) CHECK(other != name);
    names.push_back(name);
  }
}

TEST_CASE("format: enum formatters accept string format specs") {
  CHECK(fmt::format("[{:>8}]", role::standard) == "[standard]");
  CHECK(fmt::format("[{:<10}]", wait_reason::server) == "[server    ]");
  CHECK(fmt::format("[{:^8}]", failover::jitter::full) == "[  full  ]");
}

TEST_CASE("format: an error shows every fact it carries") {
  failover::error e;
  e.kind = error_kind::rate_limited;
  e.transient = true;
  e.status = 429;
  e.code = "rate_limit_exceeded";
  e.retry_after = 2s;
  e.model = "gpt-4o";
  e.message = "Rate limit reached";
  const std::string s = fmt::format("{}", e);
  CAPTURE(s);
  CHECK(contains(s, "rate_limited"));
  CHECK(contains(s, "transient"));
  CHECK_FALSE(contains(s, "permanent"));
  CHECK(contains(s, "429"));
  CHECK(contains(s, "rate_limit_exceeded"));
  CHECK(contains(s, failover::format_duration(2s)));
  CHECK(contains(s, "gpt-4o"));
  CHECK(contains(s, "Rate limit reached"));

  failover::error p;
  p.kind = error_kind::unauthorized;
  p.transient = false;
  const std::string ps = fmt::format("{}", p);
  CAPTURE(ps);
  CHECK(contains(ps, "unauthorized"));
  CHECK(contains(ps, "permanent"));
  CHECK_FALSE(contains(ps, "transient"));
  CHECK_FALSE(contains(ps, "HTTP"));
  CHECK_FALSE(contains(ps, "server wait"));
}

TEST_CASE("format_duration: short and readable") {
  CHECK(failover::format_duration(duration::zero()) == "0ms");
  CHECK(failover::format_duration(12ms) == "12ms");
  CHECK(failover::format_duration(1500us) == "1.5ms");
  CHECK(failover::format_duration(2410ms) == "2.41s");
  CHECK(failover::format_duration(999ms) == "999ms");
  CHECK(failover::format_duration(20us) == "0ms");
  CHECK(failover::format_duration(-5ms) == "0ms");
  CHECK(failover::format_duration(90s) == "90.00s");
}

TEST_CASE("format: a trace has one line per attempt, with waits, give-ups and fallbacks") {
  chain_t chain;
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(chain, clock);
  int a = 0;
  chain.add(
      "alpha-model",
      [&](const std::string&) -> answer {
        clock.advance(12ms);
        if (++a == 1) return failover::failure::http(429).header("retry-after-ms", "100");
        return failover::failure::http(503);
      },
      role::standard, attempts(3), exact(10ms));
  chain.add("beta-model", echo());
  auto r = chain.run("q");
  REQUIRE(r.has_value());
  REQUIRE(r.trace().size() == 4);
  const std::string text = fmt::format("{}", r.trace());
  CAPTURE(text);
  const auto lines = lines_of(text);
  REQUIRE(lines.size() == 4);

  // a1: a server wait of 100ms plus 10ms backoff.
  CHECK(contains(lines[0], "alpha-model"));
  CHECK(contains(lines[0], "rate_limited"));
  CHECK(contains(lines[0], "429"));
  CHECK(contains(lines[0], "wait"));
  CHECK(contains(lines[0], failover::format_duration(110ms)));
  CHECK(contains(lines[0], "server"));
  CHECK(contains(lines[0], failover::format_duration(12ms)));  // how long it ran
  CHECK_FALSE(contains(lines[0], "gave up"));

  // a2: a backoff wait of 20ms.
  CHECK(contains(lines[1], "server_error"));
  CHECK(contains(lines[1], failover::format_duration(20ms)));
  CHECK(contains(lines[1], "backoff"));
  CHECK(contains(lines[1], failover::format_duration(122ms)));  // when it started

  // a3: the last attempt on alpha-model: gave up, and where the call went next.
  CHECK(contains(lines[2], "gave up"));
  CHECK(contains(lines[2], fmt::format("{}", stop_reason::attempts_exhausted)));
  CHECK(contains(lines[2], "beta-model"));
  CHECK_FALSE(contains(lines[2], "wait"));

  // b1: served.
  CHECK(contains(lines[3], "beta-model"));
  CHECK(contains(lines[3], "ok"));
  CHECK_FALSE(contains(lines[3], "content-policy"));
}

TEST_CASE("format: a failed call's trace ends with the reason it gave up") {
  chain_t chain;
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(chain, clock);
  chain.add("alpha-model", fail_with(failover::failure::http(401, "invalid_api_key")));
  auto r = chain.run("q");
  REQUIRE_FALSE(r.has_value());
  const std::string text = fmt::format("{}", r.trace());
  CAPTURE(text);
  const auto lines = lines_of(text);
  REQUIRE(lines.size() == 1);
  CHECK(contains(lines[0], "unauthorized"));
  CHECK(contains(lines[0], "permanent"));
  CHECK(contains(lines[0], "invalid_api_key"));
  CHECK(contains(lines[0], "gave up"));
  CHECK(contains(lines[0], fmt::format("{}", stop_reason::permanent_error)));
}

TEST_CASE("format: an answer from a content-policy fallback is marked") {
  chain_t chain;
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(chain, clock);
  chain.add("alpha-model", fail_with(failover::failure::http(400, "content_policy_violation")));
  chain.add("reviewed-model", echo(), role::content_policy);
  auto r = chain.run("q");
  REQUIRE(r.has_value());
  const std::string text = fmt::format("{}", r.trace());
  CAPTURE(text);
  const auto lines = lines_of(text);
  REQUIRE(lines.size() == 2);
  CHECK(contains(lines[0], "reviewed-model"));  // where the refusal went
  CHECK(contains(lines[1], "ok"));
  CHECK(contains(lines[1], fmt::format("{}", role::content_policy)));
}

TEST_CASE("format: an empty trace still prints something") {
  failover::trace t;
  const std::string text = fmt::format("{}", t);
  CHECK_FALSE(text.empty());
  CHECK(lines_of(text).size() == 1);
}

TEST_CASE("format: credentials in a failure's message never reach formatted output") {
  const std::string secret = "SECRET123";
  const std::vector<std::string> messages{
      "Bearer sk-live-SECRET123",
      "upstream said: Authorization: Bearer sk-live-SECRET123 (rejected)",
      "authorization: bearer sk-live-SECRET123",
      "{\"error\":\"Bearer sk-live-SECRET123 is invalid\"}",
      "retrying with Bearer sk-live-SECRET123 and again Bearer sk-live-SECRET123",
      "x-api-key: Bearer sk-live-SECRET123",
      "client(api_key=\"Bearer sk-live-SECRET123\")",
  };
  for (const auto& message : messages) {
    CAPTURE(message);
    SECTION("chain trace and error: " + message) {
      chain_t chain;
      failover::testing::fake_clock clock;
      failover::testing::use_fake_time(chain, clock);
      chain.add("alpha-model", fail_with(failover::failure::http(401, "", message)));
      chain.add("beta-model", fail_with(failover::failure::http(503, "", message)), role::standard,
                attempts(2), exact(1ms));
      auto r = chain.run("q");
      REQUIRE_FALSE(r.has_value());
      const std::string trace_text = fmt::format("{}", r.trace());
      const std::string error_text = fmt::format("{}", r.error());
      CAPTURE(trace_text, error_text);
      CHECK_FALSE(contains(trace_text, secret));
      CHECK_FALSE(contains(error_text, secret));
      CHECK_FALSE(contains(r.error().message, secret));
      for (const auto& a : r.trace().attempts()) CHECK_FALSE(contains(a.error().message, secret));
    }
    SECTION("deadline error, which quotes the last message: " + message) {
      failover::basic_retrier<failover::testing::fake_policies> retrier("alpha-model", {},
                                                                        exact(10s));
      retrier.deadline(1s);
      failover::testing::fake_clock clock;
      failover::testing::use_fake_time(retrier, clock);
      auto r = retrier.run(
          [&]() -> failover::outcome<int> { return failover::failure::http(503, "", message); });
      REQUIRE(r.error().kind == error_kind::deadline_exceeded);
      const std::string error_text = fmt::format("{}", r.error());
      CAPTURE(error_text);
      CHECK_FALSE(contains(error_text, secret));
      CHECK_FALSE(contains(fmt::format("{}", r.trace()), secret));
    }
  }
}
