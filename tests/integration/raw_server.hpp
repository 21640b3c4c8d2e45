// A loopback server that answers with bytes of the test's choosing, for what a well-behaved HTTP
// server never sends: no status line, one byte at a time, headers or a body without end.
#pragma once

#include <failover/testing/mock_provider.hpp>  // testing::detail::bound_loopback_socket

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

namespace itest {

// One accepted connection, as a script sees it. Every send gives up once the client is gone or
// the server stops, so a script may loop "forever".
class raw_connection {
 public:
  raw_connection(int fd, const std::atomic<bool>& stopping) : fd_(fd), stopping_(stopping) {}

  // False once the client closed the connection or the server is stopping. Never blocks for
  // long: a client that gave up may leave its window shut, and a blocked send would keep this
  // connection (and the next one's accept) waiting.
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      if (stopping_.load()) return false;
      pollfd p{fd_, POLLIN | POLLOUT, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0 && client_gone()) return false;
      if ((p.revents & POLLOUT) == 0) continue;
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Sends `bytes` one at a time, `gap` apart.
  bool drip(std::string_view bytes, std::chrono::milliseconds gap) {
    for (char c : bytes) {
      if (!send(std::string_view(&c, 1))) return false;
      std::this_thread::sleep_for(gap);
    }
    return true;
  }

  // Sends `bytes` over and over until the client gives up (or the server stops).
  void repeat(std::string_view bytes, std::chrono::milliseconds gap = {}) {
    while (send(bytes))
      if (gap.count() > 0) std::this_thread::sleep_for(gap);
  }

  // The client closed its end (or reset it). Anything else it sends after its request is
  // read and dropped.
  bool client_gone() {
    char buf[256];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }

  // Waits (up to `limit`, or until the server stops) without reading a byte: a server that takes
  // a connection and never reads the request, so a large upload fills the socket's buffers.
  void stall(std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!stopping_.load() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  // Waits (up to `limit`) for the client to close, so a script can hold the connection open.
  void hold(std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    char buf[256];
    while (!stopping_.load() && std::chrono::steady_clock::now() < until) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 10) > 0 && ::recv(fd_, buf, sizeof buf, 0) <= 0) return;
    }
  }

 private:
  int fd_;
  const std::atomic<bool>& stopping_;
};

// Listens on 127.0.0.1 (an ephemeral port) and runs `script` for each connection, one at a time,
// on its own thread, after reading the request (its headers and a Content-Length body), or at
// once when the server is made `unread`.
class raw_server {
 public:
  using script = std::function<void(raw_connection&)>;
  enum request_reading { read_request_first, unread };

  explicit raw_server(script s, request_reading reading = read_request_first)
      : script_(std::move(s)), reads_request_(reading == read_request_first) {
    fd_ = failover::testing::detail::bound_loopback_socket(port_);
    if (::listen(fd_, 16) != 0) {
      ::close(fd_);
      throw std::runtime_error("raw_server: listen failed");
    }
    thread_ = std::thread([this] { serve(); });
  }
  raw_server(const raw_server&) = delete;
  raw_server& operator=(const raw_server&) = delete;
  ~raw_server() {
    stopping_.store(true);
    thread_.join();
    ::close(fd_);
  }

  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  int connections() const { return connections_.load(); }
  // The request line and headers last read (when the server reads requests).
  std::string last_request() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_request_;
  }

 private:
  void serve() {
    while (!stopping_.load()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      ++connections_;
      if (!reads_request_ || read_request(c)) {
        raw_connection conn(c, stopping_);
        script_(conn);
      }
      ::close(c);
    }
  }

  // Reads up to the end of the headers and then Content-Length bytes of body.
  bool read_request(int c) {
    std::string in;
    char buf[4096];
    std::size_t body_start = std::string::npos;
    std::size_t want = 0;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!stopping_.load() && std::chrono::steady_clock::now() < give_up) {
      if (body_start != std::string::npos && in.size() >= body_start + want) return true;
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return false;
      in.append(buf, static_cast<std::size_t>(n));
      if (body_start == std::string::npos) {
        const std::size_t end = in.find("\r\n\r\n");
        if (end == std::string::npos) continue;
        body_start = end + 4;
        std::string head = in.substr(0, end);
        {
          std::lock_guard<std::mutex> lock(mutex_);
          last_request_ = head;
        }
        for (auto& ch : head)
          if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
        const std::size_t at = head.find("content-length:");
        if (at != std::string::npos) want = std::stoul(head.substr(at + 15));
      }
    }
    return false;
  }

  script script_;
  bool reads_request_ = true;
  int port_ = 0;
  int fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  mutable std::mutex mutex_;
  std::string last_request_;
  std::thread thread_;
};

}  // namespace itest
