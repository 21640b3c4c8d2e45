// Shared by the fuzz targets: a property check that aborts (so libFuzzer saves the input) and a
// formatter for HTTP-dates, so that what the parser accepts can be written back and read again.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <failover/core/retry_after.hpp>

#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

// The same, also printing the input the property failed on.
#define FUZZ_CHECK_SHOW(cond, label, text) \
  do {                                     \
    if (!(cond)) {                         \
      fuzz::show(label, text);             \
    }                                      \
    FUZZ_CHECK(cond);                      \
  } while (0)

namespace fuzz {

// Prints `text` with every byte outside printable ASCII escaped, so embedded NULs show.
inline void show(const char* label, const std::string& text) {
  std::fprintf(stderr, "%s: \"", label);
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
      std::fputc(c, stderr);
    else
      std::fprintf(stderr, "\\x%02x", c);
  }
  std::fprintf(stderr, "\"\n");
}

struct civil {
  std::int64_t year;
  int month;  // 1..12
  int day;    // 1..31
  int hour, minute, second;
  int weekday;  // 0 = Monday, as failover's day tables
};

// The inverse of failover::detail::days_from_civil (H. Hinnant's civil_from_days), written out
// again here so the fuzzer does not check the parser against itself.
// `secs`: seconds since 1970-01-01 00:00:00 UTC, any year from 1 to 9999.
inline civil to_civil(std::int64_t secs) {
  std::int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
  const std::int64_t sod = secs - days * 86400;
  const std::int64_t weekday = ((days % 7) + 7 + 3) % 7;  // 1970-01-01 was a Thursday
  days += 719468;
  const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const std::int64_t doe = days - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
  return {yoe + era * 400 + (m <= 2 ? 1 : 0),
          static_cast<int>(m),
          static_cast<int>(d),
          static_cast<int>(sod / 3600),
          static_cast<int>(sod / 60 % 60),
          static_cast<int>(sod % 60),
          static_cast<int>(weekday)};
}

inline civil to_civil(failover::wall_time t) {
  return to_civil(std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count());
}

inline const char* const short_days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
inline const char* const long_days[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                        "Friday", "Saturday", "Sunday"};
inline const char* const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// The three RFC 9110 forms. `form`: 0 IMF-fixdate, 1 RFC 850, 2 asctime.
inline std::string format_http_date(const civil& c, int form) {
  char buf[64];
  const int y = static_cast<int>(c.year);
  switch (form) {
    case 0:
      std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", short_days[c.weekday],
                    c.day, months[c.month - 1], y, c.hour, c.minute, c.second);
      break;
    case 1:
      std::snprintf(buf, sizeof buf, "%s, %02d-%s-%02d %02d:%02d:%02d GMT", long_days[c.weekday],
                    c.day, months[c.month - 1], y % 100, c.hour, c.minute, c.second);
      break;
    default:
      std::snprintf(buf, sizeof buf, "%s %s %2d %02d:%02d:%02d %04d", short_days[c.weekday],
                    months[c.month - 1], c.day, c.hour, c.minute, c.second, y);
      break;
  }
  return buf;
}

}  // namespace fuzz
