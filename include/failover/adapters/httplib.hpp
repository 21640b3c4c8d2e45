// The cpp-httplib adapter: sends one request with an httplib::Client under the attempt's timeouts
// and turns what came back into an `outcome<http::response>`, naming each transport failure.
#pragma once

#include <httplib.h>

#ifndef _WIN32
#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>

#include <csignal>  // with POSIX's sigset_t, pthread_sigmask, sigpending and sigtimedwait
#include <ctime>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "failover/adapters/http.hpp"
#include "failover/adapters/socket_watchdog.hpp"
#include "failover/core/context.hpp"
#include "failover/core/error.hpp"
#include "failover/core/outcome.hpp"

namespace failover::http {

// What is known about a failed httplib exchange. httplib reports some distinct failures with one
// error code, so the adapter keeps the facts that tell them apart.
struct httplib_exchange {
  ::httplib::Error error = ::httplib::Error::Unknown;
  std::string host;            // the host dialled, when known: tells DNS failures from refusals
  duration idle{};             // from the last sign of life (request start, headers, body bytes)
  duration connect_timeout{};  // as set for this attempt
  duration read_timeout{};     // as set for this attempt
  bool cancelled = false;      // the attempt's cancel token fired
  bool over_budget = false;    // the attempt ran out of its share of the call's time
  bool unconnected = false;    // ... before a connection was made (nothing was sent)
  bool not_http = false;       // bytes came back, but no valid status line
  bool body_over = false;      // the body passed limits::max_body
  bool headers_over = false;   // the headers passed limits::max_headers
  bool line_over = false;      // a header line passed httplib's own limit
  limits bounds{};             // as set for this attempt
};

namespace detail {

inline std::string millis(duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + "ms";
}

// Whether `host` resolves. httplib reports a failed lookup and a refused connection alike, so a
// failed connection is followed by one lookup of our own to name it.
inline bool host_resolves(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (found) ::freeaddrinfo(found);
  return rc == 0;
}

// Rounds down to whole milliseconds: httplib waits in milliseconds and truncates, and the
// read-timeout test below compares against exactly what httplib waited.
inline duration whole_ms(duration d) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d);
  return std::max(duration(ms), duration(std::chrono::milliseconds(1)));
}

// Keeps SIGPIPE from the calling thread while it lives. cpp-httplib writes without MSG_NOSIGNAL
// (and OpenSSL's close_notify too), so a write to a socket the watchdog shut down, or the server
// reset, would end a process that keeps SIGPIPE's default: the signal is blocked for the thread,
// and one that became pending meanwhile is taken before the old mask returns. One that was
// pending before is left for the application. The process's disposition is never touched, so
// other threads are not affected.
class sigpipe_held {
 public:
#ifndef _WIN32
  sigpipe_held() noexcept {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    was_pending_ = pending();
    held_ = ::pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0;
  }
  ~sigpipe_held() {
    if (!held_) return;
    if (!was_pending_ && pending()) {
      const timespec now{0, 0};
      while (::sigtimedwait(&pipe_, nullptr, &now) < 0 && errno == EINTR) {
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
#endif
  sigpipe_held(const sigpipe_held&) = delete;
  sigpipe_held& operator=(const sigpipe_held&) = delete;

 private:
#ifndef _WIN32
  static bool pending() noexcept {
    sigset_t set;
    sigemptyset(&set);
    return ::sigpending(&set) == 0 && sigismember(&set, SIGPIPE) == 1;
  }
  sigset_t pipe_{};
  sigset_t old_{};
  bool was_pending_ = false;
  bool held_ = false;
#endif
};

}  // namespace detail

// The most one httplib attempt may read from its socket, after which the watchdog ends it as a
// body over the limit: the headers, the body, and as much again as the body for its framing (a
// chunk-size line per chunk; an event stream of small chunks carries a few bytes for each),
// plus the read-ahead slack. A sum that saturates.
inline std::uint64_t response_ceiling(const limits& bounds) noexcept {
  const std::uint64_t most = ~std::uint64_t{0};
  const std::uint64_t parts[] = {bounds.max_headers, bounds.max_body, bounds.max_body,
                                 socket_watchdog::header_slack};
  std::uint64_t sum = 0;
  for (const std::uint64_t p : parts) sum = p > most - sum ? most : sum + p;
  return sum;
}

// The failure for an attempt the watchdog could not watch: no descriptor for its dup. Nothing
// was sent; transient, as descriptors may come free.
inline failure httplib_unwatched(int error, const std::string& host) {
  return failure::of(
      transport_error::other,
      "the connection could not be watched (dup: " + std::generic_category().message(error) + ")" +
          (host.empty() ? std::string() : " (" + host + ")") + "; nothing was sent");
}

// The failure for a failed exchange. Messages name the host at most, never a header or a URL.
inline failure httplib_failure(const httplib_exchange& x) {
  using ::httplib::Error;
  const std::string where = x.host.empty() ? std::string() : " (" + x.host + ")";
  // The adapter's own findings first: httplib reports each of them as a failed read or a
  // cancelled request.
  if (x.cancelled) return failure::of(error_kind::cancelled, "cancelled during the request");
  if (x.body_over) return body_over_limit(x.bounds);
  if (x.headers_over) return headers_over_limit(x.bounds);
  if (x.line_over) {
    if (x.bounds.max_headers <= CPPHTTPLIB_HEADER_MAX_LENGTH) return headers_over_limit(x.bounds);
    return failure::of(error_kind::invalid_response,
                       "a response header line exceeds cpp-httplib's " +
                           detail::size_text(CPPHTTPLIB_HEADER_MAX_LENGTH) +
                           " limit (CPPHTTPLIB_HEADER_MAX_LENGTH)" + where);
  }
  if (x.over_budget && x.unconnected)
    return failure::of(
        transport_error::connect_timeout,
        "no connection within the attempt's share of the deadline" + where + "; nothing was sent");
  if (x.over_budget)
    return failure::of(transport_error::read_timeout,
                       "the attempt's share of the deadline ran out while reading" + where);
  if (x.not_http) return not_http(where);
  switch (x.error) {
    case Error::Connection:
      if (!x.host.empty() && !detail::host_resolves(x.host))
        return failure::of(transport_error::dns_failure, "host name did not resolve" + where);
      return failure::of(transport_error::connection_refused,
                         "connection refused or unreachable" + where);
    case Error::ConnectionTimeout:
      return failure::of(transport_error::connect_timeout, "no connection within " +
                                                               detail::millis(x.connect_timeout) +
                                                               where + "; nothing was sent");
    case Error::Read:
      // A stall ends when the read timeout runs out; a dropped connection ends sooner.
      if (x.idle + std::chrono::milliseconds(1) >= x.read_timeout)
        return failure::of(transport_error::read_timeout,
                           "no complete answer within " + detail::millis(x.read_timeout) + where);
      return failure::of(transport_error::connection_reset,
                         "connection closed before the answer was complete" + where);
    case Error::Write:
      return failure::of(transport_error::connection_reset,
                         "connection closed while sending the request" + where);
    case Error::Canceled:
      return failure::of(transport_error::other, "request cancelled by the client" + where);
    case Error::SSLConnection:
      return failure::of(transport_error::other, "TLS handshake failed" + where);
    case Error::SSLLoadingCerts:
    case Error::SSLServerVerification:
      // A certificate problem does not pass by retrying; another provider may still work.
      return failure::of(error_kind::unknown, "TLS certificate verification failed" + where);
    case Error::Compression:
      return failure::of(error_kind::invalid_response,
                         "response could not be decompressed" + where);
    case Error::ExceedRedirectCount:
      return failure::of(error_kind::unknown, "too many redirects" + where);
    case Error::BindIPAddress:
    case Error::UnsupportedMultipartBoundaryChars:
      // Local setup problems (the interface to bind, the request built): permanent here.
      return failure::of(error_kind::unknown, "request could not be made" + where);
    default:
      return failure::of(transport_error::other,
                         "request failed: " + ::httplib::to_string(x.error) + where);
  }
}

// Sends `req` with `client`: timeouts from this attempt (never past the call's deadline), the
// whole exchange bounded by the attempt's budget and its cancel token in every phase (connecting,
// status line, headers, body: the shared socket watchdog shuts the socket down when either ends),
// and the response held to `bounds`. `host` (optional) lets a failed connection be reported as a
// DNS failure when that is what it was. The client's socket-options hook is this attempt's while
// it runs (and empty afterwards); the client must not run another request at the same time.
inline outcome<response> httplib_send(::httplib::Client& client, const attempt_context& ctx,
                                      ::httplib::Request req, const timeouts& wanted = {},
                                      const std::string& host = {}, const limits& bounds = {}) {
  using clock = std::chrono::steady_clock;
  bounds.validate();
  for (const auto& h : req.headers)  // cpp-httplib sends header values as they are
    if (!header_safe(h.first) || !header_safe(h.second)) return unsafe_header(h.first);
  const timeouts t = attempt_timeouts(ctx, wanted);
  httplib_exchange x;
  x.host = host;
  x.bounds = bounds;
  x.connect_timeout = detail::whole_ms(t.connect);
  x.read_timeout = detail::whole_ms(t.read);
  client.set_connection_timeout(x.connect_timeout);
  client.set_read_timeout(x.read_timeout);
  client.set_write_timeout(x.read_timeout);

  // httplib's read timeout applies to each read; the budget bounds the whole exchange.
  // (Capped at a year, so that the watchdog's expiry cannot overflow.)
  const duration budget =
      std::min(attempt_budget(ctx, wanted), duration(std::chrono::hours(24 * 365)));
  const clock::time_point start = clock::now();
  clock::time_point last = start;
  socket_watchdog& watchdog = shared_socket_watchdog();
  socket_watch watch;
  watch.expiry = start + budget;
  watch.ctx = &ctx;
  watch.max_header_bytes = bounds.max_headers;
  watch.max_response_bytes = response_ceiling(bounds);

  auto alive = [&]() -> bool {
    last = clock::now();
    if (ctx.cancelled()) {
      x.cancelled = true;
      return false;
    }
    if (last - start > budget) {
      x.over_budget = true;
      return false;
    }
    return true;
  };
  response r;
  req.response_handler = [&](const ::httplib::Response& head) {
    watchdog.headers_done(watch);
    // Status line and header lines as sent, less line-end spacing httplib drops.
    std::size_t size = head.version.size() + head.reason.size() + 9;
    for (const auto& h : head.headers) size += h.first.size() + h.second.size() + 4;
    if (size > bounds.max_headers) {
      x.headers_over = true;
      return false;
    }
    return alive();
  };
  req.content_receiver = [&](const char* data, std::size_t n, std::uint64_t, std::uint64_t) {
    if (n > bounds.max_body - r.body.size()) {
      x.body_over = true;
      return false;
    }
    r.body.append(data, n);
    return alive();
  };

  ::httplib::Response res;
  ::httplib::Error error = ::httplib::Error::Success;
  bool ok = false;
  if (client.is_socket_open()) {  // a kept-alive connection this attempt may reuse
    watch.reused_fd = detail::dup_socket(client.socket());
    // Fail closed: an attempt the watchdog cannot end could outlive the call's deadline.
    if (watch.reused_fd < 0) return httplib_unwatched(errno != 0 ? errno : EBADF, host);
    const long long read = detail::bytes_read_from(watch.reused_fd);
    watch.reused_baseline = read > 0 ? static_cast<std::uint64_t>(read) : 0;
  }
  try {
    watchdog.add(watch);  // inside: remove() below closes the dup when add() throws
    client.set_socket_options([&](socket_t fd) { watchdog.opened(watch, fd); });
    const detail::sigpipe_held held;
    ok = client.send(req, res, error);
  } catch (...) {
    client.set_socket_options(nullptr);
    watchdog.remove(watch);
    throw;
  }
  client.set_socket_options(nullptr);  // the hook points into this call
  const socket_watchdog::summary seen = watchdog.remove(watch);
  if (seen.dup_error != 0) return httplib_unwatched(seen.dup_error, host);
  if (seen.verdict == watch_verdict::cancelled) x.cancelled = true;
  if (seen.verdict == watch_verdict::over_budget) {
    x.over_budget = true;
    x.unconnected = !seen.connected;
  }
  if (seen.verdict == watch_verdict::headers_over) x.headers_over = true;
  if (seen.verdict == watch_verdict::body_over) x.body_over = true;
  // A verdict fails the attempt even when httplib saw success: the shutdown ends a body without
  // a length the way the server's own close would, and what came is not all there is.
  if (!ok || seen.verdict != watch_verdict::none) {
    x.error = error;
    x.idle = clock::now() - last;
    // The server sent bytes, yet no status line was read from them. (More than one: the
    // kernel counts the server's closing FIN as a byte received.)
    x.not_http = error == ::httplib::Error::Read && res.version.empty() && seen.bytes_read > 1;
    // httplib refuses a header line longer than its limit as a failed read; what it read
    // tells that from a connection cut short.
    x.line_over = error == ::httplib::Error::Read && !res.version.empty() && !watch.headers_done &&
                  seen.bytes_read > static_cast<long long>(CPPHTTPLIB_HEADER_MAX_LENGTH);
    return httplib_failure(x);
  }
  r.status = res.status;
  r.headers.reserve(res.headers.size());
  for (auto& h : res.headers) r.headers.emplace_back(h.first, h.second);
  return r;
}

// A base URL with its client: `post(ctx, "/chat/completions", body, headers)` sends to the base
// path plus the endpoint. The client is there for settings of your own (CA file, proxy); the
// timeouts are set again by every attempt.
class httplib_endpoint {
 public:
  explicit httplib_endpoint(std::string_view url, timeouts wanted = {}, limits bounds = {})
      : url_(base_url::parse(url)),
        wanted_((wanted.validate(), wanted)),
        bounds_((bounds.validate(), bounds)),
        client_(std::make_unique<::httplib::Client>(url_.origin())) {}

  outcome<response> post(const attempt_context& ctx, std::string_view endpoint, std::string body,
                         ::httplib::Headers headers = {},
                         const std::string& content_type = "application/json") {
    ::httplib::Request req;
    req.method = "POST";
    req.path = url_.path + std::string(endpoint);
    req.headers = std::move(headers);
    if (!req.has_header("Content-Type")) req.headers.emplace("Content-Type", content_type);
    req.body = std::move(body);
    return httplib_send(*client_, ctx, std::move(req), wanted_, url_.host, bounds_);
  }

  ::httplib::Client& client() noexcept { return *client_; }
  const base_url& url() const noexcept { return url_; }
  const timeouts& wanted_timeouts() const noexcept { return wanted_; }
  const limits& response_limits() const noexcept { return bounds_; }

 private:
  base_url url_;
  timeouts wanted_;
  limits bounds_;
  std::unique_ptr<::httplib::Client> client_;  // httplib::Client is not copyable
};

}  // namespace failover::http
