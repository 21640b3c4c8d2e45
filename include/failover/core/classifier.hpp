// The ErrorClassifier policy: turns a callable's raw `failure` (or a thrown exception) into a
// classified `error`. It reads structured fields only (status, provider code, headers), never text.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "failover/core/error.hpp"
#include "failover/core/retry_after.hpp"
#include "failover/detail/failure_path.hpp"
#include "failover/detail/redact.hpp"

namespace failover {

// The verdict a rule gives: which kind, and whether the same model is worth another try.
struct classification {
  error_kind kind = error_kind::unknown;
  bool transient = false;
};

// Whether a kind is worth retrying on the same model, before any header or user override.
// read_timeout is transient but the retrier bounds it separately (max_read_timeout_retries);
// invalid_response is transient because a garbled body is usually a proxy's or a cut stream's.
constexpr bool default_transient(error_kind k) noexcept {
  switch (k) {
    case error_kind::rate_limited:
    case error_kind::server_error:
    case error_kind::overloaded:
    case error_kind::request_timeout:
    case error_kind::connect_timeout:
    case error_kind::read_timeout:
    case error_kind::connection_error:
    case error_kind::invalid_response:
      return true;
    default:
      return false;
  }
}

// The default status table.
constexpr error_kind kind_of_status(int status) noexcept {
  switch (status) {
    case 408:
      return error_kind::request_timeout;
    case 429:
      return error_kind::rate_limited;
    case 529:
      return error_kind::overloaded;
    case 400:
    case 422:
      return error_kind::bad_request;
    case 401:
      return error_kind::unauthorized;
    case 403:
      return error_kind::forbidden;
    case 404:
      return error_kind::not_found;
    default:
      break;
  }
  if (status >= 500 && status <= 599) return error_kind::server_error;
  // A failure reported with a 2xx status had a body that could not be used.
  if (status >= 200 && status <= 299) return error_kind::invalid_response;
  return error_kind::unknown;  // other 4xx, 1xx, 3xx: permanent
}

// The default provider-code table (OpenAI-compatible `error.code`/`error.type`, Azure, Anthropic
// `error.type`, Gemini `error.status`). A provider's documented codes are listed so the kind holds
// when a gateway rewrites the status; codes that differ from the status sharpen it.
inline std::optional<classification> classify_code(std::string_view code) noexcept {
  struct row {
    std::string_view code;
    classification c;
  };
  static constexpr row rows[] = {
      {"context_length_exceeded", {error_kind::context_window, false}},
      {"content_policy_violation", {error_kind::content_policy, false}},
      {"content_filter", {error_kind::content_policy, false}},
      // Not sent by a provider as such: openai::read_chat's code for a structured refusal
      // (message.refusal), so that it routes as a refusal and is not retried.
      {"refusal", {error_kind::content_policy, false}},
      // A 429 that will not pass by waiting: the account is out of credit.
      {"insufficient_quota", {error_kind::rate_limited, false}},
      {"rate_limit_exceeded", {error_kind::rate_limited, true}},
      {"rate_limit_error", {error_kind::rate_limited, true}},
      {"overloaded_error", {error_kind::overloaded, true}},
      {"api_error", {error_kind::server_error, true}},
      {"authentication_error", {error_kind::unauthorized, false}},
      {"invalid_api_key", {error_kind::unauthorized, false}},
      {"permission_error", {error_kind::forbidden, false}},
      {"not_found_error", {error_kind::not_found, false}},
      {"model_not_found", {error_kind::not_found, false}},
      {"invalid_request_error", {error_kind::bad_request, false}},
      // Gemini (google.rpc status names, as its troubleshooting guide lists them).
      {"RESOURCE_EXHAUSTED", {error_kind::rate_limited, true}},
      {"INVALID_ARGUMENT", {error_kind::bad_request, false}},
      // A 400 that another provider would not give: the free tier is not offered in the caller's
      // region, or billing is off. Not a malformed request, so the chain falls back.
      {"FAILED_PRECONDITION", {error_kind::forbidden, false}},
      {"PERMISSION_DENIED", {error_kind::forbidden, false}},
      {"NOT_FOUND", {error_kind::not_found, false}},
      {"INTERNAL", {error_kind::server_error, true}},
      {"UNAVAILABLE", {error_kind::server_error, true}},
      {"DEADLINE_EXCEEDED", {error_kind::server_error, true}},
  };
  for (const auto& r : rows)
    if (r.code == code) return r.c;
  return std::nullopt;
}

// The default ErrorClassifier. Precedence, first match wins for the kind:
//   1. a kind the reporter set (failure::kind) or a transport error;
//   2. the provider code: the user's code overrides, then the default code table;
//   3. the status: the user's status overrides, then the default status table.
// Then `x-should-retry: true|false` overrides whether it is transient, except for the two routing
// kinds (content_policy, context_window), which are never retried on the same model.
class classifier {
 public:
  // Overrides one status code: its kind, and whether it is worth a retry.
  classifier& on_status(int status, error_kind kind, bool transient) {
    set(status_overrides_, status, {kind, transient});
    return *this;
  }
  classifier& on_status(int status, error_kind kind) {
    return on_status(status, kind, default_transient(kind));
  }
  // Overrides one provider error code.
  classifier& on_code(std::string code, error_kind kind, bool transient) {
    set(code_overrides_, std::move(code), {kind, transient});
    return *this;
  }
  classifier& on_code(std::string code, error_kind kind) {
    return on_code(std::move(code), kind, default_transient(kind));
  }

  // Maps an exception type a callable may throw. `F` is `failure(const E&)`; the first mapping
  // registered that matches wins. Unmapped exceptions become permanent `unknown` errors that keep
  // the exception_ptr, so the caller can rethrow them.
  template <class E, class F>
  classifier& on_exception(F to_failure) {
    static_assert(std::is_invocable_r_v<failure, F, const E&>,
                  "failover::classifier::on_exception<E>(f): f must be callable as "
                  "failure f(const E&)");
    exception_rules_.push_back(std::make_shared<const mapping<E, F>>(std::move(to_failure)));
    return *this;
  }
  template <class E>
  classifier& on_exception(error_kind kind) {
    return on_exception<E>([kind](const E&) { return failure::of(kind); });
  }

  // Classifies a reported failure. `now` is the wall time HTTP-date waits are measured from.
  FAILOVER_FAILURE_PATH FAILOVER_DECL error classify(const failure& f, wall_time now) const;

  // Classifies an exception thrown by a callable. A thrown `failover::failure` is classified like
  // a returned one.
  FAILOVER_FAILURE_PATH FAILOVER_DECL error classify(const std::exception_ptr& p,
                                                     wall_time now) const;

  // The kind of a reported failure and whether it is transient, before `x-should-retry`.
  FAILOVER_DECL classification verdict(const failure& f) const noexcept;

 private:
  // An on_exception mapping. Mappings never change once added, so copies of a classifier share
  // them; a virtual call rather than std::function keeps <functional> out of the front door.
  struct exception_rule {
    exception_rule() = default;
    exception_rule(const exception_rule&) = delete;
    exception_rule& operator=(const exception_rule&) = delete;
    virtual ~exception_rule() = default;
    virtual std::optional<failure> map(const std::exception_ptr& p) const = 0;
  };
  template <class E, class F>
  struct mapping final : exception_rule {
    explicit mapping(F f) : to_failure(std::move(f)) {}
    std::optional<failure> map(const std::exception_ptr& p) const override {
      try {
        std::rethrow_exception(p);
      } catch (const E& e) {
        return to_failure(e);
      } catch (...) {
        return std::nullopt;
      }
    }
    F to_failure;
  };

  template <class Key>
  static void set(std::vector<std::pair<Key, classification>>& rules, Key key, classification c) {
    for (auto& r : rules) {
      if (r.first == key) {
        r.second = c;
        return;
      }
    }
    rules.emplace_back(std::move(key), c);
  }

  std::vector<std::pair<int, classification>> status_overrides_;
  std::vector<std::pair<std::string, classification>> code_overrides_;
  std::vector<std::shared_ptr<const exception_rule>> exception_rules_;
};

#if FAILOVER_DEFINE_COMPILED
FAILOVER_DECL error classifier::classify(const failure& f, wall_time now) const {
  error e;
  const classification c = verdict(f);
  e.kind = c.kind;
  e.transient = c.transient;
  if (c.kind == error_kind::content_policy || c.kind == error_kind::context_window) {
    e.transient = false;  // whatever a user rule says: these route, never retry the same model
  } else {
    if (failure::iequals(detail::trim(f.should_retry), "true")) e.transient = true;
    if (failure::iequals(detail::trim(f.should_retry), "false")) e.transient = false;
  }
  e.status = f.status;
  e.code = detail::redact(f.code);  // a code may quote the key it rejects
  e.message = detail::redact(f.message);
  e.retry_after = server_wait(f.retry_after_ms, f.retry_after, now);
  e.exception = f.exception;
  e.usage = f.usage;
  return e;
}

FAILOVER_DECL error classifier::classify(const std::exception_ptr& p, wall_time now) const {
  for (const auto& rule : exception_rules_) {
    if (auto f = rule->map(p)) {
      if (!f->exception) f->exception = p;
      return classify(*f, now);
    }
  }
  try {
    std::rethrow_exception(p);
  } catch (const failure& f) {
    failure copy = f;
    copy.exception = p;
    return classify(copy, now);
  } catch (...) {
  }
  error e;
  e.kind = error_kind::unknown;
  e.transient = false;
  // The exception's text is not copied: it may quote a URL or header we cannot vet.
  e.message = "the callable threw an unmapped exception (kept in error::exception)";
  e.exception = p;
  return e;
}

FAILOVER_DECL classification classifier::verdict(const failure& f) const noexcept {
  if (f.kind) return {*f.kind, default_transient(*f.kind)};
  switch (f.transport) {
    case transport_error::none:
      break;
    case transport_error::connect_timeout:
      return {error_kind::connect_timeout, true};
    case transport_error::read_timeout:
      return {error_kind::read_timeout, true};
    default:
      return {error_kind::connection_error, true};
  }
  if (!f.code.empty()) {
    for (const auto& o : code_overrides_)
      if (o.first == f.code) return o.second;
    if (auto c = classify_code(f.code)) return *c;
  }
  if (f.status) {
    for (const auto& o : status_overrides_)
      if (o.first == *f.status) return o.second;
    const error_kind k = kind_of_status(*f.status);
    return {k, default_transient(k)};
  }
  return {error_kind::unknown, false};
}
#endif  // FAILOVER_DEFINE_COMPILED

}  // namespace failover
