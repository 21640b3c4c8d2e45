// What a misbehaving server does to one attempt, through each adapter: a reply with no status
// line, bytes dripped one at a time in every phase, responses without end, headers sent twice;
// and one curl_endpoint shared by many threads.
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "raw_server.hpp"
#include "support.hpp"

using namespace itest;
using failover::error_kind;
using failover::transport_error;
using failover::http::limits;
using failover::http::response;
using failover::http::timeouts;
using failover::testing::mock_provider;
using failover::testing::unanswered_port;
using steady = std::chrono::steady_clock;

namespace {

// One POST through the chosen adapter's endpoint, straight to its outcome.
failover::outcome<response> send_once(client c, const std::string& base_url,
                                      const failover::attempt_context& ctx,
                                      timeouts wanted = {500ms, 3000ms}, limits bounds = {}) {
  if (c == client::httplib) {
    failover::http::httplib_endpoint e(base_url, wanted, bounds);
    return e.post(ctx, "/chat/completions", "{}");
  }
#if defined(FAILOVER_TEST_CURL)
  failover::http::curl_endpoint e(base_url, wanted, bounds);
  return e.post(ctx, "/chat/completions", "{}");
#else
  throw std::logic_error("curl adapter not built");
#endif
}

failover::error classify(const failover::failure& f) {
  return failover::classifier{}.classify(f, std::chrono::system_clock::now());
}

long long ms_since(steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t).count();
}

const std::string ok_head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";

// A script for each phase a server can drip in, a byte every 20 ms, for far longer than any
// test waits (the client's giving up ends it).
struct drip_phase {
  const char* name;
  raw_server::script script;
};

std::vector<drip_phase> drip_phases() {
  constexpr auto gap = 20ms;
  const std::string forever(5000, 'a');
  return {
      {"status line", [=](raw_connection& c) { c.drip("HTTP/1.1 200 " + forever, gap); }},
      {"headers",
       [=](raw_connection& c) {
         if (c.send(ok_head)) c.drip("X-Slow: " + forever, gap);
       }},
      {"chunked body",
       [=](raw_connection& c) {
         if (!c.send(ok_head + "Transfer-Encoding: chunked\r\n\r\n")) return;
         for (int i = 0; i < 5000 && c.drip("1\r\na\r\n", gap);) ++i;
       }},
      {"HTTP/1.0 body without a length",
       [=](raw_connection& c) {
         if (c.send("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"))
           c.drip(forever, gap);
       }},
      {"event stream",
       [=](raw_connection& c) {
         if (!c.send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n"))
           return;
         for (int i = 0; i < 5000 && c.drip("e\r\ndata: {\"x\":1}\n\n\r\n", gap);) ++i;
       }},
  };
}

}  // namespace

TEST_CASE("a reply with no status line is an invalid response through both adapters") {
  for (const char* reply : {"garbage\r\n\r\n", "SSH-2.0-OpenSSH_9.2\r\n", "\x16\x03\x01\x02"}) {
    raw_server server([reply](raw_connection& c) { c.send(reply); });
    for (client c : clients()) {
      INFO(name_of(c) << " reply " << reply);
      const failover::attempt_context ctx;
      const auto sent = send_once(c, server.base_url(), ctx);
      REQUIRE_FALSE(sent);
      CHECK(sent.failure().kind == error_kind::invalid_response);
      CHECK(classify(sent.failure()).kind == error_kind::invalid_response);
      CHECK(classify(sent.failure()).transient);
    }
  }
  // A server that closes without a byte is still a dropped connection, alike in both.
  raw_server silent([](raw_connection&) {});
  for (client c : clients()) {
    INFO(name_of(c));
    const failover::attempt_context ctx;
    const auto sent = send_once(c, silent.base_url(), ctx);
    REQUIRE_FALSE(sent);
    CHECK(sent.failure().transport == transport_error::connection_reset);
  }
}

TEST_CASE("a server dripping bytes cannot keep an attempt past the call's deadline") {
  for (const auto& phase : drip_phases()) {
    raw_server server(phase.script);
    for (client c : clients()) {
      INFO(name_of(c) << ": drip in the " << phase.name);
      failover::attempt_context ctx;
      ctx.remaining = 300ms;
      const auto start = steady::now();
      // Each byte comes well within the read timeout; only the deadline can end this.
      const auto sent = send_once(c, server.base_url(), ctx, {500ms, 10s});
      const long long took = ms_since(start);
      REQUIRE_FALSE(sent);
      CHECK(sent.failure().transport == transport_error::read_timeout);
      CHECK(took >= 300 - lag_ms);
      CHECK(took < 300 + 1000);
    }
  }
}

TEST_CASE("a server dripping bytes cannot keep an attempt past its own budget") {
  raw_server server(drip_phases()[1].script);  // headers
  for (client c : clients()) {
    INFO(name_of(c));
    const failover::attempt_context ctx;  // no deadline: connect + read is the budget
    const auto start = steady::now();
    const auto sent = send_once(c, server.base_url(), ctx, {100ms, 200ms});
    const long long took = ms_since(start);
    REQUIRE_FALSE(sent);
    CHECK(sent.failure().transport == transport_error::read_timeout);
    CHECK(took < 300 + 1000);
  }
}

TEST_CASE("cancellation ends an attempt in every phase, a drip included") {
  auto phases = drip_phases();
  for (const auto& phase : phases) {
    raw_server server(phase.script);
    for (client c : clients()) {
      INFO(name_of(c) << ": cancelled in the " << phase.name);
      failover::cancel_source source;
      const failover::cancel_token token = source.token();
      failover::attempt_context ctx;
      ctx.cancel = &token;
      std::thread canceller([&] {
        std::this_thread::sleep_for(100ms);
        source.cancel();
      });
      const auto start = steady::now();
      const auto sent = send_once(c, server.base_url(), ctx, {2s, 20s});
      const long long took = ms_since(start);
      canceller.join();
      REQUIRE_FALSE(sent);
      CHECK(sent.failure().kind == error_kind::cancelled);
      // libcurl asks its progress callback about once a second while data trickles.
      CHECK(took < 100 + 1500);
    }
  }
}

TEST_CASE("cancellation ends an attempt while it is still connecting") {
  unanswered_port silent;
  for (client c : clients()) {
    INFO(name_of(c));
    failover::cancel_source source;
    const failover::cancel_token token = source.token();
    failover::attempt_context ctx;
    ctx.cancel = &token;
    std::thread canceller([&] {
      std::this_thread::sleep_for(100ms);
      source.cancel();
    });
    const auto start = steady::now();
    const auto sent = send_once(c, silent.base_url(), ctx, {10s, 10s});
    const long long took = ms_since(start);
    canceller.join();
    REQUIRE_FALSE(sent);
    CHECK(sent.failure().kind == error_kind::cancelled);
    CHECK(took < 100 + 1500);
  }
}

TEST_CASE("an endless body stops at limits::max_body as an invalid response") {
  const std::string block(64 << 10, 'x');
  std::vector<std::pair<const char*, raw_server::script>> servers = {
      {"no length",
       [&](raw_connection& c) {
         if (c.send("HTTP/1.0 200 OK\r\n\r\n")) c.repeat(block);
       }},
      {"chunked",
       [&](raw_connection& c) {
         if (c.send(ok_head + "Transfer-Encoding: chunked\r\n\r\n"))
           c.repeat("10000\r\n" + block + "\r\n");
       }},
      {"a length of 4 GiB",
       [&](raw_connection& c) {
         if (c.send(ok_head + "Content-Length: 4294967296\r\n\r\n")) c.repeat(block);
       }},
  };
  for (auto& [name, script] : servers) {
    raw_server server(script);
    for (client c : clients()) {
      INFO(name_of(c) << ": " << name);
      const failover::attempt_context ctx;
      const auto sent = send_once(c, server.base_url(), ctx, {500ms, 20s});
      REQUIRE_FALSE(sent);
      CHECK(sent.failure().kind == error_kind::invalid_response);
      CHECK(sent.failure().message ==
            "response body exceeds the 16 MiB limit (http::limits::max_body)");
    }
  }
}

TEST_CASE("a body of exactly limits::max_body is read, one byte more is not") {
  const std::string body(1000, 'b');
  raw_server exact(
      [&](raw_connection& c) { c.send(ok_head + "Content-Length: 1000\r\n\r\n" + body); });
  raw_server over([&](raw_connection& c) {
    c.send(ok_head + "Transfer-Encoding: chunked\r\n\r\n3e9\r\n" + body + "b\r\n0\r\n\r\n");
  });
  limits small;
  small.max_body = 1000;
  for (client c : clients()) {
    INFO(name_of(c));
    const failover::attempt_context ctx;
    const auto fits = send_once(c, exact.base_url(), ctx, {500ms, 3s}, small);
    REQUIRE(fits);
    CHECK(fits.value().body == body);
    const auto too_big = send_once(c, over.base_url(), ctx, {500ms, 3s}, small);
    REQUIRE_FALSE(too_big);
    CHECK(too_big.failure().message ==
          "response body exceeds the 1000 bytes limit (http::limits::max_body)");
  }
}

TEST_CASE("headers without end stop at limits::max_headers as an invalid response") {
  const std::string block(16 << 10, 'h');
  std::vector<std::pair<const char*, raw_server::script>> servers = {
      {"one endless line",
       [&](raw_connection& c) {
         if (c.send(ok_head + "X-Big: ")) c.repeat(block);
       }},
      {"endless header lines",
       [&](raw_connection& c) {
         if (c.send(ok_head)) c.repeat("X-Many: " + std::string(100, 'm') + "\r\n");
       }},
      {"just over, then the body",
       [&](raw_connection& c) {
         std::string head = ok_head;
         for (int i = 0; i < 700; ++i) head += "X-Many: " + std::string(100, 'm') + "\r\n";
         c.send(head + "Content-Length: 2\r\n\r\n{}");
       }},
  };
  for (auto& [name, script] : servers) {
    raw_server server(script);
    for (client c : clients()) {
      INFO(name_of(c) << ": " << name);
      const failover::attempt_context ctx;
      const auto sent = send_once(c, server.base_url(), ctx, {500ms, 20s});
      REQUIRE_FALSE(sent);
      CHECK(sent.failure().kind == error_kind::invalid_response);
      CHECK(sent.failure().message ==
            "response headers exceed the 64 KiB limit (http::limits::max_headers)");
    }
  }
}

TEST_CASE("a header line longer than the client takes is an invalid response") {
  // cpp-httplib refuses a line over 8 KiB, libcurl one over 100 KiB: each names its own limit
  // when it is the smaller one.
  const std::string line = "X-Big: " + std::string(200 << 10, 'h') + "\r\n";
  raw_server server(
      [&](raw_connection& c) { c.send(ok_head + line + "Content-Length: 2\r\n\r\n{}"); });
  limits roomy;
  roomy.max_headers = 1 << 20;
  for (client c : clients()) {
    INFO(name_of(c));
    const failover::attempt_context ctx;
    const auto sent = send_once(c, server.base_url(), ctx, {500ms, 5s}, roomy);
    REQUIRE_FALSE(sent);
    CHECK(sent.failure().kind == error_kind::invalid_response);
    CHECK(sent.failure().message.find(c == client::httplib ? "exceeds cpp-httplib's 8 KiB limit"
                                                           : "exceeds libcurl's 100 KiB limit") !=
          std::string::npos);
  }
}

TEST_CASE("Retry-After sent twice: both adapters keep both, and the longest wait counts") {
  raw_server server([](raw_connection& c) {
    c.send(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Type: application/json\r\n"
        "retry-after: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
  });
  for (client c : clients()) {
    INFO(name_of(c));
    const failover::attempt_context ctx;
    const auto sent = send_once(c, server.base_url(), ctx);
    REQUIRE(sent);
    const response& r = sent.value();
    CHECK(r.status == 429);
    CHECK(r.values("Retry-After").size() == 2);
    CHECK(r.server_wait(std::chrono::system_clock::now()) == failover::duration(7s));
    CHECK(classify(failover::http::status_failure(r)).retry_after == failover::duration(7s));
    const auto chat = failover::openai::read_chat(r);
    REQUIRE_FALSE(chat);
    CHECK(classify(chat.failure()).retry_after == failover::duration(7s));
  }
}

#if defined(FAILOVER_TEST_CURL)
// Run under the tsan preset too: one endpoint, eight threads, no handle ever shared.
TEST_CASE("one curl_endpoint serves eight threads at once, reusing its handles") {
  curl_global_init(CURL_GLOBAL_DEFAULT);  // once, before any thread, as libcurl asks
  mock_provider mock;
  mock.script("gpt", {mock_reply::answer("hi")});
  // A generous connect timeout: the mock's accept queue is short, and a connection it drops
  // is tried again by the kernel a second later.
  failover::http::curl_endpoint endpoint(mock.base_url(), {5s, 10s});
  constexpr int threads = 8;
  constexpr int calls = 25;
  std::atomic<int> answered{0};
  std::atomic<int> failed{0};
  std::mutex mutex;
  std::string first_failure;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < calls; ++i) {
        const failover::attempt_context ctx;
        auto sent =
            endpoint.post(ctx, "/chat/completions", failover::openai::chat_request("gpt", "q"));
        auto chat = sent ? failover::openai::read_chat(sent.value())
                         : failover::outcome<completion>(std::move(sent).failure());
        if (chat && chat.value().content == "hi") {
          ++answered;
        } else {
          ++failed;
          std::lock_guard<std::mutex> lock(mutex);
          if (first_failure.empty())
            first_failure = chat ? "content " + chat.value().content : chat.failure().message;
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  CHECK(first_failure == "");
  CHECK(failed.load() == 0);
  CHECK(answered.load() == threads * calls);
  CHECK(mock.count("gpt") == static_cast<std::size_t>(threads * calls));
  CHECK(endpoint.handles() >= 1);
  CHECK(endpoint.handles() <= static_cast<std::size_t>(threads));
}
#endif

TEST_CASE("a request header holding a line break is not sent, and its value is not quoted") {
  raw_server server([](raw_connection& c) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
  });
  const std::string key = "sk-line-break-key-0123456789\r\nX-Injected: yes";
  for (client c : clients()) {
    INFO(name_of(c));
    const failover::attempt_context ctx;
    failover::outcome<response> sent = failover::failure{};
    if (c == client::httplib) {
      failover::http::httplib_endpoint e(server.base_url());
      sent = e.post(ctx, "/chat/completions", "{}", {{"Authorization", "Bearer " + key}});
    } else {
#if defined(FAILOVER_TEST_CURL)
      failover::http::curl_endpoint e(server.base_url());
      sent = e.post(ctx, "/chat/completions", "{}", {"Authorization: Bearer " + key});
#endif
    }
    REQUIRE_FALSE(sent);
    const failover::error e = classify(sent.failure());
    CHECK(e.kind == error_kind::unknown);
    CHECK_FALSE(e.transient);
    CHECK(e.message.find("Authorization") != std::string::npos);
    CHECK(e.message.find("line-break-key") == std::string::npos);
  }
  CHECK(server.connections() == 0);  // nothing went out
}

TEST_CASE("timeouts of duration::max() wait as long as a client can, not at all") {
  raw_server server([](raw_connection& c) {
    std::this_thread::sleep_for(50ms);
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
  });
  const timeouts forever{failover::duration::max(), failover::duration::max()};
  REQUIRE_NOTHROW(forever.validate());
  for (client c : clients()) {
    INFO(name_of(c));
    const failover::attempt_context ctx;
    const auto sent = send_once(c, server.base_url(), ctx, forever);
    REQUIRE(sent);
    CHECK(sent.value().status == 200);
    // The whole-attempt budget is connect + read, a sum that saturates.
    CHECK(failover::http::attempt_budget(ctx, forever) == failover::http::max_client_timeout);
  }
}

TEST_CASE("an endless chunk-size line stops at the body's bound, not at the deadline") {
  // After the headers, digits without a line end: cpp-httplib keeps the line in a buffer of its
  // own that the content receiver never sees. (A short deadline keeps a client that does not
  // bound it from taking much memory before it ends.)
  raw_server server([](raw_connection& c) {
    if (c.send(ok_head + "Transfer-Encoding: chunked\r\n\r\n"))
      c.repeat(std::string(64 << 10, '1'));
  });
  limits small;
  small.max_body = 1 << 20;
  for (client c : clients()) {
    INFO(name_of(c));
    failover::attempt_context ctx;
    ctx.remaining = 3s;
    const auto start = steady::now();
    const auto sent = send_once(c, server.base_url(), ctx, {500ms, 20s}, small);
    REQUIRE_FALSE(sent);
    // libcurl refuses a chunk size of more than 16 hex digits itself (a failed receive).
    if (c == client::httplib) {
      CHECK(sent.failure().kind == error_kind::invalid_response);
      CHECK(sent.failure().message ==
            "response body exceeds the 1 MiB limit (http::limits::max_body)");
    }
    INFO(sent.failure().message);
    CHECK(ms_since(start) < 3000);
  }
}

#if defined(FAILOVER_TEST_CURL)
TEST_CASE("curl_post leaves the handle a GET without a body, for the caller's next transfer") {
  raw_server server([](raw_connection& c) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
  });
  CURL* easy = curl_easy_init();
  REQUIRE(easy != nullptr);
  const failover::attempt_context ctx;
  const std::string url = server.base_url() + "/chat/completions";
  REQUIRE(failover::http::curl_post(easy, ctx, url, R"({"model":"m"})"));
  CHECK(server.last_request().rfind("POST ", 0) == 0);
  // The caller's own transfer on the same handle: only what it sets, and no leftover body.
  std::string got;
  curl_easy_setopt(easy, CURLOPT_URL, (server.base_url() + "/models").c_str());
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 3000L);
  curl_easy_setopt(
      easy, CURLOPT_WRITEFUNCTION,
      +[](char* data, std::size_t size, std::size_t n, void* user) -> std::size_t {
        static_cast<std::string*>(user)->append(data, size * n);
        return size * n;
      });
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &got);
  CHECK(curl_easy_perform(easy) == CURLE_OK);
  CHECK(got == "{}");
  const std::string head = server.last_request();
  CHECK(head.rfind("GET /v1/models ", 0) == 0);
  CHECK(head.find("Content-Length") == std::string::npos);
  curl_easy_cleanup(easy);
}
#endif

TEST_CASE("an unsafe request header is named by its token characters only, never its value") {
  raw_server server([](raw_connection& c) {
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
  });
  const failover::attempt_context ctx;
  failover::http::httplib_endpoint h(server.base_url());
  // A name holding a line break and a key after it: only the token before the break is quoted.
  const auto named = h.post(ctx, "/chat/completions", "{}", {{"X-Key\r\nsk-secret-abc", "v"}});
  REQUIRE_FALSE(named);
  CHECK(named.failure().message.find("'X-Key'") != std::string::npos);
  CHECK(named.failure().message.find("secret") == std::string::npos);
  CHECK(named.failure().message.find('\r') == std::string::npos);
#if defined(FAILOVER_TEST_CURL)
  failover::http::curl_endpoint c(server.base_url());
  // A curl header line with no ':' is all value (a key pasted alone): it has no name to quote.
  const auto unnamed = c.post(ctx, "/chat/completions", "{}", {"sk-secret-abc-0123456789\r\n"});
  REQUIRE_FALSE(unnamed);
  CHECK(unnamed.failure().message.find("(unnamed header)") != std::string::npos);
  CHECK(unnamed.failure().message.find("secret") == std::string::npos);
  CHECK(unnamed.failure().message.find('\n') == std::string::npos);
#endif
  CHECK(server.connections() == 0);
}
