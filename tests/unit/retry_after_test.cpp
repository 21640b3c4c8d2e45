// Retry-After / retry-after-ms parsing and HTTP-date handling: pure functions, `now` is an
// argument.
#include "catch.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <failover/core/retry_after.hpp>

namespace {

using namespace std::chrono_literals;
using failover::duration;
using failover::wall_time;

// A wall time `s` seconds after the Unix epoch.
wall_time at(std::int64_t s) {
  return wall_time{std::chrono::duration_cast<wall_time::duration>(std::chrono::seconds{s})};
}

std::int64_t epoch_seconds(wall_time t) {
  return static_cast<std::int64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count());
}

constexpr std::int64_t rfc_example = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
const wall_time year_2024 = at(1704067200);      // 2024-01-01T00:00:00Z

}  // namespace

TEST_CASE("parse_retry_after: delta-seconds, integer and decimal", "[retry_after]") {
  const wall_time now = year_2024;
  CHECK(failover::parse_retry_after("0", now) == duration::zero());
  CHECK(failover::parse_retry_after("1", now) == duration(1s));
  CHECK(failover::parse_retry_after("120", now) == duration(120s));
  CHECK(failover::parse_retry_after("007", now) == duration(7s));
  CHECK(failover::parse_retry_after("1.5", now) == duration(1500ms));
  CHECK(failover::parse_retry_after("0.25", now) == duration(250ms));
  CHECK(failover::parse_retry_after("2.000000001", now) == duration(2s) + duration(1ns));
  // Delta-seconds do not depend on the wall clock.
  CHECK(failover::parse_retry_after("30", at(0)) == duration(30s));
}

TEST_CASE("parse_retry_after_ms: integer and fractional milliseconds", "[retry_after]") {
  CHECK(failover::parse_retry_after_ms("0") == duration::zero());
  CHECK(failover::parse_retry_after_ms("250") == duration(250ms));
  CHECK(failover::parse_retry_after_ms("250.5") == duration(250ms) + duration(500us));
  CHECK(failover::parse_retry_after_ms("0.001") == duration(1us));
  CHECK(failover::parse_retry_after_ms("1500") == duration(1500ms));
}

TEST_CASE("Retry-After values are trimmed of spaces and tabs", "[retry_after]") {
  const wall_time now = year_2024;
  CHECK(failover::parse_retry_after("  5", now) == duration(5s));
  CHECK(failover::parse_retry_after("5  ", now) == duration(5s));
  CHECK(failover::parse_retry_after("\t 2.5 \t", now) == duration(2500ms));
  CHECK(failover::parse_retry_after_ms(" 100 ") == duration(100ms));
  CHECK(failover::parse_retry_after_ms("\t100.5\t") == duration(100500us));
  const auto d = failover::parse_http_date("  Sun, 06 Nov 1994 08:49:37 GMT\t", now);
  REQUIRE(d.has_value());
  CHECK(epoch_seconds(*d) == rfc_example);
  CHECK(failover::parse_retry_after("   ", now) == std::nullopt);
  CHECK(failover::parse_retry_after_ms("\t") == std::nullopt);
}

TEST_CASE("parse_http_date: the three RFC 9110 forms give the same known instant",
          "[retry_after]") {
  const wall_time now = year_2024;
  SECTION("IMF-fixdate") {
    const auto d = failover::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", now);
    REQUIRE(d.has_value());
    CHECK(epoch_seconds(*d) == rfc_example);
    CHECK(*d == at(rfc_example));  // no sub-second part
  }
  SECTION("RFC 850") {
    const auto d = failover::parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", now);
    REQUIRE(d.has_value());
    CHECK(epoch_seconds(*d) == rfc_example);
  }
  SECTION("asctime with a space-padded day") {
    const auto d = failover::parse_http_date("Sun Nov  6 08:49:37 1994", now);
    REQUIRE(d.has_value());
    CHECK(epoch_seconds(*d) == rfc_example);
  }
  SECTION("asctime with a two-digit day") {
    const auto d = failover::parse_http_date("Wed Nov 16 08:49:37 1994", now);
    REQUIRE(d.has_value());
    CHECK(epoch_seconds(*d) == rfc_example + 10 * 86400);
  }
  SECTION("other known instants") {
    const auto epoch = failover::parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT", now);
    REQUIRE(epoch.has_value());
    CHECK(epoch_seconds(*epoch) == 0);
    const auto end_2016 = failover::parse_http_date("Sat, 31 Dec 2016 23:59:59 GMT", now);
    REQUIRE(end_2016.has_value());
    CHECK(epoch_seconds(*end_2016) == 1483228799);
  }
}

TEST_CASE("parse_http_date: RFC 850 two-digit years are resolved against now", "[retry_after]") {
  SECTION("more than 50 years in the future => the previous century") {
    // From 2024, "94" as 2094 would be 70 years ahead: it means 1994.
    const auto d94 = failover::parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", year_2024);
    REQUIRE(d94.has_value());
    CHECK(epoch_seconds(*d94) == rfc_example);
    const auto d75 = failover::parse_http_date("Wednesday, 01-Jan-75 00:00:00 GMT", year_2024);
    REQUIRE(d75.has_value());
    CHECK(epoch_seconds(*d75) == 157766400);  // 1975-01-01
  }
  SECTION("within 50 years => the current century") {
    const auto d49 = failover::parse_http_date("Friday, 01-Jan-49 00:00:00 GMT", year_2024);
    REQUIRE(d49.has_value());
    CHECK(epoch_seconds(*d49) == 2493072000);  // 2049-01-01
  }
  SECTION("the same text means a different year for a different now") {
    const wall_time year_2080 = at(3471292800);  // 2080-01-01
    const auto d = failover::parse_http_date("Saturday, 06-Nov-94 08:49:37 GMT", year_2080);
    REQUIRE(d.has_value());
    CHECK(epoch_seconds(*d) == 3939871777);  // 2094-11-06T08:49:37Z
  }
}

TEST_CASE("parse_http_date: calendar validation", "[retry_after]") {
  const wall_time now = year_2024;
  SECTION("Feb 29 in a leap year is accepted, in every form") {
    const auto imf = failover::parse_http_date("Thu, 29 Feb 2024 12:00:00 GMT", now);
    REQUIRE(imf.has_value());
    CHECK(epoch_seconds(*imf) == 1709208000);
    const auto asc = failover::parse_http_date("Thu Feb 29 12:00:00 2024", now);
    REQUIRE(asc.has_value());
    CHECK(epoch_seconds(*asc) == 1709208000);
    const auto rfc850 = failover::parse_http_date("Thursday, 29-Feb-24 12:00:00 GMT", now);
    REQUIRE(rfc850.has_value());
    CHECK(epoch_seconds(*rfc850) == 1709208000);
    // 2000 is divisible by 400: a leap year.
    const auto y2000 = failover::parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT", now);
    REQUIRE(y2000.has_value());
    CHECK(epoch_seconds(*y2000) == 951782400);
  }
  SECTION("impossible dates are rejected") {
    CHECK_FALSE(failover::parse_http_date("Thu, 29 Feb 1900 00:00:00 GMT", now));  // not leap
    CHECK_FALSE(failover::parse_http_date("Wed, 29 Feb 2023 00:00:00 GMT", now));
    CHECK_FALSE(failover::parse_http_date("Fri, 30 Feb 2024 00:00:00 GMT", now));
    CHECK_FALSE(failover::parse_http_date("Thu, 31 Apr 2024 00:00:00 GMT", now));
    CHECK_FALSE(failover::parse_http_date("Thu, 00 Jan 2024 00:00:00 GMT", now));
    CHECK_FALSE(failover::parse_http_date("Thu, 32 Jan 2024 00:00:00 GMT", now));
    CHECK_FALSE(failover::parse_http_date("Fri Feb 30 12:00:00 2024", now));
  }
  SECTION("impossible times are rejected") {
    CHECK_FALSE(failover::parse_http_date("Sun, 06 Nov 1994 24:00:00 GMT", now));
    CHECK_FALSE(failover::parse_http_date("Sun, 06 Nov 1994 08:60:00 GMT", now));
    CHECK_FALSE(failover::parse_http_date("Sun, 06 Nov 1994 08:49:61 GMT", now));
    CHECK_FALSE(failover::parse_http_date("Sun Nov  6 24:49:37 1994", now));
    CHECK_FALSE(failover::parse_http_date("Sunday, 06-Nov-94 24:49:37 GMT", now));
  }
}

TEST_CASE("parse_http_date: malformed dates are rejected", "[retry_after]") {
  const wall_time now = year_2024;
  const char* bad[] = {
      "",
      "Sun, 06 Nov 1994 08:49:37 UTC",
      "Sun, 06 Nov 1994 08:49:37",
      "Sun, 06 Nov 1994 08:49:37 GMT junk",
      "Sun, 6 Nov 1994 08:49:37 GMT",
      "Sun, 06 Nov 94 08:49:37 GMT",
      "Sun, 06 nov 1994 08:49:37 GMT",
      "Sun 06 Nov 1994 08:49:37 GMT",
      "Sunday, 06 Nov 1994 08:49:37 GMT",
      "Sun, 06-Nov-94 08:49:37 GMT",
      "Sunday, 06-Nov-1994 08:49:37 GMT",
      "Sun Nov 6 08:49:37 1994",
      "Sun Nov  6 08:49:37 94",
      "Sun Nov  6 08:49:37 1994 GMT",
      "Sun, 06 Foo 1994 08:49:37 GMT",
      "Sun, 06 Nov 1994 8:49:37 GMT",
      "2024-01-01T00:00:00Z",
      "Sun",
      "Sun, ",
  };
  for (const char* text : bad) {
    INFO("date: \"" << text << "\"");
    CHECK_FALSE(failover::parse_http_date(text, now));
  }
}

TEST_CASE("parse_retry_after: an HTTP-date gives the wait from now", "[retry_after]") {
  const wall_time date = at(rfc_example);
  CHECK(failover::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", date - 90s) == duration(90s));
  CHECK(failover::parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", date - 1h) == duration(1h));
  CHECK(failover::parse_retry_after("Sun Nov  6 08:49:37 1994", date - 2s) == duration(2s));
  // A `now` with a sub-second part keeps it.
  CHECK(failover::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", date - 1500ms) ==
        duration(1500ms));

  SECTION("a date that is not in the future means no wait") {
    CHECK(failover::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", date) == std::nullopt);
    CHECK(failover::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", date + 1s) == std::nullopt);
    CHECK(failover::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", year_2024) == std::nullopt);
  }
}

TEST_CASE("parse_retry_after / parse_retry_after_ms: malformed values, never a crash",
          "[retry_after]") {
  const wall_time now = year_2024;
  const std::string thousand_digits(1000, '9');
  const std::string long_fraction = "1." + std::string(1000, '5');
  const std::string bad[] = {
      "",
      "-1",
      "+5",
      "1e3",
      "abc",
      "1.",
      ".5",
      "12abc",
      "1 2",
      "1..5",
      "1.5.",
      "0x10",
      "-0",
      "Sun, 06 Nov 1994 08:49:37 UTC",
      "Sun, 06 Nov 1994 24:49:37 GMT",
      std::string("1\0", 2),
  };
  for (const std::string& v : bad) {
    INFO("value: \"" << v << "\" (" << v.size() << " chars)");
    CHECK(failover::parse_retry_after(v, now) == std::nullopt);
    CHECK(failover::parse_retry_after_ms(v) == std::nullopt);
  }
  // Numbers too large for any clock are well formed: they mean "not soon", never "now".
  for (const std::string& v :
       {thousand_digits, std::string("99999999999999999999999"), std::string("9223372036854775807"),
        std::string("18446744073709551616")}) {
    INFO("value: " << v.size() << " digits");
    CHECK(failover::parse_retry_after(v, now) == duration::max());
    CHECK(failover::parse_retry_after_ms(v) == duration::max());
  }
  // A long fraction is merely more precision than nanoseconds hold, not garbage.
  const auto lf = failover::parse_retry_after(long_fraction, now);
  REQUIRE(lf.has_value());
  CHECK(*lf >= duration(1555555554ns));
  CHECK(*lf <= duration(1555555556ns));
}

TEST_CASE("waits above max_plausible_server_wait (one year) saturate to duration::max()",
          "[retry_after]") {
  using failover::max_plausible_server_wait;
  REQUIRE(max_plausible_server_wait == duration(std::chrono::hours(24 * 365)));
  const wall_time now = year_2024;
  const std::int64_t year_s = 365LL * 24 * 3600;  // 31536000

  CHECK(failover::parse_retry_after(std::to_string(year_s), now) == max_plausible_server_wait);
  CHECK(failover::parse_retry_after(std::to_string(year_s + 1), now) == duration::max());
  CHECK(failover::parse_retry_after(std::to_string(year_s) + ".5", now) == duration::max());
  CHECK(failover::parse_retry_after(std::to_string(year_s - 1) + ".5", now) ==
        max_plausible_server_wait - duration(500ms));

  CHECK(failover::parse_retry_after_ms(std::to_string(year_s * 1000)) == max_plausible_server_wait);
  CHECK(failover::parse_retry_after_ms(std::to_string(year_s * 1000 + 1)) == duration::max());

  SECTION("an HTTP-date more than a year ahead") {
    const wall_time date = at(rfc_example);
    const auto exactly = failover::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT",
                                                     date - max_plausible_server_wait);
    CHECK(exactly == max_plausible_server_wait);
    const auto beyond = failover::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT",
                                                    date - max_plausible_server_wait - 1s);
    CHECK(beyond == duration::max());
    // 400 days ahead, and a date no wall_time can hold: longer than any cap, not "no wait".
    CHECK(failover::parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT",
                                      date - std::chrono::hours(24 * 400)) == duration::max());
    CHECK(failover::parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now) == duration::max());
    // ... but a date long past is still no wait.
    CHECK(failover::parse_retry_after("Mon, 01 Jan 0001 00:00:00 GMT", now) == std::nullopt);
  }
}

TEST_CASE("server_wait: retry-after-ms wins when valid, else Retry-After", "[retry_after]") {
  const wall_time date = at(rfc_example);
  const wall_time now = date - 10s;
  SECTION("both valid: the ms header wins, even when it is longer") {
    CHECK(failover::server_wait("250.5", "3", now) == duration(250500us));
    CHECK(failover::server_wait("5000", "1", now) == duration(5s));
    CHECK(failover::server_wait("100", "Sun, 06 Nov 1994 08:49:37 GMT", now) == duration(100ms));
  }
  SECTION("ms absent or malformed: Retry-After is used") {
    CHECK(failover::server_wait("", "3", now) == duration(3s));
    CHECK(failover::server_wait("abc", "3", now) == duration(3s));
    CHECK(failover::server_wait("-5", "2.5", now) == duration(2500ms));
    // A retry-after-ms too large for any clock is valid and means "not soon": it wins.
    CHECK(failover::server_wait("99999999999999999999999", "4", now) == duration::max());
    CHECK(failover::server_wait("", "Sun, 06 Nov 1994 08:49:37 GMT", now) == duration(10s));
  }
  SECTION("neither valid: no wait") {
    CHECK(failover::server_wait("", "", now) == std::nullopt);
    CHECK(failover::server_wait("x", "y", now) == std::nullopt);
    CHECK(failover::server_wait("", "Sun, 06 Nov 1994 08:49:37 GMT", date + 1s) == std::nullopt);
  }
}

// Found by fuzz/retry_after_fuzzer (see docs/quality.md).
TEST_CASE("parse_http_date: regressions found by fuzzing", "[retry_after][fuzz]") {
  SECTION("a date a wall_time cannot hold is no date, not an overflow") {
    // Nanoseconds in 64 bits span 1677..2262; converting year 1 or 2300 overflowed (UB).
    CHECK(failover::parse_http_date("Mon, 01 Jan 0001 00:00:00 GMT", year_2024) == std::nullopt);
    CHECK(failover::parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT", year_2024) == std::nullopt);
    // As a wait it is valid and longer than any cap (see the saturation test above).
    CHECK(failover::parse_retry_after("Sun, 06 Nov 2300 08:49:37 GMT", year_2024) ==
          duration::max());
    const auto y2200 = failover::parse_http_date("Wed, 01 Jan 2200 00:00:00 GMT", year_2024);
    REQUIRE(y2200.has_value());
    CHECK(epoch_seconds(*y2200) == 7258118400);
  }
  SECTION("late in a century, an RFC 850 year may resolve into the next one") {
    // From mid-2080, "03" as 2003 is 77 years ago; 2103 is 23 years ahead, within the 50 allowed.
    const wall_time mid_2080 = at(3489609600);  // 2080-07-31
    const auto d = failover::parse_http_date("Monday, 01-Jan-03 00:00:00 GMT", mid_2080);
    REQUIRE(d.has_value());
    CHECK(epoch_seconds(*d) == 4197052800);  // 2103-01-01
  }
}

// A header sent twice (a proxy adds its own, or a server repeats itself): the longest valid wait
// counts, whichever copy came first, so no retry comes before a time the server named.
TEST_CASE("server_wait: a wait header sent twice gives the longest valid wait", "[retry_after]") {
  const wall_time date = at(rfc_example);
  const wall_time now = date - 10s;
  SECTION("failure::header keeps every value of a wait header") {
    failover::failure f;
    f.header("Retry-After", "1").header("retry-after", "30");
    f.header("retry-after-ms", "100").header("Retry-After-Ms", "250");
    f.header("x-should-retry", "false").header("x-should-retry", "true");
    CHECK(f.retry_after == "1\n30");
    CHECK(f.retry_after_ms == "100\n250");
    CHECK(f.should_retry == "true");
    CHECK(failover::server_wait(f.retry_after_ms, f.retry_after, now) == duration(250ms));
  }
  SECTION("Retry-After: the longest, in either order and in either form") {
    CHECK(failover::server_wait("", "1\n30", now) == duration(30s));
    CHECK(failover::server_wait("", "30\n1", now) == duration(30s));
    CHECK(failover::server_wait("", "3\nSun, 06 Nov 1994 08:49:37 GMT", now) == duration(10s));
    CHECK(failover::server_wait("", "Sun, 06 Nov 1994 08:49:37 GMT\n3", now) == duration(10s));
  }
  SECTION("an invalid copy is skipped, not taken as no wait") {
    CHECK(failover::server_wait("", "soon\n4", now) == duration(4s));
    CHECK(failover::server_wait("", "4\n-1", now) == duration(4s));
    CHECK(failover::server_wait("", "\n2", now) == duration(2s));
    // A value too large for any clock is valid and means "not soon": the longest wins.
    CHECK(failover::server_wait("", "99999999999999999999\n2", now) == duration::max());
    CHECK(failover::server_wait("", "x\ny", now) == std::nullopt);
  }
  SECTION("retry-after-ms wins when one of its values is valid") {
    CHECK(failover::server_wait("abc\n150", "30", now) == duration(150ms));
    CHECK(failover::server_wait("100\n2000.5", "1\n3", now) == duration(2000500us));
    CHECK(failover::server_wait("abc\n-1", "1\n3", now) == duration(3s));
  }
}
