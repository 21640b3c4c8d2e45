// The curl multi adapter against real loopback servers, its io_context run on the test thread:
// answers and failures named as the blocking curl adapter names them, keep-alive reuse, many
// transfers at once, cancellation through the token and through an Asio cancellation slot, the
// multi destroyed mid-transfer, and the use_future and deferred tokens.
#include <failover/adapters/curl_multi.hpp>

#include <malloc.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "raw_server.hpp"
#include "support.hpp"

using namespace itest;
using asio::ip::tcp;
using failover::error_kind;
using failover::transport_error;
using failover::http::curl_multi;
using failover::http::curl_multi_endpoint;
using failover::http::limits;
using failover::http::response;
using failover::http::timeouts;
using steady = std::chrono::steady_clock;
using result = failover::outcome<response>;

namespace {

const bool curl_ready = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();

// Runs `io` on this thread until `done()`, or 20 s have passed (a hang fails the test, not ctest).
template <class Done>
bool run_until(asio::io_context& io, Done done) {
  const auto give_up = steady::now() + 20s;
  while (!done() && steady::now() < give_up) {
    if (io.stopped()) io.restart();
    io.run_one_for(20ms);
  }
  return done();
}

// A keep-alive HTTP/1.1 server on the test's own io_context: it counts connections, requests and
// connections the client closed, and answers each request with `reply(n)` (n from 1), or holds it
// when that is empty (sending `hold_prefix` first: the start of an answer that never ends).
class loop_server {
 public:
  using reply_fn = std::function<std::optional<std::string>(int)>;
  loop_server(asio::io_context& io, reply_fn reply)
      : acceptor_(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
        reply_(std::move(reply)) {
    accept();
  }
  std::string base_url() const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/v1";
  }
  int connections = 0;
  int requests = 0;
  int closed = 0;
  std::string hold_prefix;
  std::function<void()> on_request;  // after a request was read (and any answer was sent)

 private:
  struct conn {
    explicit conn(tcp::socket s) : socket(std::move(s)) {}
    tcp::socket socket;
    std::string in;
    char buf[4096];
  };
  void accept() {
    acceptor_.async_accept([this](const asio::error_code& ec, tcp::socket s) {
      if (ec) return;
      ++connections;
      read(std::make_shared<conn>(std::move(s)));
      accept();
    });
  }
  void read(const std::shared_ptr<conn>& c) {
    const std::size_t end = c->in.find("\r\n\r\n");
    if (end != std::string::npos) {
      std::size_t length = 0;
      std::string head = c->in.substr(0, end);
      for (auto& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (const std::size_t at = head.find("content-length:"); at != std::string::npos)
        length = std::stoul(head.substr(at + 15));
      if (c->in.size() >= end + 4 + length) {
        c->in.erase(0, end + 4 + length);
        return answer(c);
      }
    }
    c->socket.async_read_some(asio::buffer(c->buf),
                              [this, c](const asio::error_code& ec, std::size_t n) {
                                if (ec) {
                                  ++closed;
                                  return;
                                }
                                c->in.append(c->buf, n);
                                read(c);
                              });
  }
  void answer(const std::shared_ptr<conn>& c) {
    const std::optional<std::string> r = reply_(++requests);
    auto out = std::make_shared<std::string>(r ? *r : hold_prefix);
    asio::async_write(c->socket, asio::buffer(*out),
                      [this, c, out](const asio::error_code&, std::size_t) {
                        if (on_request) on_request();
                        read(c);  // the next request, or the client closing a held one
                      });
  }
  tcp::acceptor acceptor_;
  reply_fn reply_;
};

std::string ok_reply(const std::string& body = R"({"ok":true})") {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Served: yes\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// One call through a callback: the outcome, and a check that the handler ran once and not inside
// async_post.
struct one_call {
  std::optional<result> got;
  int calls = 0;
  bool inline_call = false;
};

result post_once(asio::io_context& io, curl_multi_endpoint& e, const failover::attempt_context& ctx,
                 const std::vector<std::string>& headers = {}) {
  auto c = std::make_shared<one_call>();
  bool returned = false;
  e.async_post(ctx, "/chat/completions", "{}", headers, [c, &returned](result r) {
    c->inline_call = !returned;
    ++c->calls;
    c->got.emplace(std::move(r));
  });
  returned = true;
  REQUIRE(run_until(io, [&] { return c->calls > 0; }));
  io.restart();
  io.poll();  // a second completion would show here
  CHECK_FALSE(c->inline_call);
  CHECK(c->calls == 1);
  return std::move(*c->got);
}

failover::error classify(const failover::failure& f) {
  return failover::classifier{}.classify(f, std::chrono::system_clock::now());
}

}  // namespace

TEST_CASE("an answer completes the handler once, never inside async_post") {
  REQUIRE(curl_ready);
  asio::io_context io;
  loop_server server(io, [](int) { return ok_reply(); });
  curl_multi multi(io);
  curl_multi_endpoint e(multi, server.base_url(), {500ms, 3s});
  const failover::attempt_context ctx;
  const result r = post_once(io, e, ctx);
  REQUIRE(r);
  CHECK(r.value().status == 200);
  CHECK(r.value().body == R"({"ok":true})");
  CHECK(r.value().header("x-served") == "yes");
  CHECK(multi.in_flight() == 0);
}

TEST_CASE("a 4 MiB body sent at once arrives whole") {
  asio::io_context io;
  const std::string big(4 << 20, 'b');
  loop_server server(io, [&](int) { return ok_reply(big); });
  curl_multi multi(io);
  curl_multi_endpoint e(multi, server.base_url(), {500ms, 10s});
  const failover::attempt_context ctx;
  const result r = post_once(io, e, ctx);
  REQUIRE(r);
  CHECK(r.value().body.size() == big.size());
  CHECK(r.value().body == big);
}

TEST_CASE("a 429 with Retry-After reads and classifies as through curl_endpoint") {
  raw_server server([](raw_connection& c) {
    c.send(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Type: application/json\r\n"
        "retry-after: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
  });
  asio::io_context io;
  curl_multi multi(io);
  curl_multi_endpoint e(multi, server.base_url(), {500ms, 3s});
  failover::http::curl_endpoint blocking(server.base_url(), {500ms, 3s});
  const failover::attempt_context ctx;
  const result async = post_once(io, e, ctx);
  const result sync = blocking.post(ctx, "/chat/completions", "{}");
  REQUIRE(async);
  REQUIRE(sync);
  CHECK(async.value().status == 429);
  CHECK(async.value().headers == sync.value().headers);
  const auto now = std::chrono::system_clock::now();
  CHECK(async.value().server_wait(now) == failover::duration(7s));
  const failover::error a = classify(failover::http::status_failure(async.value()));
  const failover::error b = classify(failover::http::status_failure(sync.value()));
  CHECK(a.kind == error_kind::rate_limited);
  CHECK(a.kind == b.kind);
  CHECK(a.transient == b.transient);
  CHECK(a.retry_after == failover::duration(7s));
  CHECK(a.retry_after == b.retry_after);
}

TEST_CASE("each transport failure is named as curl_endpoint names it") {
  using failover::testing::refused_port;
  using failover::testing::unanswered_port;
  const std::string block(16 << 10, 'x');
  struct scenario {
    const char* name;
    std::function<std::string()> url;  // starts the server; its base URL
    transport_error transport;
    error_kind kind;
    timeouts wanted;
    limits bounds;
  };
  std::unique_ptr<refused_port> refused;
  std::unique_ptr<unanswered_port> unanswered;
  std::unique_ptr<raw_server> raw;
  auto serve = [&raw](raw_server::script s) {
    return [&raw, s] {
      raw = std::make_unique<raw_server>(s);
      return raw->base_url();
    };
  };
  limits small;
  small.max_body = 1000;
  small.max_headers = 4096;
  const std::vector<scenario> scenarios = {
      {"refused",
       [&] {
         refused = std::make_unique<refused_port>();
         return refused->base_url();
       },
       transport_error::connection_refused,
       error_kind::connection_error,
       {500ms, 3s},
       {}},
      {"connect timeout",
       [&] {
         unanswered = std::make_unique<unanswered_port>();
         return unanswered->base_url();
       },
       transport_error::connect_timeout,
       error_kind::connect_timeout,
       {50ms, 3s},
       {}},
      {"read timeout",
       serve([](raw_connection& c) { c.hold(3s); }),
       transport_error::read_timeout,
       error_kind::read_timeout,
       {500ms, 200ms},
       {}},
      {"reset mid-body",
       serve([](raw_connection& c) {
         c.send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial");
       }),
       transport_error::connection_reset,
       error_kind::connection_error,
       {500ms, 3s},
       {}},
      {"closed without a byte",
       serve([](raw_connection&) {}),
       transport_error::connection_reset,
       error_kind::connection_error,
       {500ms, 3s},
       {}},
      {"no status line",
       serve([](raw_connection& c) { c.send("garbage\r\n\r\n"); }),
       transport_error::none,
       error_kind::invalid_response,
       {500ms, 3s},
       {}},
      {"body over max_body",
       serve([&](raw_connection& c) {
         if (c.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
           c.repeat("4000\r\n" + block + "\r\n");
       }),
       transport_error::none,
       error_kind::invalid_response,
       {500ms, 5s},
       small},
      {"headers over max_headers",
       serve([](raw_connection& c) {
         if (c.send("HTTP/1.1 200 OK\r\n")) c.repeat("X-Many: " + std::string(100, 'm') + "\r\n");
       }),
       transport_error::none,
       error_kind::invalid_response,
       {500ms, 5s},
       small},
  };
  for (const scenario& s : scenarios) {
    INFO(s.name);
    const std::string url = s.url();
    asio::io_context io;
    curl_multi multi(io);
    curl_multi_endpoint e(multi, url, s.wanted, s.bounds);
    failover::http::curl_endpoint blocking(url, s.wanted, s.bounds);
    const failover::attempt_context ctx;
    const result async = post_once(io, e, ctx);
    const result sync = blocking.post(ctx, "/chat/completions", "{}");
    REQUIRE_FALSE(async);
    REQUIRE_FALSE(sync);
    CHECK(async.failure().transport == s.transport);
    CHECK(classify(async.failure()).kind == s.kind);
    CHECK(async.failure().transport == sync.failure().transport);
    CHECK(async.failure().kind == sync.failure().kind);
    CHECK(async.failure().message == sync.failure().message);
    CHECK(multi.in_flight() == 0);
    raw.reset();
  }
}

TEST_CASE("a request header with a line break is refused, nothing is sent") {
  asio::io_context io;
  loop_server server(io, [](int) { return ok_reply(); });
  curl_multi multi(io);
  curl_multi_endpoint e(multi, server.base_url());
  const failover::attempt_context ctx;
  const result r =
      post_once(io, e, ctx, {"Authorization: Bearer sk-secret-key\r\nX-Injected: yes"});
  REQUIRE_FALSE(r);
  CHECK(r.failure().kind == error_kind::unknown);
  CHECK(r.failure().message.find("'Authorization'") != std::string::npos);
  CHECK(r.failure().message.find("sk-secret") == std::string::npos);
  CHECK(server.connections == 0);
}

TEST_CASE("a setup that throws completes the handler once with a failure") {
  asio::io_context io;
  loop_server server(io, [](int) { return ok_reply(); });
  curl_multi multi(io, [](CURL*) { throw std::runtime_error("no CA file"); });
  curl_multi_endpoint e(multi, server.base_url());
  const failover::attempt_context ctx;
  const result r = post_once(io, e, ctx);
  REQUIRE_FALSE(r);
  CHECK(r.failure().kind == error_kind::unknown);
  CHECK(r.failure().message == "request could not be made (the easy handle's setup threw)");
  CHECK(server.connections == 0);
  CHECK(multi.handles() == 0);
}

TEST_CASE("bad limits or timeouts throw invalid_argument at the call") {
  asio::io_context io;
  curl_multi multi(io);
  const failover::attempt_context ctx;
  limits none;
  none.max_body = 0;
  auto ignore = [](result) {};
  CHECK_THROWS_AS(multi.async_post(ctx, "http://127.0.0.1:1/", "{}", {}, {}, none, "x", ignore),
                  std::invalid_argument);
  CHECK_THROWS_AS(
      multi.async_post(ctx, "http://127.0.0.1:1/", "{}", {}, {0ms, 1s}, {}, "x", ignore),
      std::invalid_argument);
  CHECK_THROWS_AS(curl_multi_endpoint(multi, "http://127.0.0.1:1", {1s, 0ms}),
                  std::invalid_argument);
}

TEST_CASE("sequential requests reuse one connection and one easy handle") {
  asio::io_context io;
  loop_server server(io, [](int n) { return ok_reply(std::to_string(n)); });
  curl_multi multi(io);
  curl_multi_endpoint e(multi, server.base_url(), {500ms, 3s});
  for (int i = 1; i <= 10; ++i) {
    const failover::attempt_context ctx;
    const result r = post_once(io, e, ctx);
    REQUIRE(r);
    CHECK(r.value().body == std::to_string(i));
  }
  CHECK(server.requests == 10);
  CHECK(server.connections == 1);
  CHECK(multi.handles() == 1);
}

TEST_CASE("fifty transfers at once all complete, and a second wave reuses them") {
  asio::io_context io;
  loop_server server(io, [](int) { return ok_reply(); });
  curl_multi multi(io);
  curl_multi_endpoint e(multi, server.base_url(), {5s, 10s});
  constexpr int n = 50;
  int answered = 0;
  int completions = 0;
  // curl keeps at most 4 idle connections per transfer in the multi unless told otherwise: at
  // the end of a wave, that would close most of them.
  curl_multi_setopt(multi.native_handle(), CURLMOPT_MAXCONNECTS, static_cast<long>(n));
  auto wave = [&] {
    const int before = completions;
    const failover::attempt_context ctx;
    for (int i = 0; i < n; ++i)
      e.async_post(ctx, "/chat/completions", "{}", [&](result r) {
        ++completions;
        if (r && r.value().status == 200) ++answered;
      });
    CHECK(completions == before);
  };
  wave();
  REQUIRE(run_until(io, [&] { return completions == n; }));
  CHECK(answered == n);
  CHECK(multi.handles() <= static_cast<std::size_t>(n));
  const int first_connections = server.connections;
  CHECK(first_connections <= n);
  wave();
  REQUIRE(run_until(io, [&] { return completions == 2 * n; }));
  CHECK(answered == 2 * n);
  CHECK(server.connections == first_connections);  // every connection came from the cache
  CHECK(multi.in_flight() == 0);
}

TEST_CASE("cancelling the token aborts the transfer mid-body and closes it") {
  asio::io_context io;
  loop_server server(io, [](int) { return std::nullopt; });
  server.hold_prefix = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"partial";
  curl_multi multi(io);
  curl_multi_endpoint e(multi, server.base_url(), {5s, 30s});
  failover::cancel_source source;
  const failover::cancel_token token = source.token();
  failover::attempt_context ctx;
  ctx.cancel = &token;
  std::thread canceller;  // the token is cancelled from another thread, as a caller would
  server.on_request = [&] { canceller = std::thread([&] { source.cancel(); }); };
  const auto start = steady::now();
  const result r = post_once(io, e, ctx);
  canceller.join();
  REQUIRE_FALSE(r);
  CHECK(r.failure().kind == error_kind::cancelled);
  CHECK(r.failure().message == "cancelled during the request");
  CHECK(run_until(io, [&] { return server.closed == 1; }));  // the server saw the close
  CHECK(steady::now() - start < 10s);                        // far below the 30 s read budget
  CHECK(multi.in_flight() == 0);
  CHECK(multi.handles() == 0);  // the aborted handle was not kept
}

TEST_CASE("a terminal cancellation through the slot aborts the transfer") {
  asio::io_context io;
  loop_server server(io, [](int) { return std::nullopt; });
  curl_multi multi(io);
  curl_multi_endpoint e(multi, server.base_url(), {5s, 30s});
  for (auto type : {asio::cancellation_type::terminal, asio::cancellation_type::partial,
                    asio::cancellation_type::total}) {
    INFO(static_cast<int>(type));
    asio::cancellation_signal signal;
    server.on_request = [&] { signal.emit(type); };
    const int closed_before = server.closed;
    int calls = 0;
    std::optional<result> got;
    const failover::attempt_context ctx;
    e.async_post(ctx, "/chat/completions", "{}",
                 asio::bind_cancellation_slot(signal.slot(), [&](result r) {
                   ++calls;
                   got.emplace(std::move(r));
                 }));
    REQUIRE(run_until(io, [&] { return calls > 0 && server.closed == closed_before + 1; }));
    io.restart();
    io.poll();
    CHECK(calls == 1);
    REQUIRE_FALSE(*got);
    CHECK(got->failure().kind == error_kind::cancelled);
    CHECK(got->failure().message == "cancelled during the request");
  }
  CHECK(server.connections == 3);  // no aborted connection was reused
}

TEST_CASE("a token cancelled before the call sends nothing") {
  asio::io_context io;
  loop_server server(io, [](int) { return ok_reply(); });
  curl_multi multi(io);
  curl_multi_endpoint e(multi, server.base_url());
  failover::cancel_source source;
  source.cancel();
  const failover::cancel_token token = source.token();
  failover::attempt_context ctx;
  ctx.cancel = &token;
  const result r = post_once(io, e, ctx);
  REQUIRE_FALSE(r);
  CHECK(r.failure().kind == error_kind::cancelled);
  CHECK(server.connections == 0);
}

TEST_CASE("destroying the multi completes every transfer in flight as cancelled") {
  asio::io_context io;
  loop_server server(io, [](int) { return std::nullopt; });
  auto multi = std::make_unique<curl_multi>(io);
  curl_multi_endpoint e(*multi, server.base_url(), {5s, 30s});
  std::vector<int> calls(3, 0);
  int cancelled = 0;
  const failover::attempt_context ctx;
  for (int i = 0; i < 3; ++i)
    e.async_post(ctx, "/chat/completions", "{}", [&, i](result r) {
      ++calls[static_cast<std::size_t>(i)];
      if (!r && r.failure().kind == error_kind::cancelled) ++cancelled;
    });
  REQUIRE(run_until(io, [&] { return server.requests == 3; }));
  multi.reset();
  CHECK(calls == std::vector<int>{0, 0, 0});  // posted, not run inside the destructor
  REQUIRE(run_until(io, [&] { return cancelled == 3 && server.closed == 3; }));
  io.restart();
  io.poll();
  CHECK(calls == std::vector<int>{1, 1, 1});
}

TEST_CASE("use_future and deferred tokens complete with the outcome") {
  asio::io_context io;
  loop_server server(io, [](int n) { return ok_reply(std::to_string(n)); });
  curl_multi multi(io);
  curl_multi_endpoint e(multi, server.base_url(), {500ms, 3s});
  const failover::attempt_context ctx;

  std::future<result> f = e.async_post(ctx, "/chat/completions", "{}", asio::use_future);
  REQUIRE(run_until(io, [&] { return f.wait_for(0s) == std::future_status::ready; }));
  const result first = f.get();
  REQUIRE(first);
  CHECK(first.value().body == "1");

  auto op = e.async_post(ctx, "/chat/completions", "{}", asio::experimental::deferred);
  io.restart();
  io.poll();
  CHECK(server.requests == 1);  // a deferred operation starts only when it is launched
  std::optional<result> second;
  std::move(op)([&](result r) { second.emplace(std::move(r)); });
  REQUIRE(run_until(io, [&] { return second.has_value(); }));
  REQUIRE(*second);
  CHECK(second->value().body == "2");
}

#if defined(ASIO_HAS_CO_AWAIT) && __cplusplus >= 202002L
TEST_CASE("a coroutine awaits the outcome with use_awaitable") {
  asio::io_context io;
  loop_server server(io, [](int) { return ok_reply("from a coroutine"); });
  curl_multi multi(io);
  curl_multi_endpoint e(multi, server.base_url(), {500ms, 3s});
  std::optional<result> got;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const failover::attempt_context ctx;
        got.emplace(co_await e.async_post(ctx, "/chat/completions", "{}", asio::use_awaitable));
      },
      asio::detached);
  REQUIRE(run_until(io, [&] { return got.has_value(); }));
  REQUIRE(*got);
  CHECK(got->value().body == "from a coroutine");
}
#endif

#if !defined(FAILOVER_TEST_SANITIZED)
// glibc's own count of heap bytes in use; a sanitizer's allocator does not keep it.
TEST_CASE("one transfer in flight holds well under 64 KiB of heap") {
  asio::io_context io;
  loop_server server(io, [](int) { return std::nullopt; });
  curl_multi multi(io);
  curl_multi_endpoint e(multi, server.base_url(), {5s, 30s});
  const failover::attempt_context ctx;
  // Warm up: the first transfer brings curl's and Asio's one-time state.
  e.async_post(ctx, "/chat/completions", "{}", [](result) {});
  REQUIRE(run_until(io, [&] { return server.requests == 1; }));
  constexpr int n = 200;
  const std::size_t before = mallinfo2().uordblks;
  for (int i = 0; i < n; ++i) e.async_post(ctx, "/chat/completions", "{}", [](result) {});
  REQUIRE(run_until(io, [&] { return server.requests == n + 1; }));
  const std::size_t after = mallinfo2().uordblks;
  // Both ends of each connection count here: the test server's too.
  const std::size_t per_call = (after - before) / n;
  std::printf("curl_multi: %zu heap bytes per transfer in flight (client and test server)\n",
              per_call);
  CHECK(per_call < std::size_t{64} << 10);
}
#endif
