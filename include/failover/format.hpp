// fmt formatters for the error model and traces: `fmt::print("{}\n", result.trace())` prints one
// readable line per attempt, with the wait that followed it and why each model was left.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "failover/core/backoff.hpp"
#include "failover/core/decision.hpp"
#include "failover/core/error.hpp"
#include "failover/core/outcome.hpp"
#include "failover/detail/saturate.hpp"

namespace failover {

// "0ms", "12ms", "1.5ms", "2.41s": short, and exact enough to read a backoff from.
inline std::string format_duration(duration d) {
  const double ms = std::chrono::duration<double, std::milli>(d).count();
  if (ms < 0.05) return "0ms";
  if (ms < 999.95) {  // below that, one decimal of milliseconds does not round up to "1000.0ms"
    const auto whole = static_cast<double>(static_cast<long long>(ms));
    return ms == whole ? fmt::format("{}ms", static_cast<long long>(ms))
                       : fmt::format("{:.1f}ms", ms);
  }
  return fmt::format("{:.2f}s", ms / 1000.0);
}

}  // namespace failover

template <>
struct fmt::formatter<failover::error_kind> : fmt::formatter<fmt::string_view> {
  template <class Ctx>
  auto format(failover::error_kind k, Ctx& ctx) const -> decltype(ctx.out()) {
    const auto s = failover::to_string(k);
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

template <>
struct fmt::formatter<failover::stop_reason> : fmt::formatter<fmt::string_view> {
  template <class Ctx>
  auto format(failover::stop_reason r, Ctx& ctx) const -> decltype(ctx.out()) {
    const auto s = failover::to_string(r);
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

template <>
struct fmt::formatter<failover::wait_reason> : fmt::formatter<fmt::string_view> {
  template <class Ctx>
  auto format(failover::wait_reason r, Ctx& ctx) const -> decltype(ctx.out()) {
    const auto s = failover::to_string(r);
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

template <>
struct fmt::formatter<failover::role> : fmt::formatter<fmt::string_view> {
  template <class Ctx>
  auto format(failover::role r, Ctx& ctx) const -> decltype(ctx.out()) {
    const auto s = failover::to_string(r);
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

template <>
struct fmt::formatter<failover::jitter> : fmt::formatter<fmt::string_view> {
  template <class Ctx>
  auto format(failover::jitter j, Ctx& ctx) const -> decltype(ctx.out()) {
    const auto s = failover::to_string(j);
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

// "rate_limited (transient; HTTP 429; code rate_limit_exceeded; server wait 2s; model gpt-4o):
// text"
template <>
struct fmt::formatter<failover::error> {
  constexpr auto parse(fmt::format_parse_context& ctx) -> decltype(ctx.begin()) {
    return ctx.begin();
  }
  template <class Ctx>
  auto format(const failover::error& e, Ctx& ctx) const -> decltype(ctx.out()) {
    auto out = fmt::format_to(ctx.out(), "{} ({}", e.kind, e.transient ? "transient" : "permanent");
    if (e.status) out = fmt::format_to(out, "; HTTP {}", *e.status);
    if (!e.code.empty()) out = fmt::format_to(out, "; code {}", e.code);
    if (e.retry_after)
      out = fmt::format_to(out, "; server wait {}", failover::format_duration(*e.retry_after));
    if (!e.model.empty()) out = fmt::format_to(out, "; model {}", e.model);
    out = fmt::format_to(out, ")");
    if (!e.message.empty()) out = fmt::format_to(out, ": {}", e.message);
    return out;
  }
};

// One line per attempt, then one line when a model is left, e.g.
//   #1 gpt-4o try 1 at +0ms (12ms): rate_limited (transient; HTTP 429) -> wait 2.41s (server)
//   #2 gpt-4o try 2 at +2.42s (9ms): ok
template <>
struct fmt::formatter<failover::trace> {
  constexpr auto parse(fmt::format_parse_context& ctx) -> decltype(ctx.begin()) {
    return ctx.begin();
  }
  template <class Ctx>
  auto format(const failover::trace& t, Ctx& ctx) const -> decltype(ctx.out()) {
    auto out = ctx.out();
    const auto& a = t.attempts();
    for (std::size_t i = 0; i < a.size(); ++i) {
      const failover::attempt_record& r = a[i];
      if (i > 0) out = fmt::format_to(out, "\n");
      out =
          fmt::format_to(out, "#{} {} try {} at +{} ({}): ", i + 1, r.model, r.attempt,
                         failover::format_duration(r.start), failover::format_duration(r.elapsed));
      if (r.skipped) {
        out = fmt::format_to(out, "skipped: circuit open (until +{})",
                             failover::format_duration(failover::detail::sat_add(
                                 r.start, r.error().retry_after.value_or(failover::duration{}))));
        if (r.why_wait == failover::wait_reason::circuit)
          out = fmt::format_to(out, "; every model is open -> wait {} (circuit)",
                               failover::format_duration(r.wait));
        else if (i + 1 < a.size() && a[i + 1].entry != r.entry)
          out = fmt::format_to(out, "; falling back to {} ({} fallback)", a[i + 1].model,
                               a[i + 1].role);
        continue;
      }
      if (r.ok) {
        out = fmt::format_to(out, "ok");
        if (r.role == failover::role::content_policy)
          out = fmt::format_to(out, " [served by a content-policy fallback]");
        continue;
      }
      out = fmt::format_to(out, "{}", r.error());
      if (r.why_wait != failover::wait_reason::none)
        out =
            fmt::format_to(out, " -> wait {} ({})", failover::format_duration(r.wait), r.why_wait);
      if (r.stop != failover::stop_reason::none) {
        out = fmt::format_to(out, " -> gave up on {}: {}", r.model, r.stop);
        if (i + 1 < a.size() && a[i + 1].entry != r.entry)
          out = fmt::format_to(out, "; falling back to {} ({} fallback)", a[i + 1].model,
                               a[i + 1].role);
      }
    }
    if (a.size() == 0) out = fmt::format_to(out, "(no attempt was made)");
    return out;
  }
};
