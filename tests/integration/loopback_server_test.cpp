// The Asio loopback server over real sockets on 127.0.0.1: many requests held at once, keep-alive,
// the sent-at header, scripted statuses, and requests over its bounds closed unanswered. The
// clients here are plain blocking Asio sockets, so the server is the only thing under test.
#include <failover/testing/loopback_server.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"

using failover::testing::loopback_options;
using failover::testing::loopback_reply;
using failover::testing::loopback_server;
using namespace std::chrono_literals;

namespace {

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct answer {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;

  std::string header(const std::string& name) const {
    const std::size_t at = head.find("\r\n" + name + ": ");
    if (at == std::string::npos) return {};
    const std::size_t from = at + name.size() + 4;
    return head.substr(from, head.find("\r\n", from) - from);
  }
};

// One client connection, blocking.
class client {
 public:
  explicit client(const loopback_server& server) : socket_(ctx_) {
    socket_.connect(
        {asio::ip::make_address_v4("127.0.0.1"), static_cast<unsigned short>(server.port())});
  }

  void send(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }

  static std::string post(const std::string& body = "{}", const std::string& extra = {}) {
    return "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
           "application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
  }

  // The next answer, or nothing when the server closed the connection first.
  std::optional<answer> read() {
    asio::error_code ec;
    const std::size_t end = asio::read_until(socket_, in_, "\r\n\r\n", ec);
    if (ec) return std::nullopt;
    answer a;
    a.head.resize(end);
    in_.sgetn(&a.head[0], static_cast<std::streamsize>(end));
    a.status = std::stoi(a.head.substr(9, 3));
    const std::size_t length = std::stoul(a.header("Content-Length"));
    if (in_.size() < length)
      asio::read(socket_, in_, asio::transfer_exactly(length - in_.size()), ec);
    if (ec) return std::nullopt;
    a.body.resize(length);
    in_.sgetn(&a.body[0], static_cast<std::streamsize>(length));
    return a;
  }

  // True when the server closed the connection (end of stream or reset), with nothing sent.
  bool closed_unanswered() { return !read().has_value() && in_.size() == 0; }

 private:
  asio::io_context ctx_;
  asio::ip::tcp::socket socket_;
  asio::streambuf in_;
};

// Waits up to 10 s for `done`: the server works on its own thread.
template <class F>
bool eventually(F done) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

loopback_reply held_for(std::chrono::milliseconds hold) {
  loopback_reply r;
  r.hold = hold;
  return r;
}

}  // namespace

TEST_CASE("200 concurrent requests held 50 ms are all answered, each after its hold") {
  for (std::size_t threads : {std::size_t{1}, std::size_t{4}}) {
    INFO("server threads: " << threads);
    loopback_options options;
    options.threads = threads;
    loopback_server server(held_for(50ms), options);
    std::vector<std::unique_ptr<client>> clients;
    std::vector<std::int64_t> written;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 200; ++i) {
      clients.push_back(std::make_unique<client>(server));
      written.push_back(steady_ns());
      clients.back()->send(client::post());
    }
    for (std::size_t i = 0; i < clients.size(); ++i) {
      const std::optional<answer> a = clients[i]->read();
      REQUIRE(a);
      CHECK(a->status == 200);
      CHECK(a->body.find(R"("object":"chat.completion")") != std::string::npos);
      // The hold is a lower bound on this process's own clock: the answer was stamped no sooner.
      CHECK(std::stoll(a->header("x-sent-ns")) - written[i] >= 50'000'000);
    }
    // Held one at a time they would take 10 s: half of that, for a loaded machine, still proves
    // they were held together.
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    CHECK(server.accepted() == 200);
    CHECK(server.answered() == 200);
    CHECK(server.refused() == 0);
    CHECK(server.peak_held() >= 2);
  }
}

TEST_CASE("A kept-alive connection serves request after request, pipelined ones too") {
  loopback_server server;
  client c(server);
  c.send(client::post());
  REQUIRE(c.read());
  c.send(client::post(std::string(10000, 'x')));  // a body read in several pieces
  REQUIRE(c.read());
  c.send(client::post() + client::post());  // two requests in one write
  const auto first = c.read();
  const auto second = c.read();
  REQUIRE(first);
  REQUIRE(second);
  CHECK(first->body != second->body);  // each answer names its own request
  CHECK(server.accepted() == 1);
  CHECK(server.answered() == 4);
}

TEST_CASE("Connection: close and HTTP/1.0 requests are answered, then the connection closes") {
  loopback_server server;
  client c(server);
  c.send(client::post("{}", "Connection: close\r\n"));
  const auto a = c.read();
  REQUIRE(a);
  CHECK(a->header("Connection") == "close");
  CHECK(c.closed_unanswered());

  client old(server);
  old.send("GET / HTTP/1.0\r\n\r\n");
  REQUIRE(old.read());
  CHECK(old.closed_unanswered());
  CHECK(server.answered() == 2);
}

TEST_CASE("Each answer carries x-sent-ns and x-received-ns, steady-clock times of its request") {
  loopback_server server(held_for(20ms));
  client c(server);
  const std::int64_t before = steady_ns();
  c.send(client::post());
  const auto a = c.read();
  const std::int64_t after = steady_ns();
  REQUIRE(a);
  REQUIRE_FALSE(a->header("x-sent-ns").empty());
  const std::int64_t sent = std::stoll(a->header("x-sent-ns"));
  CHECK(sent >= before + 20'000'000);
  CHECK(sent <= after);
  REQUIRE_FALSE(a->header("x-received-ns").empty());
  const std::int64_t received = std::stoll(a->header("x-received-ns"));
  CHECK(received >= before);
  CHECK(sent - received >= 20'000'000);  // the hold, by the server's own stamps
}

TEST_CASE("Requests over the bounds close the connection unanswered") {
  loopback_options options;
  options.max_body = 1000;
  loopback_server server({}, options);

  client big_head(server);  // 64 KiB of headers and more, with no end in sight
  big_head.send("POST / HTTP/1.1\r\nX-Big: " + std::string(70000, 'a'));
  CHECK(big_head.closed_unanswered());

  client big_body(server);
  big_body.send(client::post(std::string(1001, 'x')));
  CHECK(big_body.closed_unanswered());

  client chunked(server);
  chunked.send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n");
  CHECK(chunked.closed_unanswered());

  client no_colon(server);
  no_colon.send("POST / HTTP/1.1\r\nnot a header\r\n\r\n");
  CHECK(no_colon.closed_unanswered());

  CHECK(server.refused() == 4);
  CHECK(server.answered() == 0);

  client at_limit(server);  // the largest body allowed is answered
  at_limit.send(client::post(std::string(1000, 'x')));
  CHECK(at_limit.read());
}

TEST_CASE("Scripted replies come in order, then the default reply") {
  loopback_server server;
  loopback_reply limited;
  limited.status = 429;
  limited.headers = {{"retry-after-ms", "5"}};
  server.script({limited, loopback_reply{503, 0ms, "down", {}}});
  client c(server);
  std::vector<answer> seen;
  for (int i = 0; i < 3; ++i) {
    c.send(client::post());
    auto a = c.read();
    REQUIRE(a);
    seen.push_back(*a);
  }
  CHECK(seen[0].status == 429);
  CHECK(seen[0].header("retry-after-ms") == "5");
  CHECK(seen[0].body.find("error") != std::string::npos);
  CHECK(seen[1].status == 503);
  CHECK(seen[1].body == "down");
  CHECK(seen[2].status == 200);
}

TEST_CASE("Held requests are counted, and the destructor closes them unanswered") {
  auto server = std::make_unique<loopback_server>(held_for(std::chrono::hours(1)));
  std::vector<std::unique_ptr<client>> clients;
  for (int i = 0; i < 20; ++i) {
    clients.push_back(std::make_unique<client>(*server));
    clients.back()->send(client::post());
  }
  REQUIRE(eventually([&] { return server->held() == 20; }));
  CHECK(server->peak_held() == 20);
  CHECK(server->open() == 20);
  server.reset();  // returns at once, not in an hour
  for (auto& c : clients) CHECK(c->closed_unanswered());
}

TEST_CASE("Bad loopback server parameters throw invalid_argument naming them") {
  loopback_options no_threads;
  no_threads.threads = 0;
  CHECK_THROWS_WITH(loopback_server({}, no_threads), Catch::Contains("threads"));
  CHECK_THROWS_WITH(loopback_server(loopback_reply{100, 0ms, "", {}}), Catch::Contains("status"));
  CHECK_THROWS_WITH(loopback_server(held_for(-1ms)), Catch::Contains("hold"));
  loopback_reply split;
  split.headers = {{"x-a", "1\r\nx-b: 2"}};
  loopback_server server;
  CHECK_THROWS_AS(server.script({split}), std::invalid_argument);
}
