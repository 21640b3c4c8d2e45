// What both libcurl adapters share: one request set up on an easy handle, the body and header
// callbacks that hold a response to `http::limits`, and the step from a finished transfer to an
// `outcome<response>`, so the blocking and the multi adapter name every failure alike.
#pragma once

#include <curl/curl.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "failover/adapters/http.hpp"
#include "failover/core/clock.hpp"
#include "failover/core/context.hpp"
#include "failover/core/error.hpp"
#include "failover/core/outcome.hpp"

namespace failover::http {

// What is known about a failed curl transfer.
struct curl_exchange {
  CURLcode code = CURLE_OK;
  long os_errno = 0;          // CURLINFO_OS_ERRNO: tells a refusal from an unreachable network
  bool request_sent = false;  // CURLINFO_REQUEST_SIZE > 0: a timeout after this is a read timeout
  bool cancelled = false;     // the attempt's cancel token fired
  bool body_over = false;     // the body passed limits::max_body (the adapter stopped reading)
  bool headers_over = false;  // the headers passed limits::max_headers
  duration connect_timeout{};
  duration budget{};  // the whole attempt's limit (CURLOPT_TIMEOUT_MS)
  limits bounds{};
};

namespace detail {
inline std::string curl_millis(duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + "ms";
}
}  // namespace detail

// The failure for a failed transfer. Messages use curl's generic texts, never the URL or a header.
inline failure curl_failure(const curl_exchange& x) {
  const std::string what = std::string(" (curl: ") + curl_easy_strerror(x.code) + ")";
  if (x.body_over) return body_over_limit(x.bounds);
  if (x.headers_over) return headers_over_limit(x.bounds);
  switch (x.code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return failure::of(transport_error::dns_failure, "host name did not resolve" + what);
    case CURLE_COULDNT_CONNECT:
      if (x.os_errno == ECONNREFUSED)
        return failure::of(transport_error::connection_refused, "connection refused" + what);
      return failure::of(transport_error::other, "could not connect" + what);
    case CURLE_OPERATION_TIMEDOUT:
      if (!x.request_sent)
        return failure::of(transport_error::connect_timeout,
                           "no connection within " + detail::curl_millis(x.connect_timeout) +
                               "; nothing was sent" + what);
      return failure::of(transport_error::read_timeout, "no complete answer within the attempt's " +
                                                            detail::curl_millis(x.budget) + what);
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_HTTP2_STREAM:
      return failure::of(transport_error::connection_reset,
                         "connection closed before the answer was complete" + what);
    case CURLE_ABORTED_BY_CALLBACK:
      if (x.cancelled) return failure::of(error_kind::cancelled, "cancelled during the request");
      return failure::of(transport_error::other, "transfer aborted" + what);
    case CURLE_FILESIZE_EXCEEDED:  // CURLOPT_MAXFILESIZE: the announced length is too long
      return body_over_limit(x.bounds);
    case CURLE_WEIRD_SERVER_REPLY:
      return not_http(what);
    case CURLE_UNSUPPORTED_PROTOCOL:
      // After the request went out this is curl refusing an HTTP/0.9 reply: bytes without a
      // status line. Before, it is the URL's scheme: configuration.
      if (x.request_sent) return not_http(what);
      return failure::of(error_kind::unknown, "request could not be made" + what);
    case CURLE_BAD_CONTENT_ENCODING:
      return failure::of(error_kind::invalid_response, "the reply was not readable HTTP" + what);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_URL_MALFORMAT:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_FAILED_INIT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_UNKNOWN_OPTION:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_FUNCTION_NOT_FOUND:
    case CURLE_INTERFACE_FAILED:
    case CURLE_OUT_OF_MEMORY:
      // Configuration or local setup problems: nothing was wrong with the server, so a retry
      // cannot fix them, and another provider may still work.
      return failure::of(error_kind::unknown, "request could not be made" + what);
    default:
      return failure::of(transport_error::other, "request failed" + what);
  }
}

namespace detail {

// One transfer's response as it arrives, and what its callbacks saw.
struct curl_state {
  response r;
  const cancel_token* cancel = nullptr;  // polled by the progress callback (blocking adapter)
  limits bounds;
  std::size_t header_bytes = 0;
  bool cancelled = false;
  bool body_over = false;
  bool headers_over = false;
  bool headers_done = false;  // the blank line after the last response's headers came
  // What a callback threw (no memory for the body, say). An exception must not pass through
  // libcurl's C frames, so the callback keeps it and aborts the transfer; curl_result rethrows it.
  std::exception_ptr thrown;
};

// One header line, counted and kept; 0 (abort) past max_headers. May throw (no memory).
inline std::size_t curl_take_header(curl_state& s, std::string_view line) {
  const std::size_t taken = line.size();
  s.header_bytes += taken;  // every response's lines, a 100 Continue's too
  if (s.header_bytes > s.bounds.max_headers) {
    s.headers_over = true;
    return 0;
  }
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.substr(0, 5) == "HTTP/") {
    s.r.headers.clear();  // a new response (after a 100 Continue): only the last one counts
    s.headers_done = false;
  } else if (line.empty()) {
    s.headers_done = true;
  } else if (const std::size_t colon = line.find(':'); colon != std::string_view::npos) {
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    s.r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  return taken;
}

// Returning fewer bytes than given makes curl end the transfer (CURLE_WRITE_ERROR).
inline std::size_t curl_on_body(char* data, std::size_t size, std::size_t n, void* user) noexcept {
  auto* s = static_cast<curl_state*>(user);
  if (size * n > s->bounds.max_body - s->r.body.size()) {
    s->body_over = true;
    return 0;
  }
  try {
    s->r.body.append(data, size * n);
  } catch (...) {
    s->thrown = std::current_exception();
    return 0;
  }
  return size * n;
}

inline std::size_t curl_on_header(char* data, std::size_t size, std::size_t n,
                                  void* user) noexcept {
  auto* s = static_cast<curl_state*>(user);
  try {
    return curl_take_header(*s, std::string_view(data, size * n));
  } catch (...) {
    s->thrown = std::current_exception();
    return 0;
  }
}

inline int curl_on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) noexcept {
  auto* s = static_cast<curl_state*>(user);
  if (s->cancel->cancelled()) {
    s->cancelled = true;
    return 1;  // non-zero aborts the transfer
  }
  return 0;
}

struct slist_deleter {
  void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};
using curl_slist_ptr = std::unique_ptr<curl_slist, slist_deleter>;

// The failure for the first request header that is not safe to send, if any. A line with no
// ':' is all value: it has no name to quote.
inline std::optional<failure> curl_unsafe_header(const std::vector<std::string>& headers) {
  for (const auto& h : headers)
    if (!header_safe(h))
      return unsafe_header(h.find(':') == std::string::npos
                               ? std::string_view()
                               : std::string_view(h).substr(0, h.find(':')));
  return std::nullopt;
}

// The request's header lines as curl takes them: the caller's, a Content-Type unless one was
// given, and an empty Expect (no 100-continue round trip, which curl adds to larger bodies).
inline curl_slist_ptr curl_header_list(const std::vector<std::string>& headers,
                                       std::string_view content_type) {
  curl_slist_ptr list;
  auto append = [&list](const char* line) {
    curl_slist* grown = curl_slist_append(list.get(), line);
    if (grown == nullptr) throw std::bad_alloc();
    static_cast<void>(list.release());  // the same list, now one line longer
    list.reset(grown);
  };
  bool has_type = false;
  for (const auto& h : headers) {
    if (h.size() >= 13 && failure::iequals(std::string_view(h).substr(0, 13), "content-type:"))
      has_type = true;
    append(h.c_str());
  }
  if (!has_type) append(("Content-Type: " + std::string(content_type)).c_str());
  append("Expect:");
  return list;
}

// The exchange's limits for one attempt, before anything is sent.
inline curl_exchange curl_plan(const attempt_context& ctx, const timeouts& wanted,
                               const limits& bounds) {
  curl_exchange x;
  x.connect_timeout = attempt_timeouts(ctx, wanted).connect;
  x.budget = attempt_budget(ctx, wanted);
  x.bounds = bounds;
  return x;
}

// Sets one POST on `easy`: `body` and `list` must outlive the transfer, `s` receives the response.
// The progress callback is installed only for a token that can be cancelled.
inline void curl_arm(CURL* easy, curl_state& s, const std::string& url, std::string_view body,
                     curl_slist* list, const curl_exchange& x) {
  auto ms = [](duration d) {
    return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
  };
  s.bounds = x.bounds;
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_POST, 1L);
  curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, std::max(ms(x.connect_timeout), 1L));
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, std::max(ms(x.budget), 1L));
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);  // timeouts without SIGALRM: safe in threads
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &curl_on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &s);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &curl_on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &s);
  if (s.cancel != nullptr && s.cancel->can_be_cancelled()) {
    curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, &curl_on_progress);
    curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &s);
    curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
  }
  // Refuses at once a body whose announced length is over the limit; the write callback
  // bounds the rest (no length, chunked, or a length that lies).
  curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(x.bounds.max_body));
}

// What a transfer that ended with `rc` produced. Clears first what curl_arm set, so `easy` holds
// no pointer into the transfer (options back to libcurl's defaults, the method to GET; the URL,
// timeouts and NOSIGNAL stay), then rethrows what a callback threw, or classifies.
inline outcome<response> curl_result(CURL* easy, CURLcode rc, curl_state& s, curl_exchange x) {
  long status = 0;
  long request_size = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &request_size);
  curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &x.os_errno);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, static_cast<curl_slist*>(nullptr));
  curl_easy_setopt(easy, CURLOPT_POSTFIELDS, static_cast<const char*>(nullptr));
  curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t{-1});
  curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);  // the method back to GET: no POST without a body
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, static_cast<curl_write_callback>(nullptr));
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, static_cast<void*>(nullptr));
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, static_cast<curl_write_callback>(nullptr));
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, static_cast<void*>(nullptr));
  curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, static_cast<curl_xferinfo_callback>(nullptr));
  curl_easy_setopt(easy, CURLOPT_XFERINFODATA, static_cast<void*>(nullptr));
  curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 1L);
  curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, curl_off_t{0});

  if (s.thrown) std::rethrow_exception(s.thrown);
  if (rc != CURLE_OK) {
    x.code = rc;
    x.request_sent = request_size > 0;
    x.cancelled = s.cancelled;
    x.body_over = s.body_over;
    x.headers_over = s.headers_over;
    // libcurl keeps one header line in at most CURL_MAX_HTTP_HEADER bytes and reports a longer
    // one as out of memory, before the header callback could count it.
    if (rc == CURLE_OUT_OF_MEMORY && x.request_sent && !s.headers_done) {
      if (x.bounds.max_headers < CURL_MAX_HTTP_HEADER) return headers_over_limit(x.bounds);
      return failure::of(error_kind::invalid_response, "a response header line exceeds libcurl's " +
                                                           size_text(CURL_MAX_HTTP_HEADER) +
                                                           " limit (CURL_MAX_HTTP_HEADER)");
    }
    return curl_failure(x);
  }
  s.r.status = static_cast<int>(status);
  return std::move(s.r);
}

}  // namespace detail
}  // namespace failover::http
