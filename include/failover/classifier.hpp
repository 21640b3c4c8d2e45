// The ErrorClassifier policy: turns a callable's raw `failure` (or a thrown exception) into a
// classified `error`. It reads structured fields only (status, provider code, headers), never text.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "failover/error.hpp"
#include "failover/retry_after.hpp"

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

namespace detail {

// Masks credentials that a careless message might carry: the value after a word ending in "key",
// "token", "secret", "password", "signature" or "credential", after "bearer"/"basic", the whole
// credential of an `Authorization` header whatever its scheme (Token, Bot, Digest, AWS4-HMAC-SHA256
// ...: its parameters too), and any `sk-` style key anywhere. Quotes may be JSON-escaped (`\"`). A
// value runs to the next space, quote or delimiter, so unusual characters in it do not end the
// mask early. A defence in depth (failures keep no request header at all); it prefers masking too
// much to too little, but keeps ordinary words ("Basic tier", "the bearer of") that no credential
// follows.
inline std::string redact(const std::string& text) {
  const std::size_t n = text.size();
  auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
  auto is_word = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  };
  auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  // A quote, plain or JSON-escaped: its length (0: none).
  auto quote_at = [&](std::size_t k) -> std::size_t {
    if (k < n && (text[k] == '"' || text[k] == '\'')) return 1;
    if (k + 1 < n && text[k] == '\\' && (text[k + 1] == '"' || text[k + 1] == '\'')) return 2;
    return 0;
  };
  auto ends_value = [&](std::size_t k) {
    const char c = text[k];
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '&' || c == ',' || c == ';' ||
           c == ')' || c == ']' || c == '}' || c == '<' || c == '>' || quote_at(k) != 0;
  };
  auto at = [&](std::size_t k, std::string_view lit) {
    if (k + lit.size() > n) return false;
    for (std::size_t m = 0; m < lit.size(); ++m)
      if (lower(text[k + m]) != lit[m]) return false;
    return true;
  };
  auto ends_with = [](std::string_view w, std::string_view suffix) {
    return w.size() >= suffix.size() &&
           failure::iequals(w.substr(w.size() - suffix.size()), suffix);
  };
  auto is_scheme = [](std::string_view w) {
    return failure::iequals(w, "bearer") || failure::iequals(w, "basic");
  };
  auto is_authorization = [&](std::string_view w) { return ends_with(w, "authorization"); };
  auto is_marker = [&](std::string_view w) {
    return is_scheme(w) || is_authorization(w) || ends_with(w, "key") || ends_with(w, "token") ||
           ends_with(w, "secret") || ends_with(w, "password") || ends_with(w, "signature") ||
           ends_with(w, "credential");
  };
  // After a bare "Bearer"/"Basic" only a credential-looking value is masked, so that "Basic tier"
  // keeps its meaning: a long one, or one with a digit, a symbol or an inner capital.
  auto looks_like_credential = [](std::string_view v) {
    if (v.size() >= 16) return true;
    for (std::size_t k = 0; k < v.size(); ++k) {
      const char c = v[k];
      const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
      if (!letter || (k > 0 && c >= 'A' && c <= 'Z')) return true;
    }
    return false;
  };
  // An `sk-` key: "sk-" and at least 16 key characters, wherever it stands (even inside a word,
  // as in "Bearer%20sk-...").
  auto sk_key_end = [&](std::size_t k) -> std::size_t {
    if (!at(k, "sk-")) return 0;
    std::size_t e = k + 3;
    while (e < n && is_word(text[e])) ++e;
    return e - (k + 3) >= 16 ? e : 0;
  };
  auto word_end = [&](std::size_t k) {
    while (k < n && is_word(text[k])) ++k;
    return k;
  };
  constexpr std::string_view mask = "[redacted]";
  auto is_mask_at = [&](std::size_t k) { return text.compare(k, mask.size(), mask) == 0; };

  // Where the credential of an `Authorization` value starting at `k` ends. `quote` is the quote
  // the value opened with (0: none; `escaped`: as `\"`). The credential is one token68
  // ("Bearer x"), or a list of auth-params (`a="x", b=y`) whose quoted values may hold spaces;
  // it never runs past the value's closing quote or the end of the line.
  auto credential_end = [&](std::size_t k, char quote, bool escaped) {
    bool param = false;        // the current token is `name=value`
    std::size_t in_quote = 0;  // inside a param's quoted value: its quote's length
    while (k < n && text[k] != '\r' && text[k] != '\n') {
      if (quote && (escaped ? (text[k] == '\\' && k + 1 < n && text[k + 1] == quote)
                            : (text[k] == quote && text[k - 1] != '\\')))
        break;
      if (const std::size_t q = quote_at(k)) {
        if (in_quote) {
          if (q == in_quote) in_quote = 0;
        } else if (text[k - 1] == '=') {
          in_quote = q;
        } else if (!quote) {
          break;  // an unquoted value ends at a quote that opens no param
        }
        k += q;
        continue;
      }
      if (in_quote) {
        ++k;
        continue;
      }
      if (text[k] == '=' && k + 1 < n && text[k + 1] != '=' &&
          (quote_at(k + 1) || !ends_value(k + 1)))
        param = true;
      if (is_space(text[k]) || text[k] == ',' || (!quote && text[k] == '&')) {
        std::size_t next = k;
        while (next < n && is_space(text[next])) ++next;
        if (!param || next >= n || text[next] != ',') break;  // a param list goes on after ','
        ++next;
        while (next < n && is_space(text[next])) ++next;
        k = next;
        param = false;
        continue;
      }
      ++k;
    }
    return k;
  };

  std::string out;
  out.reserve(n);
  std::size_t i = 0;
  while (i < n) {
    if (const std::size_t e = sk_key_end(i)) {
      out += mask;
      i = e;
      continue;
    }
    if (!is_word(text[i])) {
      out += text[i++];
      continue;
    }
    const std::size_t end = word_end(i);
    std::string_view word = std::string_view(text).substr(i, end - i);
    // Copy the word up to any `sk-` key inside it; the loop masks the key next.
    std::size_t cut = end;
    for (std::size_t k = i; k < end; ++k)
      if (sk_key_end(k)) {
        cut = k;
        break;
      }
    out.append(text, i, cut - i);
    i = cut;
    if (cut != end) continue;
    // A marker masks the value after it; a value that is itself a scheme ("Authorization: Bearer
    // x") is kept and masks what follows it.
    bool after_marker = false;  // `word` is the value of a marker: what follows it is masked
    while (is_marker(word)) {
      std::size_t value = i;
      bool assigns = false, spaced = false;
      char quote = 0;  // the last quote after the assignment: the one the value opened with
      bool escaped = false;
      for (;;) {
        if (value < n && (text[value] == ':' || text[value] == '=')) {
          assigns = true;
          quote = 0;
          ++value;
        } else if (value < n && is_space(text[value])) {
          spaced = true;
          ++value;
        } else if (const std::size_t q = quote_at(value)) {
          spaced = true;
          if (assigns) quote = text[value + q - 1], escaped = q == 2;
          value += q;
        } else if (at(value, "%20") || at(value, "%3a") || at(value, "%3d")) {
          assigns = assigns || !at(value, "%20");
          spaced = true;
          value += 3;
        } else {
          break;
        }
      }
      if (assigns && is_authorization(word)) {
        // "Authorization: <scheme> <credential>": the scheme, any word, is kept. A value of one
        // token is masked whole; one that holds a mask already is left as it is.
        const std::size_t scheme_end = word_end(value);
        std::size_t rest = scheme_end;
        while (rest < n && (is_space(text[rest]) || at(rest, "%20")))
          rest += is_space(text[rest]) ? 1 : 3;
        std::size_t stop = credential_end(rest, quote, escaped);
        // "Authorization: password = x": a marker assigned a value where the scheme would be is
        // no scheme ("Token x" still is one); the marker's own rule masks what is assigned.
        const std::string_view first_word =
            std::string_view(text).substr(value, scheme_end - value);
        std::size_t after_first = scheme_end;
        while (after_first < n && is_space(text[after_first])) ++after_first;
        const bool first_assigned =
            after_first < n && (text[after_first] == '=' || text[after_first] == ':');
        if (first_assigned && is_marker(first_word) && !is_scheme(first_word) &&
            !is_authorization(first_word)) {
          out.append(text, i, scheme_end - i);
          i = scheme_end;
          word = first_word;
          continue;
        }
        // A "scheme" that is itself a key (no scheme was sent: "Authorization: sk-...") is no
        // scheme: the whole value is the credential.
        bool scheme_is_key = scheme_end - value > 40;
        for (std::size_t k = value; k < scheme_end && !scheme_is_key; ++k)
          scheme_is_key = sk_key_end(k) != 0;
        if (scheme_end == value || rest == scheme_end || rest == stop || scheme_is_key) {
          rest = value;
          stop = credential_end(value, quote, escaped);
        }
        out.append(text, i, rest - i);
        i = rest;
        if (rest == stop || is_mask_at(rest)) break;
        // "Authorization: Bearer password = x": a marker that ends the credential masks the value
        // after it too ("password=x" is one param, masked whole).
        std::size_t last = stop;
        while (last > rest && !is_space(text[last - 1]) && text[last - 1] != ',') --last;
        const std::size_t last_end = word_end(last);
        const std::string_view last_word = std::string_view(text).substr(last, last_end - last);
        if (is_marker(last_word) && (stop == last_end || stop == last_end + 1)) {
          out += mask;
          i = last_end;
          word = last_word;
          after_marker = true;
          continue;
        }
        out += mask;
        i = stop;
        break;
      }
      std::size_t value_end = value;
      while (value_end < n && !ends_value(value_end)) ++value_end;
      if (value == i || value_end == value) break;
      const std::string_view candidate = std::string_view(text).substr(value, value_end - value);
      // Masked already (or holding a mask): masking again must change nothing.
      if (candidate.find("[redacted") != std::string_view::npos) break;  // value ends before "]"
      const std::size_t scheme_end = word_end(value);
      const std::string_view next_word = std::string_view(text).substr(value, scheme_end - value);
      if (is_scheme(next_word) && (assigns || spaced)) {  // "Authorization: Bearer x"
        out.append(text, i, scheme_end - i);
        i = scheme_end;
        word = next_word;
        after_marker = true;
        continue;
      }
      // "api_key= token: x": a value that is itself a marker assigned a value is masked, and so
      // is the value it is assigned (keeping it visible would let a token ending in "key" out).
      std::size_t after = scheme_end;
      while (after < n && (is_space(text[after]) || quote_at(after)))
        after += is_space(text[after]) ? 1 : quote_at(after);
      if (is_marker(next_word) && ((after < n && (text[after] == ':' || text[after] == '=')) ||
                                   at(after, "%3a") || at(after, "%3d"))) {
        out.append(text, i, value - i);
        out += mask;
        i = scheme_end;
        word = next_word;
        after_marker = true;
        continue;
      }
      // "key: v", "key=v", "Bearer v"; a header-style "x-api-key v" only for a long value.
      const bool masks = assigns || (spaced && candidate.size() >= 16) ||
                         (is_scheme(word) && (after_marker || looks_like_credential(candidate)));
      if (!masks) break;
      out.append(text, i, value - i);
      out += mask;
      i = value_end;
      break;
    }
  }
  return out;
}

}  // namespace detail

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
    exception_rules_.push_back(
        [f = std::move(to_failure)](const std::exception_ptr& p) -> std::optional<failure> {
          try {
            std::rethrow_exception(p);
          } catch (const E& e) {
            return f(e);
          } catch (...) {
            return std::nullopt;
          }
        });
    return *this;
  }
  template <class E>
  classifier& on_exception(error_kind kind) {
    return on_exception<E>([kind](const E&) { return failure::of(kind); });
  }

  // Classifies a reported failure. `now` is the wall time HTTP-date waits are measured from.
  error classify(const failure& f, wall_time now) const {
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

  // Classifies an exception thrown by a callable. A thrown `failover::failure` is classified like
  // a returned one.
  error classify(const std::exception_ptr& p, wall_time now) const {
    for (const auto& rule : exception_rules_) {
      if (auto f = rule(p)) {
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

  classification verdict(const failure& f) const noexcept {
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

 private:
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
  std::vector<std::function<std::optional<failure>(const std::exception_ptr&)>> exception_rules_;
};

}  // namespace failover
