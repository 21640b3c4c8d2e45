// The adapters' pure parts, without sockets: provider bodies to failures, transport errors to
// kinds, timeouts cut to the deadline, base URLs.
#include <failover/adapters/http.hpp>
#include <failover/adapters/httplib.hpp>
#include <failover/adapters/openai.hpp>
#include <failover/core/classifier.hpp>
#if defined(FAILOVER_TEST_CURL)
#include <failover/adapters/curl.hpp>
#endif

#include <cerrno>
#include <chrono>
#include <string>
#include <tuple>

#include "catch.hpp"

using namespace std::chrono_literals;
using failover::error_kind;
using failover::transport_error;
using failover::http::response;

namespace {

response reply(int status, std::string body) {
  response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

error_kind kind_of(const failover::failure& f) {
  return failover::classifier{}.classify(f, std::chrono::system_clock::now()).kind;
}

}  // namespace

TEST_CASE("OpenAI-compatible error bodies give the code, else the type") {
  auto e = failover::openai::parse_error_body(
      R"({"error":{"message":"too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}})");
  REQUIRE(e);
  CHECK(e->code == "context_length_exceeded");
  CHECK(e->type == "invalid_request_error");
  CHECK(e->message == "too long");

  e = failover::openai::parse_error_body(
      R"({"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}})");
  REQUIRE(e);
  CHECK(e->code == "invalid_request_error");

  // A numeric code (some gateways) is not a provider code.
  e = failover::openai::parse_error_body(
      R"({"error":{"message":"x","type":"server_error","code":500}})");
  REQUIRE(e);
  CHECK(e->code == "server_error");
}

TEST_CASE("Azure content_filter and OpenAI content_policy_violation are content-policy failures") {
  auto f = failover::openai::error_failure(reply(
      400,
      R"({"error":{"code":"content_filter","message":"filtered","innererror":{"code":"ResponsibleAIPolicyViolation"}}})"));
  CHECK(f.status == 400);
  CHECK(f.code == "content_filter");
  CHECK(kind_of(f) == error_kind::content_policy);

  f = failover::openai::error_failure(reply(
      400,
      R"({"error":{"message":"no","type":"invalid_request_error","code":"content_policy_violation"}})"));
  CHECK(kind_of(f) == error_kind::content_policy);
}

TEST_CASE("Anthropic error bodies give error.type") {
  for (auto [status, type, kind] :
       {std::tuple{529, "overloaded_error", error_kind::overloaded},
        std::tuple{429, "rate_limit_error", error_kind::rate_limited},
        std::tuple{401, "authentication_error", error_kind::unauthorized},
        std::tuple{500, "api_error", error_kind::server_error}}) {
    INFO(type);
    const auto f = failover::openai::error_failure(
        reply(status,
              std::string(R"({"type":"error","error":{"type":")") + type + R"(","message":"m"}})"));
    CHECK(f.code == type);
    CHECK(f.message == "m");
    CHECK(kind_of(f) == kind);
  }
}

TEST_CASE("an error body that is not JSON leaves the status to decide") {
  const auto f = failover::openai::error_failure(reply(502, "<html>Bad Gateway</html>"));
  CHECK(f.status == 502);
  CHECK(f.code.empty());
  CHECK(kind_of(f) == error_kind::server_error);
}

TEST_CASE("retry headers of an error response are kept, other headers are not") {
  response r = reply(429, R"({"error":{"code":"rate_limit_exceeded","message":"slow"}})");
  r.headers = {{"Retry-After", "3"},
               {"retry-after-ms", "2500"},
               {"X-Should-Retry", "true"},
               {"Set-Cookie", "session=secret"}};
  const auto f = failover::openai::error_failure(r);
  CHECK(f.retry_after == "3");
  CHECK(f.retry_after_ms == "2500");
  CHECK(f.should_retry == "true");
  CHECK(f.message.find("secret") == std::string::npos);
}

TEST_CASE("a wait header sent twice: the response and the classifier take the longest wait") {
  response r = reply(429, "{}");
  r.headers = {{"Retry-After", "1"}, {"Content-Type", "text/plain"}, {"retry-after", "30"}};
  const auto now = std::chrono::system_clock::now();
  CHECK(r.header("Retry-After") == "1");  // the first, as documented
  REQUIRE(r.values("retry-after").size() == 2);
  CHECK(r.values("RETRY-AFTER")[1] == "30");
  CHECK(r.server_wait(now) == failover::duration(30s));
  const auto e = failover::classifier{}.classify(failover::http::status_failure(r), now);
  CHECK(e.retry_after == failover::duration(30s));
  CHECK(failover::classifier{}.classify(failover::openai::error_failure(r), now).retry_after ==
        failover::duration(30s));

  r.headers.emplace_back("retry-after-ms", "soon");
  r.headers.emplace_back("Retry-After-Ms", "1500");
  CHECK(r.server_wait(now) == failover::duration(1500ms));
}

TEST_CASE("read_chat: an answer, a refusal, and bodies that cannot be used") {
  auto ok = failover::openai::read_chat(reply(
      200,
      R"({"id":"c1","model":"gpt","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]})"));
  REQUIRE(ok);
  CHECK(ok.value().content == "hi");
  CHECK(ok.value().model == "gpt");
  CHECK(ok.value().finish_reason == "stop");

  auto refused = failover::openai::read_chat(reply(
      200,
      R"({"choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"content_filter"}]})"));
  REQUIRE_FALSE(refused);
  CHECK(refused.failure().status == 200);
  CHECK(kind_of(refused.failure()) == error_kind::content_policy);

  for (const char* body :
       {"<html>oops</html>", "", "[1,2]", R"({"choices":[]})",
        R"({"choices":[{"message":{"content":null},"finish_reason":"tool_calls"}]})"}) {
    INFO(body);
    auto bad = failover::openai::read_chat(reply(200, body));
    REQUIRE_FALSE(bad);
    CHECK(bad.failure().kind == error_kind::invalid_response);
    CHECK(kind_of(bad.failure()) == error_kind::invalid_response);
  }

  auto err = failover::openai::read_chat(reply(404, R"({"error":{"code":"model_not_found"}})"));
  REQUIRE_FALSE(err);
  CHECK(kind_of(err.failure()) == error_kind::not_found);
}

TEST_CASE("chat_request escapes the prompt and survives invalid UTF-8") {
  const std::string body = failover::openai::chat_request("gpt", "say \"hi\"\n\xff");
  const auto j = nlohmann::json::parse(body);
  CHECK(j["model"] == "gpt");
  CHECK(j["messages"][0]["role"] == "user");
  CHECK(j["messages"][0]["content"].get<std::string>().rfind("say \"hi\"\n", 0) == 0);
}

TEST_CASE("attempt timeouts never run past the call's deadline") {
  failover::attempt_context ctx;
  const failover::http::timeouts wanted{2s, 30s};
  auto t = failover::http::attempt_timeouts(ctx, wanted);
  CHECK(t.connect == 2s);
  CHECK(t.read == 30s);
  CHECK(failover::http::attempt_budget(ctx, wanted) == 32s);

  ctx.remaining = 500ms;
  t = failover::http::attempt_timeouts(ctx, wanted);
  CHECK(t.connect == 500ms);
  CHECK(t.read == 500ms);
  CHECK(failover::http::attempt_budget(ctx, wanted) == 500ms);

  ctx.remaining = 0ms;  // never zero: clients read it as "no timeout"
  CHECK(failover::http::attempt_timeouts(ctx, wanted).read == 1ms);

  REQUIRE_THROWS_AS(failover::http::attempt_timeouts(ctx, {0s, 1s}), std::invalid_argument);
}

TEST_CASE("response limits: defaults, and bad ones refused by name") {
  const failover::http::limits l;
  CHECK(l.max_body == 16u << 20);
  CHECK(l.max_headers == 64u << 10);
  auto refusal = [](const failover::http::limits& given) -> std::string {
    try {
      given.validate();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  failover::http::limits bad;
  bad.max_body = 0;
  CHECK(refusal(bad).find("max_body") != std::string::npos);
  bad = {};
  bad.max_headers = 0;
  CHECK(refusal(bad).find("max_headers") != std::string::npos);
  CHECK_THROWS_AS(failover::http::httplib_endpoint("http://127.0.0.1:1", {}, bad),
                  std::invalid_argument);
#if defined(FAILOVER_TEST_CURL)
  CHECK_THROWS_AS(failover::http::curl_endpoint("http://127.0.0.1:1", {}, bad),
                  std::invalid_argument);
#endif
}

TEST_CASE("base URLs: parts, defaults, and what is refused") {
  auto u = failover::http::base_url::parse("https://api.example.com/v1/");
  CHECK(u.scheme == "https");
  CHECK(u.host == "api.example.com");
  CHECK(u.port == 443);
  CHECK(u.path == "/v1");
  CHECK(u.url("/chat/completions") == "https://api.example.com:443/v1/chat/completions");

  u = failover::http::base_url::parse("HTTP://127.0.0.1:8080");
  CHECK(u.scheme == "http");
  CHECK(u.port == 8080);
  CHECK(u.path.empty());

  u = failover::http::base_url::parse("http://[::1]:9000/v1");
  CHECK(u.host == "::1");
  CHECK(u.origin() == "http://[::1]:9000");

  for (const char* bad :
       {"api.example.com", "ftp://x", "http://", "http://h:0", "http://h:99999", "http://h:x",
        "http://user:pw@h/v1", "http://h/v1?key=1", "http://[::1"}) {
    INFO(bad);
    REQUIRE_THROWS_AS(failover::http::base_url::parse(bad), std::invalid_argument);
  }
  // The message says what is wrong without quoting the text: a mistyped URL may hold a secret.
  for (const char* secret :
       {"https:/user:SECRETKEY123@api.example.com/v1", "https://api.example.com:SECRETKEY123/v1",
        "htps://host/v1/SECRETKEY123", "http://h/v1?key=SECRETKEY123",
        "http://user:SECRETKEY123@h/v1"}) {
    INFO(secret);
    try {
      (void)failover::http::base_url::parse(secret);
      FAIL("accepted");
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("SECRETKEY123") == std::string::npos);
      CHECK(std::string(e.what()).rfind("failover::http::base_url: ", 0) == 0);
    }
  }
}

TEST_CASE("httplib errors map to transport errors, telling alike-reported ones apart") {
  failover::http::httplib_exchange x;
  x.host = "127.0.0.1";
  x.connect_timeout = 50ms;
  x.read_timeout = 100ms;

  x.error = httplib::Error::Connection;
  CHECK(failover::http::httplib_failure(x).transport == transport_error::connection_refused);
  x.error = httplib::Error::ConnectionTimeout;
  CHECK(failover::http::httplib_failure(x).transport == transport_error::connect_timeout);

  // httplib says Read for both a stall and a dropped connection: the idle time tells them apart.
  x.error = httplib::Error::Read;
  x.idle = 100ms;
  CHECK(failover::http::httplib_failure(x).transport == transport_error::read_timeout);
  x.idle = 3ms;
  CHECK(failover::http::httplib_failure(x).transport == transport_error::connection_reset);

  x.error = httplib::Error::Canceled;
  x.cancelled = true;
  CHECK(failover::http::httplib_failure(x).kind == error_kind::cancelled);
  x.cancelled = false;
  x.over_budget = true;
  CHECK(failover::http::httplib_failure(x).transport == transport_error::read_timeout);
  // The adapter's own findings come first, whatever httplib reported with them.
  x.error = httplib::Error::Connection;
  x.unconnected = true;
  CHECK(failover::http::httplib_failure(x).transport == transport_error::connect_timeout);
  x.over_budget = false;
  x.unconnected = false;
  x.error = httplib::Error::Read;
  x.not_http = true;
  CHECK(failover::http::httplib_failure(x).kind == error_kind::invalid_response);
  x.not_http = false;

  x.error = httplib::Error::BindIPAddress;
  CHECK(kind_of(failover::http::httplib_failure(x)) == error_kind::unknown);
  x.error = httplib::Error::SSLServerVerification;
  CHECK(kind_of(failover::http::httplib_failure(x)) == error_kind::unknown);
  CHECK_FALSE(failover::classifier{}
                  .classify(failover::http::httplib_failure(x), std::chrono::system_clock::now())
                  .transient);
}

#if defined(FAILOVER_TEST_CURL)
TEST_CASE("curl codes map to transport errors") {
  failover::http::curl_exchange x;
  auto map = [&](CURLcode code) {
    x.code = code;
    return failover::http::curl_failure(x);
  };
  CHECK(map(CURLE_COULDNT_RESOLVE_HOST).transport == transport_error::dns_failure);
  x.os_errno = ECONNREFUSED;
  CHECK(map(CURLE_COULDNT_CONNECT).transport == transport_error::connection_refused);
  x.os_errno = ENETUNREACH;
  CHECK(map(CURLE_COULDNT_CONNECT).transport == transport_error::other);
  x.request_sent = false;
  CHECK(map(CURLE_OPERATION_TIMEDOUT).transport == transport_error::connect_timeout);
  x.request_sent = true;
  CHECK(map(CURLE_OPERATION_TIMEDOUT).transport == transport_error::read_timeout);
  CHECK(map(CURLE_PARTIAL_FILE).transport == transport_error::connection_reset);
  CHECK(map(CURLE_RECV_ERROR).transport == transport_error::connection_reset);
  CHECK(map(CURLE_GOT_NOTHING).transport == transport_error::connection_reset);
  x.cancelled = true;
  CHECK(map(CURLE_ABORTED_BY_CALLBACK).kind == error_kind::cancelled);
  CHECK(map(CURLE_WEIRD_SERVER_REPLY).kind == error_kind::invalid_response);
  CHECK(kind_of(map(CURLE_PEER_FAILED_VERIFICATION)) == error_kind::unknown);
  // Local setup problems are permanent, not connection errors.
  for (CURLcode local :
       {CURLE_FAILED_INIT, CURLE_NOT_BUILT_IN, CURLE_UNKNOWN_OPTION, CURLE_BAD_FUNCTION_ARGUMENT,
        CURLE_INTERFACE_FAILED, CURLE_SSL_ENGINE_NOTFOUND, CURLE_OUT_OF_MEMORY}) {
    INFO(curl_easy_strerror(local));
    const auto f = map(local);
    CHECK(f.transport == transport_error::none);
    CHECK(kind_of(f) == error_kind::unknown);
    CHECK_FALSE(failover::classifier{}.classify(f, std::chrono::system_clock::now()).transient);
  }
  // HTTP/0.9 refused: a reply without a status line once the request went out, else the scheme.
  x.request_sent = true;
  CHECK(map(CURLE_UNSUPPORTED_PROTOCOL).kind == error_kind::invalid_response);
  x.request_sent = false;
  CHECK(map(CURLE_UNSUPPORTED_PROTOCOL).kind == error_kind::unknown);
}
#endif
