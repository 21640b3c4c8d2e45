// The error model: what a callable reports when a call fails (`failure`, raw facts) and what the
// classifier makes of it (`error`, a verdict with a kind). Traces and results carry `error`.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace failover {

// One duration type everywhere: nanoseconds keep retry-after-ms fractions and still span 292 years.
using duration = std::chrono::nanoseconds;

// Every way a model call can fail. Kinds are facts about the failure; whether a kind is worth a
// retry is the classifier's verdict (error::transient), and a server header may overrule it.
enum class error_kind : std::uint8_t {
  rate_limited,       // 429
  server_error,       // 500, 502, 503, 504, other 5xx
  overloaded,         // 529
  request_timeout,    // 408
  connect_timeout,    // no connection was made: nothing was sent, always safe to retry
  read_timeout,       // sent, no complete answer: the provider may still be working (and billing)
  connection_error,   // refused, reset, DNS
  bad_request,        // 400, 422: the same request fails everywhere
  unauthorized,       // 401
  forbidden,          // 403
  not_found,          // 404 (unknown model, wrong route)
  content_policy,     // the model refused on policy grounds
  context_window,     // the input is too long for this model
  invalid_response,   // a body that cannot be understood
  cancelled,          // the caller's token was cancelled
  deadline_exceeded,  // the call's deadline ran out (or the next wait would cross it)
  circuit_open,       // not called: shared health says this model is down (circuit breaker)
  unknown,            // anything else, including unmapped exceptions
};

inline constexpr int error_kind_count = static_cast<int>(error_kind::unknown) + 1;

constexpr std::string_view to_string(error_kind k) noexcept {
  switch (k) {
    case error_kind::rate_limited:
      return "rate_limited";
    case error_kind::server_error:
      return "server_error";
    case error_kind::overloaded:
      return "overloaded";
    case error_kind::request_timeout:
      return "request_timeout";
    case error_kind::connect_timeout:
      return "connect_timeout";
    case error_kind::read_timeout:
      return "read_timeout";
    case error_kind::connection_error:
      return "connection_error";
    case error_kind::bad_request:
      return "bad_request";
    case error_kind::unauthorized:
      return "unauthorized";
    case error_kind::forbidden:
      return "forbidden";
    case error_kind::not_found:
      return "not_found";
    case error_kind::content_policy:
      return "content_policy";
    case error_kind::context_window:
      return "context_window";
    case error_kind::invalid_response:
      return "invalid_response";
    case error_kind::cancelled:
      return "cancelled";
    case error_kind::deadline_exceeded:
      return "deadline_exceeded";
    case error_kind::circuit_open:
      return "circuit_open";
    case error_kind::unknown:
      return "unknown";
  }
  return "unknown";
}

// How a request failed below HTTP. Adapters map their client's error codes onto these.
enum class transport_error : std::uint8_t {
  none,
  connect_timeout,     // no connection within the connect timeout
  read_timeout,        // connected and sent, no complete answer in time
  connection_refused,  // nobody listening
  connection_reset,    // the peer dropped the connection (possibly mid-response)
  dns_failure,         // the host name did not resolve
  other,               // any other transport failure
};

// Tokens a provider says a request used (OpenAI `usage`, Anthropic `usage`, Gemini
// `usageMetadata`). A field the provider did not send is 0; `total` is as sent, or the sum.
struct token_usage {
  long long prompt = 0;
  long long completion = 0;
  long long total = 0;
};

// What a callable reports when its call failed: raw, unclassified facts. Only the fields that
// classification reads are kept, so no request header (and no API key) can end up here.
struct failure {
  std::optional<int> status;  // HTTP status, if a response arrived
  std::string code;           // provider's structured error code/type, if any
  std::string message;        // for people; never read by the classifier
  transport_error transport = transport_error::none;
  std::optional<error_kind> kind;    // set when the reporter already knows the kind
  std::string retry_after;           // raw `Retry-After` value(s), one per line ("" = absent)
  std::string retry_after_ms;        // raw `retry-after-ms` value(s), one per line ("" = absent)
  std::string should_retry;          // raw `x-should-retry` header value ("" = absent)
  std::exception_ptr exception;      // when the failure was an exception
  std::optional<token_usage> usage;  // what the failed request was billed, if the body said

  static failure http(int status_code, std::string provider_code = {}, std::string text = {}) {
    failure f;
    f.status = status_code;
    f.code = std::move(provider_code);
    f.message = std::move(text);
    return f;
  }
  static failure of(transport_error t, std::string text = {}) {
    failure f;
    f.transport = t;
    f.message = std::move(text);
    return f;
  }
  static failure of(error_kind k, std::string text = {}) {
    failure f;
    f.kind = k;
    f.message = std::move(text);
    return f;
  }

  // Keeps the response headers classification reads (case-insensitive names); drops the rest.
  // A wait header sent more than once keeps every value, one per line (a field value never
  // holds a line break), so that server_wait() can honour the longest; x-should-retry keeps the
  // last.
  failure& header(std::string_view name, std::string_view value) & {
    auto keep_all = [value](std::string& field) {
      if (!field.empty()) field += '\n';
      field.append(value);
    };
    if (iequals(name, "retry-after")) {
      keep_all(retry_after);
    } else if (iequals(name, "retry-after-ms")) {
      keep_all(retry_after_ms);
    } else if (iequals(name, "x-should-retry")) {
      should_retry.assign(value);
    }
    return *this;
  }
  failure&& header(std::string_view name, std::string_view value) && {
    return std::move(header(name, value));
  }
  failure& with_code(std::string c) & {
    code = std::move(c);
    return *this;
  }
  failure&& with_code(std::string c) && { return std::move(with_code(std::move(c))); }
  failure& with_message(std::string m) & {
    message = std::move(m);
    return *this;
  }
  failure&& with_message(std::string m) && { return std::move(with_message(std::move(m))); }

  static bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      auto lower = [](char c) {
        return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      };
      if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
  }
};

// The classified failure: what went wrong, whether it is worth retrying, and the context.
struct error {
  error_kind kind = error_kind::unknown;
  bool transient = false;               // worth retrying the same model
  std::optional<int> status;            // HTTP status, if any
  std::string code;                     // provider's structured error code, if any
  std::string message;                  // human text, redacted of credentials
  std::optional<duration> retry_after;  // the wait the server asked for, if any (validated)
  std::string model;                    // the model that failed ("" before a model was called)
  std::exception_ptr exception;         // the exception a callable threw, if any
  std::optional<token_usage> usage;     // tokens the failed attempt was billed, if reported

  // Rethrows the callable's original exception, when there was one.
  void rethrow_if_exception() const {
    if (exception) std::rethrow_exception(exception);
  }
};

}  // namespace failover
