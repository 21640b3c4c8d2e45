// A scriptable OpenAI-compatible provider on 127.0.0.1 for tests and demos: scripted replies per
// model (any fault) and a log of what it received, with times. Needs cpp-httplib and nlohmann-json.
#pragma once

#include <httplib.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "failover/core/error.hpp"

namespace failover::testing {

// One scripted reply.
struct mock_reply {
  int status = 200;
  std::string body;  // sent as is, unless `completion` builds it
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds delay{0};  // before anything is sent (longer than the client's read
                                       // timeout: a read timeout)
  bool drop = false;                   // send the headers and half the body, then close
  std::optional<std::chrono::seconds> retry_after_date;  // Retry-After as an HTTP-date, this far
                                                         // after the moment the reply is sent
  // A chat completion built per request (it names the model asked for).
  bool completion = false;
  std::string text;
  std::string finish_reason = "stop";
  std::optional<std::pair<std::string, std::string>> tool;  // a tool call's name and arguments

  // 200 with a chat completion whose text is `text`.
  static mock_reply answer(std::string text) {
    mock_reply r;
    r.completion = true;
    r.text = std::move(text);
    return r;
  }
  // 200 with a chat completion that asks for one tool call instead of answering: content null,
  // finish_reason "tool_calls", `arguments` sent as the JSON text string OpenAI sends.
  static mock_reply tool_call(std::string name, std::string arguments) {
    mock_reply r = answer("");
    r.finish_reason = "tool_calls";
    r.tool.emplace(std::move(name), std::move(arguments));
    return r;
  }
  // 200 whose choice ended with finish_reason "content_filter": a refusal, not an answer.
  static mock_reply refusal() {
    mock_reply r = answer("");
    r.finish_reason = "content_filter";
    return r;
  }
  // An OpenAI-compatible error: {"error": {"message", "type", "param": null, "code"}}.
  static mock_reply error(int status, const std::string& code = {}, std::string message = {},
                          const std::string& type = {}) {
    mock_reply r;
    r.status = status;
    if (message.empty()) message = "mock error " + std::to_string(status);
    nlohmann::json e = {{"message", message}, {"param", nullptr}};
    e["type"] = type.empty() ? nlohmann::json(nullptr) : nlohmann::json(type);
    e["code"] = code.empty() ? nlohmann::json(nullptr) : nlohmann::json(code);
    r.body = nlohmann::json({{"error", e}}).dump();
    return r;
  }
  // An Anthropic error: {"type": "error", "error": {"type", "message"}}.
  static mock_reply anthropic_error(int status, std::string type, std::string message = {}) {
    mock_reply r;
    r.status = status;
    if (message.empty()) message = type;
    r.body = nlohmann::json({{"type", "error"}, {"error", {{"type", type}, {"message", message}}}})
                 .dump();
    return r;
  }
  // Any status with any body, e.g. a proxy's HTML page.
  static mock_reply raw(int status, std::string body, std::string content_type = "text/html") {
    mock_reply r;
    r.status = status;
    r.body = std::move(body);
    r.content_type = std::move(content_type);
    return r;
  }
  // A 200 chat completion cut off: the headers and half the body, then the connection closes.
  static mock_reply dropped() {
    mock_reply r = answer("this answer never arrives in full");
    r.drop = true;
    return r;
  }

  mock_reply& with_header(std::string name, std::string value) & {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  mock_reply&& with_header(std::string name, std::string value) && {
    return std::move(with_header(std::move(name), std::move(value)));
  }
  mock_reply& after(std::chrono::milliseconds d) & {
    delay = d;
    return *this;
  }
  mock_reply&& after(std::chrono::milliseconds d) && { return std::move(after(d)); }
  mock_reply& with_retry_after_date(std::chrono::seconds from_now) & {
    retry_after_date = from_now;
    return *this;
  }
  mock_reply&& with_retry_after_date(std::chrono::seconds from_now) && {
    return std::move(with_retry_after_date(from_now));
  }
};

// One request as the provider saw it.
struct mock_request {
  std::size_t index = 0;  // position in the provider's log, from 0
  std::string model;      // the request body's "model" ("" when unreadable)
  std::string path;
  std::string authorization;  // the Authorization header as received (tests check keys arrive)
  std::string body;
  duration received{};      // since the provider started
  int status = 0;           // the status it answered
  std::string retry_after;  // the Retry-After it sent ("" = none)
  bool dropped = false;     // the reply was cut off
};

// "Sun, 06 Nov 1994 08:49:37 GMT" (IMF-fixdate).
inline std::string http_date(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm parts{};
  gmtime_r(&secs, &parts);
  char text[64];
  const std::size_t n = std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &parts);
  return {text, n};
}

// The provider. Starts serving on construction (127.0.0.1, an ephemeral port), stops on
// destruction. Requests go to <base_url()>/chat/completions; a model with no script gets a 404
// model_not_found. Each model's replies are played in order and the last one repeats.
class mock_provider {
 public:
  mock_provider() : start_(std::chrono::steady_clock::now()) {
    server_.set_keep_alive_max_count(1);  // one request per connection: nothing lingers at stop
    server_.Post(
        R"((/.*)?/chat/completions)",
        [this](const ::httplib::Request& req, ::httplib::Response& res) { serve(req, res); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    if (port_ <= 0) throw std::runtime_error("mock_provider: cannot bind 127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // httplib's stop() does nothing until the server runs: wait, so a quick stop cannot hang.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!server_.is_running()) {
      if (std::chrono::steady_clock::now() > give_up) {
        server_.stop();
        thread_.join();
        throw std::runtime_error("mock_provider: the server did not start");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  mock_provider(const mock_provider&) = delete;
  mock_provider& operator=(const mock_provider&) = delete;
  ~mock_provider() { stop(); }

  // Sets `model`'s replies, replacing any earlier script.
  mock_provider& script(const std::string& model, std::vector<mock_reply> replies) {
    if (replies.empty()) throw std::invalid_argument("mock_provider::script: replies is empty");
    std::lock_guard<std::mutex> lock(mutex_);
    scripts_[model] = script_state{std::move(replies), 0};
    return *this;
  }

  int port() const noexcept { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

  std::vector<mock_request> requests() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return log_;
  }
  std::vector<mock_request> requests(std::string_view model) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<mock_request> out;
    for (const auto& r : log_)
      if (r.model == model) out.push_back(r);
    return out;
  }
  std::size_t count(std::string_view model) const { return requests(model).size(); }

  // Stops serving; delayed replies are cut short. Idempotent.
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct script_state {
    std::vector<mock_reply> replies;
    std::size_t next = 0;
  };

  void serve(const ::httplib::Request& req, ::httplib::Response& res) {
    mock_request seen;
    seen.received = std::chrono::steady_clock::now() - start_;
    seen.path = req.path;
    seen.authorization = req.get_header_value("Authorization");
    seen.body = req.body;
    const nlohmann::json j = nlohmann::json::parse(req.body, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("model") && j["model"].is_string())
      seen.model = j["model"].get<std::string>();

    mock_reply reply;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      auto it = scripts_.find(seen.model);
      if (it == scripts_.end()) {
        reply = mock_reply::error(404, "model_not_found",
                                  "The model '" + seen.model + "' does not exist",
                                  "invalid_request_error");
      } else {
        script_state& s = it->second;
        reply = s.replies[std::min(s.next, s.replies.size() - 1)];
        ++s.next;
      }
      seen.index = log_.size();
      seen.status = reply.status;
      seen.dropped = reply.drop;
      if (reply.retry_after_date)  // dated from when the reply leaves, after any delay
        reply.headers.emplace_back("Retry-After", http_date(std::chrono::system_clock::now() +
                                                            reply.delay + *reply.retry_after_date));
      for (const auto& h : reply.headers)
        if (failure::iequals(h.first, "retry-after")) seen.retry_after = h.second;
      log_.push_back(seen);
      if (reply.delay.count() > 0) wake_.wait_for(lock, reply.delay, [this] { return stopping_; });
    }

    std::string body = reply.body;
    if (reply.completion) {
      nlohmann::json message = {{"role", "assistant"}, {"content", reply.text}};
      if (reply.tool) {
        message["content"] = nullptr;
        message["tool_calls"] = nlohmann::json::array(
            {{{"id", "call_mock_" + std::to_string(seen.index)},
              {"type", "function"},
              {"function", {{"name", reply.tool->first}, {"arguments", reply.tool->second}}}}});
      }
      body = nlohmann::json(
                 {{"id", "chatcmpl-mock-" + std::to_string(seen.index)},
                  {"object", "chat.completion"},
                  {"created", 0},
                  {"model", seen.model},
                  {"choices", nlohmann::json::array({{{"index", 0},
                                                      {"message", message},
                                                      {"finish_reason", reply.finish_reason}}})},
                  {"usage", {{"prompt_tokens", 1}, {"completion_tokens", 1}, {"total_tokens", 2}}}})
                 .dump();
    }
    res.status = reply.status;
    for (const auto& h : reply.headers) res.set_header(h.first.c_str(), h.second);
    if (reply.drop) {
      // Announce the full length, send half, then fail the provider: httplib closes the
      // connection and the client sees it end mid-response.
      const std::size_t half = body.size() / 2;
      res.set_content_provider(body.size(), reply.content_type,
                               [body, half](std::size_t, std::size_t, ::httplib::DataSink& sink) {
                                 sink.write(body.data(), half);
                                 return false;
                               });
      return;
    }
    res.set_content(body, reply.content_type.c_str());
  }

  const std::chrono::steady_clock::time_point start_;
  ::httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::map<std::string, script_state, std::less<>> scripts_;
  std::vector<mock_request> log_;
};

namespace detail {
inline sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  return a;
}
inline int bound_loopback_socket(int& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("testing: cannot create a socket");
  sockaddr_in a = loopback(0);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("testing: cannot bind 127.0.0.1");
  }
  port = ntohs(a.sin_port);
  return fd;
}
}  // namespace detail

// A loopback port that refuses connections: bound (so nobody else takes it) but not listening.
class refused_port {
 public:
  refused_port() : fd_(detail::bound_loopback_socket(port_)) {}
  refused_port(const refused_port&) = delete;
  refused_port& operator=(const refused_port&) = delete;
  ~refused_port() { ::close(fd_); }
  int port() const noexcept { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

 private:
  int port_ = 0;
  int fd_;
};

// A loopback port that never answers: it listens, but its accept queue is full and nothing
// accepts, so the kernel drops new connection attempts and clients hit their connect timeout.
// Nothing leaves the machine.
class unanswered_port {
 public:
  unanswered_port() : fd_(detail::bound_loopback_socket(port_)) {
    if (::listen(fd_, 0) != 0) {
      ::close(fd_);
      throw std::runtime_error("unanswered_port: listen failed");
    }
    // Connect until one attempt is left unanswered: the queue is then full.
    const sockaddr_in a = detail::loopback(port_);
    for (int i = 0; i < 64; ++i) {
      const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (c < 0) break;
      fillers_.push_back(c);
      // Non-blocking: -1 with EINPROGRESS is the expected answer; poll() tells the outcome.
      (void)::connect(c, reinterpret_cast<const sockaddr*>(&a), sizeof a);
      pollfd p{c, POLLOUT, 0};
      if (::poll(&p, 1, 100) == 0) return;
    }
    close_all();
    throw std::runtime_error("unanswered_port: the accept queue never filled");
  }
  unanswered_port(const unanswered_port&) = delete;
  unanswered_port& operator=(const unanswered_port&) = delete;
  ~unanswered_port() { close_all(); }
  int port() const noexcept { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

 private:
  void close_all() {
    for (int c : fillers_) ::close(c);
    fillers_.clear();
    ::close(fd_);
  }
  int port_ = 0;
  int fd_;
  std::vector<int> fillers_;
};

}  // namespace failover::testing
