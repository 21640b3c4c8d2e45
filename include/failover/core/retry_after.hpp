// Server-requested waits: `retry-after-ms` and `Retry-After` (delta-seconds or an RFC 9110
// HTTP-date in any of its three forms). Pure functions: the current wall time is an argument.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "failover/core/error.hpp"
#include "failover/detail/failure_path.hpp"

namespace failover {

using wall_time = std::chrono::system_clock::time_point;

// Waits longer than this are read as "not any time soon": they become duration::max(), which is
// above every max_server_wait a user would set, so the chain falls back at once. Below it a wait is
// kept as sent, and the retrier's max_server_wait decides whether to wait or to fall back. A
// larger wait never brings a client back sooner, however absurd it is.
inline constexpr duration max_plausible_server_wait = std::chrono::hours(24 * 365);

namespace detail {

constexpr bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

constexpr std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "12", "1.5", "0.25": non-negative decimal without sign or exponent, scaled to nanoseconds by
// `unit_ns` (1e9 for seconds, 1e6 for milliseconds). A value above the plausible bound, a
// thousand digits included, saturates to duration::max() instead of overflowing.
inline std::optional<duration> parse_decimal(std::string_view s, std::int64_t unit_ns) noexcept {
  s = trim(s);
  if (s.empty()) return std::nullopt;
  constexpr std::int64_t limit = std::int64_t{1} << 62;
  std::int64_t whole = 0;
  std::size_t i = 0;
  for (; i < s.size() && is_digit(s[i]); ++i) {
    if (whole < limit / 10)
      whole = whole * 10 + (s[i] - '0');
    else
      whole = limit;
  }
  const std::size_t int_digits = i;
  std::int64_t frac_ns = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    std::int64_t scale = unit_ns / 10;
    std::size_t frac_digits = 0;
    for (; i < s.size() && is_digit(s[i]); ++i, ++frac_digits) {
      frac_ns += (s[i] - '0') * scale;
      scale /= 10;
    }
    if (frac_digits == 0) return std::nullopt;  // "1."
  }
  if (i != s.size() || int_digits == 0) return std::nullopt;  // junk, sign, exponent, ".5"
  const std::int64_t max_units =
      std::chrono::duration_cast<duration>(max_plausible_server_wait).count() / unit_ns;
  if (whole > max_units) return duration::max();
  const duration d{whole * unit_ns + frac_ns};
  if (d > max_plausible_server_wait) return duration::max();
  return d;
}

// Days since 1970-01-01 of a proleptic Gregorian date (the well-known civil-from-days inverse).
constexpr std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

constexpr bool is_leap(std::int64_t y) noexcept {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

constexpr unsigned days_in_month(std::int64_t y, unsigned m) noexcept {
  constexpr unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return (m == 2 && is_leap(y)) ? 29 : days[m - 1];
}

// A small cursor over the date text; every reader fails softly.
struct date_cursor {
  std::string_view s;
  std::size_t i = 0;

  bool literal(std::string_view lit) noexcept {
    if (s.substr(i, lit.size()) != lit) return false;
    i += lit.size();
    return true;
  }
  bool number(std::size_t min_digits, std::size_t max_digits, int& out) noexcept {
    std::size_t n = 0;
    int v = 0;
    while (i < s.size() && is_digit(s[i]) && n < max_digits) {
      v = v * 10 + (s[i] - '0');
      ++i;
      ++n;
    }
    if (n < min_digits) return false;
    out = v;
    return true;
  }
  bool one_of(const std::string_view* names, int count, int& index) noexcept {
    for (int k = 0; k < count; ++k) {
      if (s.substr(i, names[k].size()) == names[k]) {
        // A short name must not be a prefix of a longer token ("Sun" in "Sunday").
        const std::size_t end = i + names[k].size();
        if (end < s.size() &&
            ((s[end] >= 'a' && s[end] <= 'z') || (s[end] >= 'A' && s[end] <= 'Z')))
          continue;
        i = end;
        index = k;
        return true;
      }
    }
    return false;
  }
  bool done() const noexcept { return i == s.size(); }
};

inline constexpr std::string_view short_days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
inline constexpr std::string_view long_days[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                                 "Friday", "Saturday", "Sunday"};
inline constexpr std::string_view months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

inline bool read_time(date_cursor& c, int& hh, int& mm, int& ss) noexcept {
  return c.number(2, 2, hh) && c.literal(":") && c.number(2, 2, mm) && c.literal(":") &&
         c.number(2, 2, ss) && hh <= 23 && mm <= 59 && ss <= 60;  // 60: a leap second
}

// Seconds since 1970 of a valid calendar date and time (years 1 to 9999), or nothing.
inline std::optional<std::int64_t> civil_seconds(std::int64_t y, int mon, int d, int hh, int mm,
                                                 int ss) noexcept {
  if (y < 1 || y > 9999 || mon < 1 || mon > 12 || d < 1 ||
      d > static_cast<int>(days_in_month(y, static_cast<unsigned>(mon))))
    return std::nullopt;
  const std::int64_t days =
      days_from_civil(y, static_cast<unsigned>(mon), static_cast<unsigned>(d));
  return days * 86400 + std::int64_t{hh} * 3600 + std::int64_t{mm} * 60 + std::int64_t{ss};
}

// A wall_time spans about 292 years each side of 1970 (nanoseconds in 64 bits).
inline constexpr std::int64_t wall_time_limit_seconds =
    std::chrono::duration_cast<std::chrono::seconds>(wall_time::duration::max()).count();

inline std::optional<wall_time> to_wall_time(std::optional<std::int64_t> secs) noexcept {
  // A date outside a wall_time's span cannot be held: converting it would overflow.
  if (!secs || *secs >= wall_time_limit_seconds || *secs <= -wall_time_limit_seconds)
    return std::nullopt;
  return wall_time{std::chrono::duration_cast<wall_time::duration>(std::chrono::seconds{*secs})};
}

// An HTTP-date (the three forms below) as seconds since 1970, whatever its year.
inline std::optional<std::int64_t> http_date_seconds(std::string_view text, wall_time now) noexcept;

}  // namespace detail

// An HTTP-date (RFC 9110 section 5.6.7) in any of its three forms, as seconds since 1970:
//   IMF-fixdate  "Sun, 06 Nov 1994 08:49:37 GMT"
//   RFC 850      "Sunday, 06-Nov-94 08:49:37 GMT"  (two-digit year resolved against `now`)
//   asctime      "Sun Nov  6 08:49:37 1994"
FAILOVER_FAILURE_PATH inline std::optional<std::int64_t> detail::http_date_seconds(
    std::string_view text, wall_time now) noexcept {
  using namespace detail;
  const std::string_view s = trim(text);
  int wd = 0, d = 0, mon = 0, y = 0, hh = 0, mm = 0, ss = 0;
  {  // IMF-fixdate
    date_cursor c{s};
    if (c.one_of(short_days, 7, wd) && c.literal(", ") && c.number(2, 2, d) && c.literal(" ") &&
        c.one_of(months, 12, mon) && c.literal(" ") && c.number(4, 4, y) && c.literal(" ") &&
        read_time(c, hh, mm, ss) && c.literal(" GMT") && c.done())
      return civil_seconds(y, mon + 1, d, hh, mm, ss);
  }
  {  // RFC 850
    date_cursor c{s};
    if (c.one_of(long_days, 7, wd) && c.literal(", ") && c.number(2, 2, d) && c.literal("-") &&
        c.one_of(months, 12, mon) && c.literal("-") && c.number(2, 2, y) && c.literal(" ") &&
        read_time(c, hh, mm, ss) && c.literal(" GMT") && c.done()) {
      // RFC 9110: a two-digit year more than 50 years in the future is the most recent past
      // year with the same last two digits.
      const auto now_days =
          std::chrono::duration_cast<std::chrono::hours>(now.time_since_epoch()).count() / 24;
      std::int64_t year_now = 1970 + now_days / 366;  // a lower bound; refine below
      while (days_from_civil(year_now + 1, 1, 1) <= now_days) ++year_now;
      std::int64_t full = (year_now / 100) * 100 + y;
      // The year is the one with these last two digits in (year_now - 50, year_now + 50].
      if (full > year_now + 50) full -= 100;
      if (full <= year_now - 50) full += 100;
      return civil_seconds(full, mon + 1, d, hh, mm, ss);
    }
  }
  {  // asctime: day of month is two characters, space-padded
    date_cursor c{s};
    if (c.one_of(short_days, 7, wd) && c.literal(" ") && c.one_of(months, 12, mon) &&
        c.literal(" ")) {
      if (c.i < s.size() && s[c.i] == ' ') {
        ++c.i;
        if (!c.number(1, 1, d)) return std::nullopt;
      } else if (!c.number(2, 2, d)) {
        return std::nullopt;
      }
      if (c.literal(" ") && read_time(c, hh, mm, ss) && c.literal(" ") && c.number(4, 4, y) &&
          c.done())
        return civil_seconds(y, mon + 1, d, hh, mm, ss);
    }
  }
  return std::nullopt;
}

// Parses an HTTP-date (see detail::http_date_seconds for the forms). Nothing for a malformed
// date, or one a wall_time cannot hold (before 1678 or after 2261).
inline std::optional<wall_time> parse_http_date(std::string_view text, wall_time now) noexcept {
  return detail::to_wall_time(detail::http_date_seconds(text, now));
}

// `Retry-After` as delta-seconds (integer or decimal) or an HTTP-date relative to `now`.
// Returns nothing for absent, negative or malformed values, and for dates that are not in the
// future (the server's wait is already over). A wait above max_plausible_server_wait (a year),
// a date after 2261 included, is duration::max(): longer than any cap, so the caller moves on.
inline std::optional<duration> parse_retry_after(std::string_view value, wall_time now) noexcept {
  const std::string_view v = detail::trim(value);
  if (v.empty()) return std::nullopt;
  if (detail::is_digit(v.front()) || v.front() == '.')
    return detail::parse_decimal(v, 1'000'000'000);
  const std::optional<std::int64_t> secs = detail::http_date_seconds(v, now);
  if (!secs) return std::nullopt;
  const std::optional<wall_time> when = detail::to_wall_time(secs);
  if (!when) return *secs > 0 ? std::optional<duration>(duration::max()) : std::nullopt;
  if (*when <= now) return std::nullopt;
  const auto wait = std::chrono::duration_cast<duration>(*when - now);
  if (wait > max_plausible_server_wait) return duration::max();
  return wait;
}

// `retry-after-ms`: milliseconds, possibly fractional.
inline std::optional<duration> parse_retry_after_ms(std::string_view value) noexcept {
  return detail::parse_decimal(value, 1'000'000);
}

// The server's wait from both headers; `retry-after-ms` is more precise and wins when valid.
// Either may hold several values, one per line (the header came more than once, as
// failure::header keeps it): the longest valid one counts, because retrying after a shorter one
// would come before one of the times the server named.
FAILOVER_FAILURE_PATH FAILOVER_DECL std::optional<duration> server_wait(
    std::string_view retry_after_ms, std::string_view retry_after, wall_time now) noexcept;

#if FAILOVER_DEFINE_COMPILED
FAILOVER_DECL std::optional<duration> server_wait(std::string_view retry_after_ms,
                                                  std::string_view retry_after,
                                                  wall_time now) noexcept {
  auto longest = [](std::string_view values, auto parse) {
    std::optional<duration> best;
    for (;;) {
      const std::size_t end = values.find('\n');
      const auto wait = parse(values.substr(0, end));
      if (wait && (!best || *wait > *best)) best = wait;
      if (end == std::string_view::npos) return best;
      values.remove_prefix(end + 1);
    }
  };
  if (auto ms = longest(retry_after_ms, [](std::string_view v) { return parse_retry_after_ms(v); }))
    return ms;
  return longest(retry_after, [now](std::string_view v) { return parse_retry_after(v, now); });
}
#endif  // FAILOVER_DEFINE_COMPILED

}  // namespace failover
