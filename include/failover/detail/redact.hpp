// Redaction of credentials in the text a failure carries: the classifier runs every code and
// message through it, so that an API key quoted by a server never reaches an error or a trace.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "failover/core/error.hpp"
#include "failover/detail/failure_path.hpp"

namespace failover::detail {

// Masks credentials that a careless message might carry: the value after a word ending in "key",
// "token", "secret", "password", "signature" or "credential", after "bearer"/"basic", the whole
// credential of an `Authorization` header whatever its scheme (Token, Bot, Digest, AWS4-HMAC-SHA256
// ...: its parameters too), and any `sk-` style key anywhere. Quotes may be JSON-escaped (`\"`). A
// value runs to the next space, quote or delimiter, so unusual characters in it do not end the
// mask early. A defence in depth (failures keep no request header at all); it prefers masking too
// much to too little, but keeps ordinary words ("Basic tier", "the bearer of") that no credential
// follows.
FAILOVER_FAILURE_PATH FAILOVER_DECL std::string redact(const std::string& text);

#if FAILOVER_DEFINE_COMPILED
FAILOVER_DECL std::string redact(const std::string& text) {
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
        // A "scheme" that is itself a key (no scheme was sent: "Authorization: sk-...") is no
        // scheme: the whole value is the credential.
        bool scheme_is_key = scheme_end - value > 40;
        for (std::size_t k = value; k < scheme_end && !scheme_is_key; ++k)
          scheme_is_key = sk_key_end(k) != 0;
        // "Authorization: password = x": a marker assigned a value where the scheme would be is
        // no scheme ("Token x" still is one); the marker's own rule masks what is assigned. A key
        // that happens to end in a marker ("sk-...key=") is no such marker: it is copied nowhere.
        const std::string_view first_word =
            std::string_view(text).substr(value, scheme_end - value);
        std::size_t after_first = scheme_end;
        while (after_first < n && is_space(text[after_first])) ++after_first;
        const bool first_assigned =
            after_first < n && (text[after_first] == '=' || text[after_first] == ':');
        if (first_assigned && !scheme_is_key && is_marker(first_word) && !is_scheme(first_word) &&
            !is_authorization(first_word)) {
          out.append(text, i, scheme_end - i);
          i = scheme_end;
          word = first_word;
          continue;
        }
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
#endif  // FAILOVER_DEFINE_COMPILED

}  // namespace failover::detail
