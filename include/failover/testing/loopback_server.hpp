// An HTTP/1.1 server on 127.0.0.1 that holds each request for a while, then answers, for tests and
// benchmarks with thousands of requests open at once. Needs standalone Asio (<asio.hpp>).
#pragma once

#include <asio.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace failover::testing {

// One answer: its status, how long the request is held before it, and its body ("" gives a small
// chat completion for a 2xx and an error object otherwise). Header lines are added as given.
struct loopback_reply {
  int status = 200;
  std::chrono::milliseconds hold{0};
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;

  void validate() const {
    if (status < 200 || status > 599)
      throw std::invalid_argument("failover::testing::loopback_reply: status must be 200..599");
    if (hold.count() < 0)
      throw std::invalid_argument("failover::testing::loopback_reply: hold must be >= 0");
    for (const auto& h : headers)
      if (h.first.empty() ||
          (h.first + h.second).find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
        throw std::invalid_argument(
            "failover::testing::loopback_reply: headers must have a name and no CR, LF or NUL");
  }
};

// What a request may hold (a request line and headers over max_head bytes, or a Content-Length
// over max_body, closes the connection unanswered) and how many threads serve the connections.
struct loopback_options {
  std::size_t threads = 1;
  std::size_t max_head = std::size_t{64} << 10;
  std::size_t max_body = std::size_t{1} << 20;
  int backlog = 65535;  // the kernel caps it at net.core.somaxconn

  void validate() const {
    auto bad = [](const char* what) {
      return std::invalid_argument(std::string("failover::testing::loopback_options: ") + what);
    };
    if (threads == 0) throw bad("threads must be > 0");
    if (max_head < 16) throw bad("max_head must be >= 16");
    if (backlog <= 0) throw bad("backlog must be > 0");
  }
};

// The server. Every answer carries `x-sent-ns`: steady_clock's time since its epoch, in
// nanoseconds, taken as the answer is written, so a client on this machine can tell how long the
// answer took to reach it; and `x-received-ns`, the same clock when the request was in. Connections
// stay open between requests (keep-alive) unless the request asks to close. A hold is a timer, not
// a thread: any number of requests can be held at once. The destructor stops at once; held requests
// are closed unanswered.
class loopback_server {
 public:
  explicit loopback_server(loopback_reply reply = {}, loopback_options options = {})
      : reply_((reply.validate(), std::move(reply))), options_((options.validate(), options)) {
    const asio::ip::tcp::endpoint where(asio::ip::make_address_v4("127.0.0.1"), 0);
    acceptor_.open(where.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(where);
    acceptor_.listen(options_.backlog);
    port_ = acceptor_.local_endpoint().port();
    accept();
    threads_.reserve(options_.threads);
    try {
      for (std::size_t i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { serve(); });
    } catch (...) {
      stop();
      throw;
    }
  }
  loopback_server(const loopback_server&) = delete;
  loopback_server& operator=(const loopback_server&) = delete;
  ~loopback_server() { stop(); }

  int port() const noexcept { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // The next requests get these replies, in order (after any scripted before); then the default.
  void script(std::vector<loopback_reply> replies) {
    for (const auto& r : replies) r.validate();
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& r : replies) script_.push_back(std::move(r));
  }

  std::size_t accepted() const noexcept { return accepted_.load(); }  // connections
  std::size_t open() const noexcept { return open_.load(); }          // connections open now
  std::size_t answered() const noexcept { return answered_.load(); }  // answers written
  std::size_t refused() const noexcept { return refused_.load(); }    // closed over a bound
  std::size_t held() const noexcept { return held_.load(); }          // requests held now
  std::size_t peak_held() const noexcept { return peak_held_.load(); }
  void reset_peak() noexcept { peak_held_.store(held_.load()); }

 private:
  class connection;

  void serve() noexcept {
    for (;;) {
      try {
        ctx_.run();
        return;
      } catch (...) {
        // A handler that threw (no memory) loses its connection, not the server.
      }
    }
  }

  void stop() noexcept {
    work_.reset();
    ctx_.stop();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    // The io_context's destructor destroys the handlers still waiting, and with them the
    // connections they hold.
  }

  void accept();

  loopback_reply next_reply() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (script_.empty()) return reply_;
    loopback_reply r = std::move(script_.front());
    script_.pop_front();
    return r;
  }

  // Clients read the code, not the phrase (RFC 9112 allows any): a few common ones suffice.
  static const char* reason(int status) noexcept {
    return status == 200 ? "OK" : status == 429 ? "Too Many Requests" : "Scripted";
  }

  static std::int64_t steady_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  std::string render(const loopback_reply& r, std::size_t n, bool closing,
                     std::int64_t received_ns) const {
    std::string body = r.body;
    if (body.empty() && r.status < 300)
      body = R"({"id":"loopback-)" + std::to_string(n) +
             R"(","object":"chat.completion","created":0,"model":"loopback","choices":[{"index":0,)"
             R"("message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],)"
             R"("usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}})";
    else if (body.empty())
      body = R"({"error":{"message":"scripted status )" + std::to_string(r.status) +
             R"(","type":"loopback","code":null}})";
    const std::int64_t sent = steady_ns();
    std::string out =
        "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\nx-received-ns: " + std::to_string(received_ns) +
        "\r\nx-sent-ns: " + std::to_string(sent) + (closing ? "\r\nConnection: close\r\n" : "\r\n");
    for (const auto& h : r.headers) out += h.first + ": " + h.second + "\r\n";
    out += "\r\n";
    out += body;
    return out;
  }

  // The state behind the counters and the script outlives the io_context (declared first), so
  // a connection destroyed with it can still count itself out.
  loopback_reply reply_;
  loopback_options options_;
  std::mutex mutex_;
  std::deque<loopback_reply> script_;
  std::atomic<std::size_t> accepted_{0}, open_{0}, answered_{0}, refused_{0}, held_{0};
  std::atomic<std::size_t> peak_held_{0};
  asio::io_context ctx_;
  asio::executor_work_guard<asio::io_context::executor_type> work_{ctx_.get_executor()};
  asio::ip::tcp::acceptor acceptor_{ctx_};
  asio::steady_timer retry_{ctx_};
  int port_ = 0;
  std::vector<std::thread> threads_;
};

// One connection: read a request (bounded), hold it on a timer, answer, and read the next. Only
// one of these steps is pending at a time, so a connection needs no lock with several threads.
class loopback_server::connection : public std::enable_shared_from_this<connection> {
 public:
  connection(loopback_server& server, asio::ip::tcp::socket s)
      : server_(server), socket_(std::move(s)), timer_(socket_.get_executor()) {
    server_.open_.fetch_add(1);
  }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection() { server_.open_.fetch_sub(1); }

  // Answers a complete request already in the buffer (a pipelined one), else reads more.
  void read() {
    if (!parse()) return;
    if (head_ != 0 && in_.size() >= head_ + body_) return hold();
    const std::size_t have = in_.size();
    const std::size_t chunk = 4096;
    in_.resize(have + chunk);
    socket_.async_read_some(
        asio::buffer(&in_[have], chunk),
        [self = shared_from_this(), have](const asio::error_code& ec, std::size_t n) {
          self->in_.resize(have + n);
          if (!ec) self->read();  // else: the client left, or the server
        });
  }

 private:
  // False when the request broke a bound (the connection is then closed). Sets head_ and body_
  // once the request line and headers are in.
  bool parse() {
    if (head_ != 0) return true;
    const std::size_t end = in_.find("\r\n\r\n");
    if (end == std::string::npos) return in_.size() <= server_.options_.max_head || refuse();
    if (end + 4 > server_.options_.max_head) return refuse();
    std::string_view head(in_.data(), end);
    const std::size_t line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    if (line.find(' ') == std::string_view::npos) return refuse();
    closing_ = line.substr(line.size() >= 8 ? line.size() - 8 : 0) != "HTTP/1.1";
    std::size_t length = 0;
    std::string_view rest =
        line_end == std::string_view::npos ? std::string_view() : head.substr(line_end + 2);
    while (!rest.empty()) {
      const std::size_t eol = rest.find("\r\n");
      const std::string_view h = rest.substr(0, eol);
      rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
      const std::size_t colon = h.find(':');
      if (colon == std::string_view::npos) return refuse();
      const std::string name = lower(h.substr(0, colon));
      std::string_view value = h.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
        value.remove_suffix(1);
      if (name == "content-length") {
        if (value.empty() || value.size() > 19) return refuse();
        length = 0;
        for (char c : value) {
          if (c < '0' || c > '9') return refuse();
          length = length * 10 + static_cast<std::size_t>(c - '0');
        }
        if (length > server_.options_.max_body) return refuse();
      } else if (name == "transfer-encoding") {
        return refuse();  // chunked bodies are not read: a body needs a Content-Length
      } else if (name == "connection") {
        const std::string v = lower(value);
        if (v == "close") closing_ = true;
        if (v == "keep-alive") closing_ = false;
      }
    }
    head_ = end + 4;
    body_ = length;
    return true;
  }

  bool refuse() {
    server_.refused_.fetch_add(1);
    asio::error_code ignored;
    socket_.close(ignored);
    return false;
  }

  void hold() {
    in_.erase(0, head_ + body_);
    head_ = body_ = 0;
    reply_ = server_.next_reply();
    received_ns_ = steady_ns();
    const std::size_t now = server_.held_.fetch_add(1) + 1;
    std::size_t peak = server_.peak_held_.load();
    while (peak < now && !server_.peak_held_.compare_exchange_weak(peak, now)) {
    }
    timer_.expires_after(reply_.hold);
    timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      self->server_.held_.fetch_sub(1);
      if (!ec) self->answer();
    });
  }

  void answer() {
    const std::size_t n = server_.answered_.fetch_add(1);  // counted before a client can see it
    out_ = server_.render(reply_, n, closing_, received_ns_);
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this()](const asio::error_code& ec, std::size_t) {
                        self->out_.clear();
                        if (ec) return;
                        if (self->closing_) {
                          asio::error_code ignored;
                          self->socket_.shutdown(asio::socket_base::shutdown_send, ignored);
                          return;
                        }
                        self->read();
                      });
  }

  static std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
  }

  loopback_server& server_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  std::string in_;                // bytes read and not yet consumed
  std::size_t head_ = 0;          // the current request's line and headers, once complete
  std::size_t body_ = 0;          // its Content-Length
  bool closing_ = false;          // answer, then close
  std::int64_t received_ns_ = 0;  // when the request being held was in
  loopback_reply reply_;          // the answer being held
  std::string out_;               // the answer being written
};

inline void loopback_server::accept() {
  acceptor_.async_accept([this](const asio::error_code& ec, asio::ip::tcp::socket s) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) {  // out of descriptors, say: try again shortly rather than spin
      retry_.expires_after(std::chrono::milliseconds(10));
      retry_.async_wait([this](const asio::error_code& e) {
        if (!e) accept();
      });
      return;
    }
    accepted_.fetch_add(1);
    asio::error_code ignored;
    s.set_option(asio::ip::tcp::no_delay(true), ignored);
    std::make_shared<connection>(*this, std::move(s))->read();
    accept();
  });
}

}  // namespace failover::testing
