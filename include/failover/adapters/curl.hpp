// The libcurl adapter: performs one request on a curl easy handle under the attempt's timeouts
// and turns what came back into an `outcome<http::response>`, naming each transport failure.
#pragma once

#include <curl/curl.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "failover/adapters/http.hpp"
#include "failover/context.hpp"
#include "failover/error.hpp"
#include "failover/outcome.hpp"

namespace failover::http {

// What is known about a failed curl transfer.
struct curl_exchange {
  CURLcode code = CURLE_OK;
  long os_errno = 0;          // CURLINFO_OS_ERRNO: tells a refusal from an unreachable network
  bool request_sent = false;  // CURLINFO_REQUEST_SIZE > 0: a timeout after this is a read timeout
  bool cancelled = false;     // the attempt's cancel token fired
  duration connect_timeout{};
  duration budget{};  // the whole attempt's limit (CURLOPT_TIMEOUT_MS)
};

namespace detail {
inline std::string curl_millis(duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + "ms";
}
}  // namespace detail

// The failure for a failed transfer. Messages use curl's generic texts, never the URL or a header.
inline failure curl_failure(const curl_exchange& x) {
  const std::string what = std::string(" (curl: ") + curl_easy_strerror(x.code) + ")";
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
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
      return failure::of(error_kind::invalid_response, "the reply was not readable HTTP" + what);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_TOO_MANY_REDIRECTS:
      // Configuration problems: a retry cannot fix them, another provider may still work.
      return failure::of(error_kind::unknown, "request could not be made" + what);
    default:
      return failure::of(transport_error::other, "request failed" + what);
  }
}

namespace detail {

struct curl_state {
  response r;
  const attempt_context* ctx = nullptr;
  bool cancelled = false;
};

inline std::size_t curl_on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* s = static_cast<curl_state*>(user);
  s->r.body.append(data, size * n);
  return size * n;
}

inline std::size_t curl_on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* s = static_cast<curl_state*>(user);
  std::string_view line(data, size * n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.substr(0, 5) == "HTTP/") {
    s->r.headers.clear();  // a new response (after a 100 Continue): only the last one counts
  } else if (const std::size_t colon = line.find(':'); colon != std::string_view::npos) {
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    s->r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  return size * n;
}

inline int curl_on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* s = static_cast<curl_state*>(user);
  if (s->ctx->cancelled()) {
    s->cancelled = true;
    return 1;  // non-zero aborts the transfer
  }
  return 0;
}

struct slist_deleter {
  void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};

}  // namespace detail

// POSTs `body` to `url` on `easy` (a handle you keep, so connections are reused): the connect
// timeout and the whole transfer's limit come from this attempt, never past the call's deadline,
// and cancellation is honoured during the transfer. `headers` are "Name: value" lines.
// Options this sets are cleared again afterwards, so the handle holds no pointer into this call.
inline outcome<response> curl_post(CURL* easy, const attempt_context& ctx, const std::string& url,
                                   const std::string& body,
                                   const std::vector<std::string>& headers = {},
                                   const timeouts& wanted = {},
                                   std::string_view content_type = "application/json") {
  if (easy == nullptr) throw std::invalid_argument("failover::http::curl_post: easy is null");
  const timeouts t = attempt_timeouts(ctx, wanted);
  curl_exchange x;
  x.connect_timeout = t.connect;
  x.budget = attempt_budget(ctx, wanted);

  std::unique_ptr<curl_slist, detail::slist_deleter> list;
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
  append("Expect:");  // empty: skips the 100-continue round trip curl adds to larger bodies

  auto ms = [](duration d) {
    return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
  };
  detail::curl_state state;
  state.ctx = &ctx;
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_POST, 1L);
  curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, std::max(ms(t.connect), 1L));
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, std::max(ms(x.budget), 1L));
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);  // timeouts without SIGALRM: safe in threads
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &detail::curl_on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &state);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &detail::curl_on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &state);
  curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, &detail::curl_on_progress);
  curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &state);
  curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);

  const CURLcode rc = curl_easy_perform(easy);

  long status = 0;
  long request_size = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &request_size);
  curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &x.os_errno);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, static_cast<curl_slist*>(nullptr));
  curl_easy_setopt(easy, CURLOPT_POSTFIELDS, static_cast<const char*>(nullptr));
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, static_cast<curl_write_callback>(nullptr));
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, static_cast<void*>(nullptr));
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, static_cast<curl_write_callback>(nullptr));
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, static_cast<void*>(nullptr));
  curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, static_cast<curl_xferinfo_callback>(nullptr));
  curl_easy_setopt(easy, CURLOPT_XFERINFODATA, static_cast<void*>(nullptr));
  curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 1L);

  if (rc != CURLE_OK) {
    x.code = rc;
    x.request_sent = request_size > 0;
    x.cancelled = state.cancelled;
    return curl_failure(x);
  }
  state.r.status = static_cast<int>(status);
  return std::move(state.r);
}

}  // namespace failover::http
