// What the HTTP adapters share: a received response, the timeouts one attempt may use, a parsed
// base URL, and the step from a non-2xx response to a `failure`. Needs no HTTP library.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "failover/core/context.hpp"
#include "failover/core/error.hpp"
#include "failover/core/retry_after.hpp"
#include "failover/detail/saturate.hpp"

namespace failover::http {

// A response that arrived in full, whatever its status. Transport problems never produce one.
struct response {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // response headers, as received
  std::string body;

  bool ok() const noexcept { return status >= 200 && status <= 299; }

  // The first header with this name (case-insensitive), or "" when absent. A name sent more than
  // once has more values: values() gives them all, and server_wait() reads the wait headers the
  // way the classifier does, so neither depends on which copy came first.
  std::string_view header(std::string_view name) const noexcept {
    for (const auto& h : headers)
      if (failure::iequals(h.first, name)) return h.second;
    return {};
  }

  // Every value of the headers with this name (case-insensitive), in the order received.
  std::vector<std::string_view> values(std::string_view name) const {
    std::vector<std::string_view> all;
    for (const auto& h : headers)
      if (failure::iequals(h.first, name)) all.emplace_back(h.second);
    return all;
  }

  // The wait the server asked for, as the classifier reads it from this response: the longest
  // valid `retry-after-ms`, else the longest valid `Retry-After` (see failover::server_wait).
  std::optional<duration> server_wait(wall_time now) const {
    failure f;
    for (const auto& h : headers) f.header(h.first, h.second);
    return failover::server_wait(f.retry_after_ms, f.retry_after, now);
  }
};

// How long one attempt may wait: `connect` to establish the connection (nothing sent yet), `read`
// for the answer once connected. Both are shrunk to the call's remaining time per attempt.
struct timeouts {
  duration connect = std::chrono::seconds(10);
  duration read = std::chrono::seconds(60);

  void validate() const {
    if (connect <= duration::zero())
      throw std::invalid_argument("failover::http::timeouts: connect must be > 0");
    if (read <= duration::zero())
      throw std::invalid_argument("failover::http::timeouts: read must be > 0");
  }
};

// How much of a response one attempt may hold, so that a server sending without end cannot take
// the process's memory: `max_body` bytes of body (after decompression), `max_headers` bytes of
// status line and headers. A response over either is an invalid_response naming the limit.
struct limits {
  std::size_t max_body = std::size_t{16} << 20;
  std::size_t max_headers = std::size_t{64} << 10;

  void validate() const {
    if (max_body == 0) throw std::invalid_argument("failover::http::limits: max_body must be > 0");
    if (max_headers == 0)
      throw std::invalid_argument("failover::http::limits: max_headers must be > 0");
  }
};

namespace detail {
inline std::string size_text(std::size_t bytes) {
  if (bytes % (std::size_t{1} << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  if (bytes % (std::size_t{1} << 10) == 0) return std::to_string(bytes >> 10) + " KiB";
  return std::to_string(bytes) + " bytes";
}
}  // namespace detail

// The failures for a response over a limit, the same through every adapter.
inline failure body_over_limit(const limits& l) {
  return failure::of(error_kind::invalid_response, "response body exceeds the " +
                                                       detail::size_text(l.max_body) +
                                                       " limit (http::limits::max_body)");
}
inline failure headers_over_limit(const limits& l) {
  return failure::of(error_kind::invalid_response, "response headers exceed the " +
                                                       detail::size_text(l.max_headers) +
                                                       " limit (http::limits::max_headers)");
}

// Whether a request header line is safe to send: no CR, LF or NUL, which would end the line early
// and let the rest (a key read from a file with its newline, say) become a header of its own.
inline bool header_safe(std::string_view text) noexcept {
  return text.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// The failure for a request header that is not safe to send. It names the header by the token
// characters its name starts with (at most 64), never by its value (usually a key) nor by what
// follows a line break in the name; a header with no name is "(unnamed header)". Permanent, and
// another entry (another key) may still work.
inline failure unsafe_header(std::string_view name) {
  auto token = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  };
  std::size_t n = 0;
  while (n < name.size() && n < 64 && token(name[n])) ++n;
  const std::string named =
      n == 0 ? std::string("(unnamed header)") : "'" + std::string(name.substr(0, n)) + "'";
  return failure::of(error_kind::unknown,
                     "request header " + named + " holds a line break or NUL; not sent");
}

// A reply that did not start with an HTTP status line: the same kind through every adapter.
inline failure not_http(const std::string& where) {
  return failure::of(error_kind::invalid_response,
                     "the reply had no valid HTTP status line" + where);
}

// The timeouts for this attempt: each one cut to the time left before the call's deadline. Never
// below one millisecond, because clients read zero as "wait forever" or round it to "fail now".
// And never above 24 days (max_client_timeout): clients wait in milliseconds held in an int
// (poll(2)), so a longer timeout, duration::max() included, would wrap to "no time" or "forever".
inline constexpr duration max_client_timeout = std::chrono::hours(24 * 24);

inline timeouts attempt_timeouts(const attempt_context& ctx, const timeouts& wanted) {
  wanted.validate();
  constexpr duration floor = std::chrono::milliseconds(1);
  timeouts t;
  t.connect = std::clamp(ctx.timeout(wanted.connect), floor, max_client_timeout);
  t.read = std::clamp(ctx.timeout(wanted.read), floor, max_client_timeout);
  return t;
}

// The longest a whole attempt may take (connect, send and read together): the wanted connect plus
// read time (a sum that saturates), cut to the time left before the call's deadline.
inline duration attempt_budget(const attempt_context& ctx, const timeouts& wanted) {
  wanted.validate();
  return std::clamp(ctx.timeout(failover::detail::sat_add(wanted.connect, wanted.read)),
                    duration(std::chrono::milliseconds(1)), max_client_timeout);
}

// A non-2xx response as a failure: the status and the headers the classifier reads. Provider error
// bodies add the error code (see <failover/adapters/openai.hpp>).
inline failure status_failure(const response& r, std::string message = {}) {
  failure f = failure::http(r.status, {}, std::move(message));
  for (const auto& h : r.headers) f.header(h.first, h.second);
  return f;
}

// "https://api.example.com:8443/v1" split into what clients need. Any user name, password, query
// or fragment is rejected: credentials belong in headers, and URLs end up in logs.
struct base_url {
  std::string scheme;  // "http" or "https"
  std::string host;    // a name, an IPv4 address, or an IPv6 address without brackets
  int port = 0;        // explicit, or 80 / 443 from the scheme
  std::string path;    // "" or "/v1" (no trailing slash)

  // "http://host:port" (brackets around IPv6), the form clients take to open connections.
  std::string origin() const {
    const bool v6 = host.find(':') != std::string::npos;
    return scheme + "://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
  }
  std::string url(std::string_view endpoint) const {
    return origin() + path + std::string(endpoint);
  }

  static base_url parse(std::string_view text) {
    // The text is not quoted: a mistyped URL may still hold a password or a key ("https:/user:
    // key@host", "https://host:key/v1"), and messages end up in logs.
    auto bad = [](const char* why) {
      return std::invalid_argument(std::string("failover::http::base_url: ") + why);
    };
    base_url u;
    const std::size_t sep = text.find("://");
    if (sep == std::string_view::npos) throw bad("missing scheme (http:// or https://)");
    u.scheme = std::string(text.substr(0, sep));
    for (auto& c : u.scheme)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (u.scheme != "http" && u.scheme != "https") throw bad("scheme must be http or https");
    std::string_view rest = text.substr(sep + 3);
    if (rest.find_first_of("?#") != std::string_view::npos)
      throw bad("no query or fragment allowed");
    const std::size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    std::string_view path =
        slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
    if (authority.find('@') != std::string_view::npos)
      throw bad("no user or password allowed (send keys in headers)");
    std::string_view port_text;
    if (!authority.empty() && authority.front() == '[') {
      const std::size_t close = authority.find(']');
      if (close == std::string_view::npos) throw bad("unclosed '[' in the host");
      u.host = std::string(authority.substr(1, close - 1));
      std::string_view after = authority.substr(close + 1);
      if (!after.empty()) {
        if (after.front() != ':') throw bad("junk after the IPv6 address");
        port_text = after.substr(1);
        if (port_text.empty()) throw bad("empty port");
      }
    } else {
      const std::size_t colon = authority.rfind(':');
      u.host = std::string(authority.substr(0, colon));
      if (colon != std::string_view::npos) {
        port_text = authority.substr(colon + 1);
        if (port_text.empty()) throw bad("empty port");
      }
    }
    if (u.host.empty()) throw bad("missing host");
    if (port_text.empty()) {
      u.port = u.scheme == "https" ? 443 : 80;
    } else {
      int port = 0;
      for (char c : port_text) {
        if (c < '0' || c > '9' || port > 65535) throw bad("port must be a number from 1 to 65535");
        port = port * 10 + (c - '0');
      }
      if (port < 1 || port > 65535) throw bad("port must be a number from 1 to 65535");
      u.port = port;
    }
    while (!path.empty() && path.back() == '/') path.remove_suffix(1);
    u.path = std::string(path);
    return u;
  }
};

}  // namespace failover::http
