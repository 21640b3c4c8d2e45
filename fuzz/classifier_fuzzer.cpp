// Fuzzes the default classifier (failover/core/classifier.hpp) over arbitrary status, provider
// code, transport error, headers, message and user overrides, checking the rules the README
// promises: the message is never read, routing kinds are never retried, x-should-retry overrides
// only transience, the precedence kind > transport > code > status holds, server waits are
// validated, a thrown failure classifies like a returned one, and no credential survives in the
// message.
#include <fuzzer/FuzzedDataProvider.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <failover/core/classifier.hpp>

#include "fuzz_check.hpp"

namespace {

using failover::error_kind;
using failover::transport_error;

constexpr std::string_view header_names[] = {"Retry-After",   "retry-after-ms", "x-should-retry",
                                             "RETRY-AFTER",   "Retry-After-Ms", "X-Should-Retry",
                                             "authorization", "x-api-key"};
constexpr std::string_view known_codes[] = {
    "context_length_exceeded", "content_policy_violation", "content_filter", "insufficient_quota",
    "rate_limit_exceeded",     "overloaded_error",         "api_error",      "invalid_api_key",
    "model_not_found",         "invalid_request_error",    "my_gateway_busy"};
constexpr int known_statuses[] = {200, 400, 401, 403, 404, 408, 409, 422, 429, 500, 503, 529, 599};

error_kind any_kind(FuzzedDataProvider& in) {
  return static_cast<error_kind>(in.ConsumeIntegralInRange(0, failover::error_kind_count - 1));
}

bool is_routing(error_kind k) {
  return k == error_kind::content_policy || k == error_kind::context_window;
}

// A credential in one of the forms the redactor promises to mask, with fuzzed text around it. The
// secret is made of characters the fuzzer's own text is unlikely to repeat by chance.
std::string with_credential(FuzzedDataProvider& in, std::string& secret) {
  static constexpr std::string_view forms[] = {"Bearer ",
                                               "bearer ",
                                               "Basic ",
                                               "api_key=",
                                               "x-api-key: ",
                                               "token: ",
                                               "secret=",
                                               "password = ",
                                               "sk-",
                                               "Authorization: Token ",
                                               "authorization:\tBot ",
                                               "Authorization: Digest response=\"",
                                               "Authorization: AWS4-HMAC-SHA256 Signature=",
                                               "{\\\"api_key\\\":\\\"",
                                               "?key="};
  // At least 16 characters: a shorter "sk-" word is not taken for a key ("sk-learn").
  secret = "Zq9" + std::to_string(in.ConsumeIntegral<std::uint32_t>()) + "Xw";
  secret.resize(18, 'k');
  const std::string before = in.ConsumeRandomLengthString(40);
  const std::string_view form = in.PickValueInArray(forms);
  const std::string after = in.ConsumeRandomLengthString(40);
  return before + " " + std::string(form) + secret + " " + after;
}

std::size_t count(std::string_view hay, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t at = hay.find(needle); at != std::string_view::npos;
       at = hay.find(needle, at + 1))
    ++n;
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const failover::wall_time now =
      failover::wall_time{} +
      std::chrono::duration_cast<failover::wall_time::duration>(std::chrono::seconds(
          in.ConsumeIntegralInRange<std::int64_t>(0, 7'258'118'400)));  // 1970 .. 2200

  // User overrides, and a model of them: the last setting for a status or code wins.
  failover::classifier classifier;
  std::map<int, failover::classification> status_rules;
  std::map<std::string, failover::classification> code_rules;
  for (int n = in.ConsumeIntegralInRange(0, 3); n > 0; --n) {
    const bool by_status = in.ConsumeBool();
    const int status =
        in.ConsumeBool() ? in.PickValueInArray(known_statuses) : in.ConsumeIntegral<int>();
    const std::string code = in.ConsumeBool() ? std::string(in.PickValueInArray(known_codes))
                                              : in.ConsumeRandomLengthString(24);
    const failover::classification rule{any_kind(in), in.ConsumeBool()};
    if (by_status) {
      classifier.on_status(status, rule.kind, rule.transient);
      status_rules[status] = rule;
    } else {
      classifier.on_code(code, rule.kind, rule.transient);
      code_rules[code] = rule;
    }
  }

  failover::failure f;
  if (in.ConsumeBool())
    f.status = in.ConsumeBool() ? in.PickValueInArray(known_statuses) : in.ConsumeIntegral<int>();
  f.code = in.ConsumeBool() ? std::string(in.PickValueInArray(known_codes))
                            : in.ConsumeRandomLengthString(24);
  if (in.ConsumeIntegralInRange(0, 3) == 0)
    f.transport = static_cast<transport_error>(in.ConsumeIntegralInRange(0, 6));
  if (in.ConsumeIntegralInRange(0, 7) == 0) f.kind = any_kind(in);
  for (int n = in.ConsumeIntegralInRange(0, 4); n > 0; --n) {
    const std::string name = in.ConsumeBool() ? std::string(in.PickValueInArray(header_names))
                                              : in.ConsumeRandomLengthString(16);
    const std::string value = in.ConsumeRandomLengthString(40);
    f.header(name, value);
    // Only the three classification headers are kept, whatever the case of their names; a wait
    // header sent again keeps its earlier values, one per line, before the new one.
    auto ends_with = [&value](const std::string& kept) {
      return kept.size() >= value.size() &&
             kept.compare(kept.size() - value.size(), value.size(), value) == 0;
    };
    if (failover::failure::iequals(name, "retry-after")) FUZZ_CHECK(ends_with(f.retry_after));
    if (failover::failure::iequals(name, "retry-after-ms")) FUZZ_CHECK(ends_with(f.retry_after_ms));
    if (failover::failure::iequals(name, "x-should-retry")) FUZZ_CHECK(f.should_retry == value);
  }
  std::string secret;
  const bool planted = in.ConsumeBool();
  f.message = planted ? with_credential(in, secret) : in.ConsumeRemainingBytesAsString();

  const failover::error e = classifier.classify(f, now);
  const failover::classification v = classifier.verdict(f);

  // The verdict decides the kind; only x-should-retry may change whether it is transient.
  FUZZ_CHECK(static_cast<int>(e.kind) < failover::error_kind_count);
  FUZZ_CHECK(e.kind == v.kind);
  const std::string_view should = failover::detail::trim(f.should_retry);
  if (is_routing(e.kind)) {
    FUZZ_CHECK(!e.transient);
  } else if (failover::failure::iequals(should, "true")) {
    FUZZ_CHECK(e.transient);
  } else if (failover::failure::iequals(should, "false")) {
    FUZZ_CHECK(!e.transient);
  } else {
    FUZZ_CHECK(e.transient == v.transient);
  }

  // Precedence: a kind the reporter set, then a transport error, then the provider code (user
  // rules, then the default table), then the status (user rules, then the default table).
  failover::classification expected{error_kind::unknown, false};
  if (f.kind) {
    expected = {*f.kind, failover::default_transient(*f.kind)};
  } else if (f.transport == transport_error::connect_timeout) {
    expected = {error_kind::connect_timeout, true};
  } else if (f.transport == transport_error::read_timeout) {
    expected = {error_kind::read_timeout, true};
  } else if (f.transport != transport_error::none) {
    expected = {error_kind::connection_error, true};
  } else if (!f.code.empty() && code_rules.count(f.code)) {
    expected = code_rules[f.code];
  } else if (auto c = f.code.empty() ? std::nullopt : failover::classify_code(f.code)) {
    expected = *c;
  } else if (f.status && status_rules.count(*f.status)) {
    expected = status_rules[*f.status];
  } else if (f.status) {
    expected = {failover::kind_of_status(*f.status),
                failover::default_transient(failover::kind_of_status(*f.status))};
  }
  FUZZ_CHECK(v.kind == expected.kind && v.transient == expected.transient);

  // The facts are carried over; the server's wait is the validated one.
  FUZZ_CHECK(e.status == f.status && e.code == failover::detail::redact(f.code));
  FUZZ_CHECK(e.retry_after == failover::server_wait(f.retry_after_ms, f.retry_after, now));
  FUZZ_CHECK(!e.retry_after || *e.retry_after == failover::duration::max() ||
             (*e.retry_after >= failover::duration::zero() &&
              *e.retry_after <= failover::max_plausible_server_wait));

  // The message is never read: any other message gives the same verdict.
  failover::failure quiet = f;
  quiet.message = "timeout; rate limit; please retry; context_length_exceeded; 503";
  const failover::error q = classifier.classify(quiet, now);
  FUZZ_CHECK(q.kind == e.kind && q.transient == e.transient && q.retry_after == e.retry_after);

  // No credential survives redaction. Copies of the secret in the fuzzed text around it may, when
  // nothing marks them as one, but the planted one must not be among them.
  if (planted) {
    const std::size_t around = count(f.message, secret) - 1;
    FUZZ_CHECK_SHOW(count(e.message, secret) <= around, "message", f.message);
    // The provider's code is scrubbed the same way.
    failover::failure coded = f;
    coded.code = f.message;
    FUZZ_CHECK_SHOW(count(classifier.classify(coded, now).code, secret) <= around, "code",
                    coded.code);
  }
  // Redaction is stable: masking the masked text again changes nothing.
  if (failover::detail::redact(e.message) != e.message) fuzz::show("message", f.message);
  FUZZ_CHECK_SHOW(failover::detail::redact(e.message) == e.message, "redacted", e.message);

  // A thrown failure classifies like a returned one and keeps the exception.
  if (in.remaining_bytes() == 0 && f.message.size() % 8 == 0) {  // now and then: throwing is slow
    const failover::error t = classifier.classify(std::make_exception_ptr(f), now);
    FUZZ_CHECK(t.kind == e.kind && t.transient == e.transient && t.message == e.message &&
               t.retry_after == e.retry_after && t.exception);
    // An unmapped exception is permanent and its text is not copied.
    const failover::error u =
        classifier.classify(std::make_exception_ptr(std::runtime_error(f.message)), now);
    const failover::error blank =
        classifier.classify(std::make_exception_ptr(std::runtime_error("")), now);
    FUZZ_CHECK(u.kind == error_kind::unknown && !u.transient && u.exception);
    FUZZ_CHECK(u.message == blank.message);
  }
  return 0;
}
