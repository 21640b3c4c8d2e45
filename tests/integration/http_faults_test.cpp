// Every fault kind over real HTTP on 127.0.0.1, through each adapter and a fallback chain. The
// assertions are about what the server saw: how many requests, for which model, in what order,
// and how far apart.
#include <string>
#include <vector>

#include "catch.hpp"
#include "support.hpp"

using namespace itest;
using failover::error_kind;
using failover::role;
using failover::stop_reason;
using failover::testing::mock_provider;
using failover::testing::refused_port;
using failover::testing::unanswered_port;

namespace {

failover::attempt_context first_attempt(std::string_view model) {
  failover::attempt_context ctx;
  ctx.model = model;
  return ctx;
}

}  // namespace

TEST_CASE("429 with Retry-After in seconds: the retry comes no sooner than asked") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    mock.script("gpt",
                {mock_reply::error(429, "rate_limit_exceeded").with_header("Retry-After", "1"),
                 mock_reply::answer("hi")});
    setup s;
    s.adapter = c;
    s.models = {{"gpt", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE(r);
    CHECK(r->content == "hi");
    const auto seen = mock.requests("gpt");
    REQUIRE(seen.size() == 2);
    // The wait by the library's own clock; the server's log (another thread) only shows that the
    // retry did not come at once, with a margin for a loaded machine.
    REQUIRE(r.trace().size() == 2);
    CHECK(r.trace().attempts()[1].start - r.trace().attempts()[0].start >= 1s);
    CHECK(gap_ms(seen[0], seen[1]) >= 500);
    CHECK(r.trace().attempts()[0].why_wait == failover::wait_reason::server);
    CHECK(r.trace().attempts()[0].error().kind == error_kind::rate_limited);
  }
}

TEST_CASE("429 with retry-after-ms: the retry comes no sooner than asked") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    mock.script("gpt",
                {mock_reply::error(429, "rate_limit_exceeded").with_header("retry-after-ms", "150"),
                 mock_reply::answer("hi")});
    setup s;
    s.adapter = c;
    s.models = {{"gpt", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE(r);
    const auto seen = mock.requests("gpt");
    REQUIRE(seen.size() == 2);
    REQUIRE(r.trace().size() == 2);  // a 150 ms gap is judged by the library's clock alone
    CHECK(r.trace().attempts()[0].wait >= 150ms);
    CHECK(r.trace().attempts()[1].start - r.trace().attempts()[0].start >= 150ms);
    CHECK(r.trace().attempts()[0].why_wait == failover::wait_reason::server);
  }
}

TEST_CASE("429 with Retry-After as an HTTP-date: the retry waits until about then") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    // Two seconds ahead, truncated to whole seconds by the date format: at least one second.
    mock.script("gpt", {mock_reply::error(429, "rate_limit_exceeded").with_retry_after_date(2s),
                        mock_reply::answer("hi")});
    setup s;
    s.adapter = c;
    s.models = {{"gpt", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE(r);
    const auto seen = mock.requests("gpt");
    REQUIRE(seen.size() == 2);
    CHECK(gap_ms(seen[0], seen[1]) >= 1000 - lag_ms);
    CHECK(r.trace().attempts()[0].why_wait == failover::wait_reason::server);
  }
}

TEST_CASE("429 without Retry-After: retried after the backoff alone") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(429, "rate_limit_exceeded"), mock_reply::answer("hi")});
    setup s;
    s.adapter = c;
    s.models = {{"gpt", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE(r);
    CHECK(mock.count("gpt") == 2);
    CHECK(r.trace().attempts()[0].why_wait == failover::wait_reason::backoff);
    CHECK_FALSE(r.trace().attempts()[0].error().retry_after.has_value());
  }
}

TEST_CASE("429 insufficient_quota is not retried: waiting adds no credit") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(429, "insufficient_quota", "", "insufficient_quota")});
    mock.script("backup", {mock_reply::answer("from backup")});
    setup s;
    s.adapter = c;
    s.models = {{"gpt", mock.base_url()}, {"backup", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE(r);
    CHECK(r.served_by() == "backup");
    CHECK(mock.count("gpt") == 1);
  }
}

TEST_CASE("500, 502, 503, 504 and 529 are retried on the same model until it answers") {
  for (client c : clients()) {
    for (int status : {500, 502, 503, 504, 529}) {
      INFO(name_of(c) << " HTTP " << status);
      mock_provider mock;
      mock.script("gpt", {status == 529 ? mock_reply::anthropic_error(529, "overloaded_error")
                                        : mock_reply::error(status),
                          mock_reply::answer("hi")});
      mock.script("backup", {mock_reply::answer("from backup")});
      setup s;
      s.adapter = c;
      s.models = {{"gpt", mock.base_url()}, {"backup", mock.base_url()}};
      const result_type r = make_chain(s)->run("q");
      REQUIRE(r);
      CHECK(r.served_by() == "gpt");
      CHECK(mock.count("gpt") == 2);
      CHECK(mock.count("backup") == 0);
      const auto& first = r.trace().attempts()[0].error();
      CHECK(first.kind == (status == 529 ? error_kind::overloaded : error_kind::server_error));
      CHECK(first.status == status);
    }
  }
}

TEST_CASE("Anthropic error bodies are classified by their type") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    // A 400 whose type says rate limiting: the structured field wins over the status.
    mock.script("claude", {mock_reply::anthropic_error(400, "rate_limit_error", "slow down"),
                           mock_reply::answer("hi")});
    setup s;
    s.adapter = c;
    s.models = {{"claude", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE(r);
    CHECK(mock.count("claude") == 2);
    CHECK(r.trace().attempts()[0].error().kind == error_kind::rate_limited);
    CHECK(r.trace().attempts()[0].error().code == "rate_limit_error");
  }
}

TEST_CASE("connection refused: each attempt fails fast, then the fallback answers") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    refused_port down;
    mock.script("backup", {mock_reply::answer("from backup")});
    setup s;
    s.adapter = c;
    s.models = {{"gpt", down.base_url()}, {"backup", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE(r);
    CHECK(r.served_by() == "backup");
    CHECK(r.fallback_used());
    REQUIRE(r.trace().size() == 4);
    for (std::size_t i = 0; i < 3; ++i)
      CHECK(r.trace().attempts()[i].error().kind == error_kind::connection_error);
    CHECK(r.trace().attempts()[2].stop == stop_reason::attempts_exhausted);
    CHECK(mock.requests().size() == 1);  // the server only ever saw the fallback

    const auto ctx = first_attempt("gpt");
    auto once = caller(c, down.base_url(), "gpt", s.limits)(ctx, "q");
    REQUIRE_FALSE(once);
    CHECK(once.failure().transport == failover::transport_error::connection_refused);
  }
}

TEST_CASE("connect timeout: nothing is sent, the attempt stops at the connect timeout") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    unanswered_port silent;
    mock.script("backup", {mock_reply::answer("from backup")});
    setup s;
    s.adapter = c;
    s.limits.connect = 50ms;
    s.retry.max_attempts = 2;
    s.models = {{"gpt", silent.base_url()}, {"backup", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE(r);
    CHECK(r.served_by() == "backup");
    REQUIRE(r.trace().size() == 3);
    CHECK(r.trace().attempts()[0].error().kind == error_kind::connect_timeout);
    CHECK(r.trace().attempts()[1].error().kind == error_kind::connect_timeout);
    CHECK(r.trace().attempts()[0].elapsed >= 45ms);
    CHECK(mock.requests().size() == 1);

    const auto ctx = first_attempt("gpt");
    auto once = caller(c, silent.base_url(), "gpt", s.limits)(ctx, "q");
    REQUIRE_FALSE(once);
    CHECK(once.failure().transport == failover::transport_error::connect_timeout);
  }
}

TEST_CASE(
    "read timeout: a fallback takes over at once, alone it is retried max_read_timeout_retries "
    "times") {
  for (client c : clients()) {
    INFO(name_of(c));
    {
      mock_provider mock;
      mock.script("gpt", {mock_reply::answer("too late").after(3000ms)});
      mock.script("backup", {mock_reply::answer("from backup")});
      setup s;
      s.adapter = c;
      s.limits.read = 100ms;
      s.retry.max_attempts = 5;
      s.retry.max_read_timeout_retries = 1;
      s.models = {{"gpt", mock.base_url()}, {"backup", mock.base_url()}};
      const result_type r = make_chain(s)->run("q");
      REQUIRE(r);
      CHECK(r.served_by() == "backup");
      REQUIRE(r.trace().size() == 2);
      CHECK(r.trace().attempts()[0].error().kind == error_kind::read_timeout);
      CHECK(r.trace().attempts()[0].stop == stop_reason::read_timeout_fallback);
      // One request to the silent model: a second identical one would double its cost.
      const auto seen = mock.requests();
      REQUIRE(seen.size() == 2);
      CHECK(seen[0].model == "gpt");
      CHECK(seen[1].model == "backup");

      const auto ctx = first_attempt("gpt");
      auto once = caller(c, mock.base_url(), "gpt", s.limits)(ctx, "q");
      REQUIRE_FALSE(once);
      CHECK(once.failure().transport == failover::transport_error::read_timeout);
    }
    {
      mock_provider mock;
      mock.script("gpt", {mock_reply::answer("too late").after(3000ms)});
      setup s;
      s.adapter = c;
      s.limits.read = 100ms;
      s.retry.max_attempts = 5;
      s.retry.max_read_timeout_retries = 1;
      s.models = {{"gpt", mock.base_url()}};
      const result_type r = make_chain(s)->run("q");
      REQUIRE_FALSE(r);
      REQUIRE(r.trace().size() == 2);
      CHECK(r.trace().attempts()[1].error().kind == error_kind::read_timeout);
      CHECK(r.stop() == stop_reason::read_timeouts_exhausted);
      // The attempt waited out its read timeout (the library's own record of it).
      CHECK(r.trace().attempts()[0].elapsed >= 95ms);
      CHECK(r.trace().attempts()[1].start - r.trace().attempts()[0].start >= 95ms);
      CHECK(mock.count("gpt") == 2);
    }
  }
}

TEST_CASE("connection reset mid-response: retried, and the retry succeeds") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    mock.script("gpt", {mock_reply::dropped(), mock_reply::answer("whole")});
    setup s;
    s.adapter = c;
    s.models = {{"gpt", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE(r);
    CHECK(r->content == "whole");
    CHECK(mock.count("gpt") == 2);
    CHECK(r.trace().attempts()[0].error().kind == error_kind::connection_error);

    mock.script("cut", {mock_reply::dropped()});
    const auto ctx = first_attempt("cut");
    auto once = caller(c, mock.base_url(), "cut", s.limits)(ctx, "q");
    REQUIRE_FALSE(once);
    CHECK(once.failure().transport == failover::transport_error::connection_reset);
  }
}

TEST_CASE("a 200 whose body is not JSON is an invalid response, retried") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    mock.script("gpt",
                {mock_reply::raw(200, "<html>upstream hiccup</html>"), mock_reply::answer("ok")});
    setup s;
    s.adapter = c;
    s.models = {{"gpt", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE(r);
    CHECK(mock.count("gpt") == 2);
    CHECK(r.trace().attempts()[0].error().kind == error_kind::invalid_response);
  }
}

TEST_CASE("400 ends the chain: the same request would fail everywhere") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(400, "", "bad field", "invalid_request_error")});
    mock.script("backup", {mock_reply::answer("never")});
    setup s;
    s.adapter = c;
    s.models = {{"gpt", mock.base_url()}, {"backup", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == error_kind::bad_request);
    CHECK(r.stop() == stop_reason::bad_request);
    CHECK(mock.count("gpt") == 1);
    CHECK(mock.count("backup") == 0);
  }
}

TEST_CASE("401, 403 and 404 are not retried but fall back") {
  for (client c : clients()) {
    for (int status : {401, 403, 404}) {
      INFO(name_of(c) << " HTTP " << status);
      mock_provider mock;
      mock.script("gpt", {mock_reply::error(status)});
      mock.script("backup", {mock_reply::answer("from backup")});
      setup s;
      s.adapter = c;
      s.models = {{"gpt", mock.base_url()}, {"backup", mock.base_url()}};
      const result_type r = make_chain(s)->run("q");
      REQUIRE(r);
      CHECK(r.served_by() == "backup");
      CHECK(mock.count("gpt") == 1);
      const auto seen = mock.requests();
      REQUIRE(seen.size() == 2);
      CHECK(seen[1].model == "backup");
      const error_kind want = status == 401   ? error_kind::unauthorized
                              : status == 403 ? error_kind::forbidden
                                              : error_kind::not_found;
      CHECK(r.trace().attempts()[0].error().kind == want);
    }
  }
}

TEST_CASE("context_length_exceeded goes to the context-window fallback, skipping others") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(400, "context_length_exceeded", "too long",
                                          "invalid_request_error")});
    mock.script("backup", {mock_reply::answer("never")});
    mock.script("gpt-long", {mock_reply::answer("summary")});
    setup s;
    s.adapter = c;
    s.models = {{"gpt", mock.base_url()},
                {"backup", mock.base_url()},
                {"gpt-long", mock.base_url(), role::context_window}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE(r);
    CHECK(r.served_by() == "gpt-long");
    CHECK(mock.count("gpt") == 1);
    CHECK(mock.count("backup") == 0);
    CHECK(mock.count("gpt-long") == 1);
  }
}

TEST_CASE("context_length_exceeded without a context-window fallback fails after one request") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(400, "context_length_exceeded", "too long",
                                          "invalid_request_error")});
    setup s;
    s.adapter = c;
    s.models = {{"gpt", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == error_kind::context_window);
    CHECK(mock.count("gpt") == 1);
  }
}

TEST_CASE("content_policy_violation is rerouted only to an opted-in policy fallback") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(400, "content_policy_violation", "refused",
                                          "invalid_request_error")});
    mock.script("backup", {mock_reply::answer("never")});
    mock.script("reviewed", {mock_reply::answer("careful answer")});
    setup s;
    s.adapter = c;
    s.models = {{"gpt", mock.base_url()}, {"backup", mock.base_url()}};
    {
      const result_type r = make_chain(s)->run("q");
      REQUIRE_FALSE(r);
      CHECK(r.error().kind == error_kind::content_policy);
      CHECK(mock.count("gpt") == 1);
      CHECK(mock.count("backup") == 0);
    }
    s.models.push_back({"reviewed", mock.base_url(), role::content_policy});
    const result_type r = make_chain(s)->run("q");
    REQUIRE(r);
    CHECK(r.served_by() == "reviewed");
    CHECK(r.trace().policy_rerouted());
    CHECK(mock.count("gpt") == 2);
    CHECK(mock.count("backup") == 0);
  }
}

TEST_CASE("a 200 refusal (finish_reason content_filter) is a content-policy failure") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    mock.script("gpt", {mock_reply::refusal()});
    mock.script("backup", {mock_reply::answer("never")});
    mock.script("reviewed", {mock_reply::answer("careful answer")});
    setup s;
    s.adapter = c;
    s.models = {{"gpt", mock.base_url()}, {"backup", mock.base_url()}};
    {
      const result_type r = make_chain(s)->run("q");
      REQUIRE_FALSE(r);
      CHECK(r.error().kind == error_kind::content_policy);
      CHECK(r.error().status == 200);
      CHECK(mock.count("gpt") == 1);
      CHECK(mock.count("backup") == 0);
    }
    s.models.push_back({"reviewed", mock.base_url(), role::content_policy});
    const result_type r = make_chain(s)->run("q");
    REQUIRE(r);
    CHECK(r.served_by() == "reviewed");
    CHECK(r.trace().policy_rerouted());
  }
}

TEST_CASE("the hop limit bounds the models tried") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    for (const char* m : {"a", "b", "c"}) mock.script(m, {mock_reply::error(503)});
    setup s;
    s.adapter = c;
    s.retry.max_attempts = 1;
    s.bounds.max_hops = 2;
    s.models = {{"a", mock.base_url()}, {"b", mock.base_url()}, {"c", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE_FALSE(r);
    CHECK(r.stop() == stop_reason::hop_limit);
    const auto seen = mock.requests();
    REQUIRE(seen.size() == 2);
    CHECK(seen[0].model == "a");
    CHECK(seen[1].model == "b");
  }
}

TEST_CASE("the chain deadline: no request after it, and a slow attempt is cut to fit") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    mock.script("gpt", {mock_reply::error(503)});
    setup s;
    s.adapter = c;
    s.retry.max_attempts = 1000;
    s.bounds.max_total_attempts = 1000;
    s.backoff = {30ms, 1.0, 30ms, failover::jitter::none};
    // Long enough that the first attempt ends well inside it on a loaded machine, so that the
    // error keeps that attempt's status.
    s.bounds.deadline = 1500ms;
    s.models = {{"gpt", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == error_kind::deadline_exceeded);
    // The last attempt's facts are kept: its 503, or nothing when the deadline cut that attempt
    // short (on a loaded machine the last one may start with milliseconds left).
    const auto& last = r.trace().attempts().back().error();
    CHECK(r.error().status == last.status);
    CHECK(r.error().code == last.code);
    CHECK((last.status == std::optional<int>(503) || last.kind == error_kind::read_timeout ||
           last.kind == error_kind::connect_timeout || last.kind == error_kind::connection_error));
    const auto seen = mock.requests();
    REQUIRE(seen.size() >= 2);
    // No attempt starts after the deadline by the library's clock; the server saw none long after.
    for (const auto& a : r.trace().attempts()) CHECK(a.start < 1500ms);
    for (const auto& q : seen) CHECK(gap_ms(seen[0], q) < 1500 + 1000);
    CHECK(seen.size() <= 51);  // 30 ms apart within 1.5 s, not the 1000 attempts allowed

    // A read timeout longer than the deadline is shrunk to the time left (no status to keep here:
    // a short deadline is fine).
    s.bounds.deadline = 300ms;
    mock_provider slow;
    slow.script("gpt", {mock_reply::answer("late").after(4000ms)});
    s.models = {{"gpt", slow.base_url()}};
    s.limits.read = 10s;
    const result_type late = make_chain(s)->run("q");
    REQUIRE_FALSE(late);
    CHECK(late.error().kind == error_kind::deadline_exceeded);
    CHECK(late.trace().attempts()[0].error().kind == error_kind::read_timeout);
    CHECK(late.trace().elapsed() < 3000ms);  // it did not wait for the 4 s answer
    CHECK(slow.count("gpt") == 1);
  }
}

TEST_CASE("a Retry-After longer than max_server_wait falls back at once") {
  for (client c : clients()) {
    INFO(name_of(c));
    mock_provider mock;
    mock.script("gpt",
                {mock_reply::error(429, "rate_limit_exceeded").with_header("Retry-After", "120")});
    mock.script("backup", {mock_reply::answer("from backup")});
    setup s;
    s.adapter = c;
    s.retry.max_server_wait = 1s;
    s.models = {{"gpt", mock.base_url()}, {"backup", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE(r);
    CHECK(r.served_by() == "backup");
    CHECK(r.trace().attempts()[0].stop == stop_reason::server_wait_too_long);
    const auto seen = mock.requests();
    REQUIRE(seen.size() == 2);
    CHECK(seen[0].model == "gpt");
    CHECK(seen[1].model == "backup");
    CHECK(gap_ms(seen[0], seen[1]) < 1000);  // it did not wait the 120 s, nor even the 1 s cap
  }
}

TEST_CASE("keys reach the server but never the error or the trace") {
  for (client c : clients()) {
    INFO(name_of(c));
    const std::string key = "sk-integration-0123456789abcdef";
    mock_provider mock;
    mock.script("gpt",
                {mock_reply::error(401, "invalid_api_key", "Incorrect API key provided: " + key)});
    setup s;
    s.adapter = c;
    s.key = key;
    s.models = {{"gpt", mock.base_url()}};
    const result_type r = make_chain(s)->run("q");
    REQUIRE_FALSE(r);
    CHECK(mock.requests("gpt").at(0).authorization == "Bearer " + key);
    CHECK(r.error().message.find(key) == std::string::npos);
    CHECK(fmt::format("{}", r.trace()).find(key) == std::string::npos);
    CHECK(fmt::format("{}", r.error()).find(key) == std::string::npos);

    refused_port down;
    const auto ctx = first_attempt("gpt");
    auto once = caller(c, down.base_url(), "gpt", s.limits, key)(ctx, "q");
    REQUIRE_FALSE(once);
    CHECK(once.failure().message.find(key) == std::string::npos);
  }
}

#if defined(FAILOVER_TEST_CURL)
// curl checks the token while it waits; httplib only between body chunks (see docs/adapters.md).
TEST_CASE("curl: cancellation during a slow answer ends the call as cancelled") {
  mock_provider mock;
  mock.script("gpt", {mock_reply::answer("late").after(3000ms)});
  setup s;
  s.adapter = client::curl;
  s.limits.read = 10s;
  s.models = {{"gpt", mock.base_url()}};
  failover::cancel_source source;
  failover::call_options call;
  call.token = source.token();
  std::thread canceller([&] {
    std::this_thread::sleep_for(100ms);
    source.cancel();
  });
  const result_type r = make_chain(s)->run_with(call, "q");
  canceller.join();
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == error_kind::cancelled);
  CHECK(r.trace().attempts()[0].error().kind == error_kind::cancelled);
  CHECK(mock.count("gpt") == 1);
}
#endif
