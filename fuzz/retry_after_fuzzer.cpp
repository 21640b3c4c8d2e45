// Fuzzes the Retry-After / retry-after-ms / HTTP-date parsers (failover/core/retry_after.hpp) with
// arbitrary header text and with well-formed dates in all three forms, checking what must hold for
// any input: waits stay within [0, max_plausible_server_wait] or are duration::max() (a wait too
// long to be an instruction, which must never read as a shorter one), surrounding whitespace
// changes nothing, the seconds and milliseconds readings of one number agree, an accepted date
// reads back the same when written out again, and every well-formed representable date is accepted.
#include <fuzzer/FuzzedDataProvider.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include <failover/core/retry_after.hpp>

#include "fuzz_check.hpp"

namespace {

using failover::duration;
using failover::wall_time;
using std::chrono::seconds;

bool in_bounds(const std::optional<duration>& w) {
  return !w || *w == duration::max() ||
         (*w >= duration::zero() && *w <= failover::max_plausible_server_wait);
}

// The times a wall_time can hold, in whole seconds, one second inside the limits.
constexpr std::int64_t min_secs =
    std::chrono::duration_cast<seconds>(wall_time::duration::min()).count() + 1;
constexpr std::int64_t max_secs =
    std::chrono::duration_cast<seconds>(wall_time::duration::max()).count() - 1;

void check_text(const std::string& a, const std::string& b, wall_time now) {
  const auto ra = failover::parse_retry_after(a, now);
  const auto ms = failover::parse_retry_after_ms(a);
  FUZZ_CHECK(in_bounds(ra));
  FUZZ_CHECK(in_bounds(ms));

  // Optional whitespace around a header value is not part of it.
  FUZZ_CHECK(failover::parse_retry_after(" \t" + a + "\t ", now) == ra);
  FUZZ_CHECK(failover::parse_retry_after_ms(" " + a + " ") == ms);

  // retry-after-ms wins when one of its values is valid; of each header's values (one per line,
  // as failure::header keeps copies sent twice), the longest valid one counts.
  auto longest = [](std::string_view values, auto parse) {
    std::optional<duration> best;
    std::size_t from = 0;
    for (;;) {
      const std::size_t end = values.find('\n', from);
      const auto w = parse(values.substr(from, end == std::string_view::npos ? end : end - from));
      if (w && (!best || *w > *best)) best = w;
      if (end == std::string_view::npos) return best;
      from = end + 1;
    }
  };
  const auto ms_all =
      longest(a, [](std::string_view v) { return failover::parse_retry_after_ms(v); });
  const auto ra_all =
      longest(b, [now](std::string_view v) { return failover::parse_retry_after(v, now); });
  FUZZ_CHECK(failover::server_wait(a, b, now) == (ms_all ? ms_all : ra_all));

  const std::string_view t = failover::detail::trim(a);
  if (!t.empty() && (failover::detail::is_digit(t.front()) || t.front() == '.')) {
    // One number read as seconds and as milliseconds: the second reading is a thousandth of the
    // first, up to the nanoseconds the millisecond reading cannot keep.
    if (ra && *ra != duration::max()) {
      FUZZ_CHECK(ms.has_value() && *ms != duration::max());
      const duration diff = *ra - *ms * 1000;
      FUZZ_CHECK(diff >= duration::zero() && diff < std::chrono::microseconds(1));
    }
    return;
  }

  const auto date = failover::parse_http_date(a, now);
  if (!date) {
    // No date a wall_time holds: no wait, unless it is a well-formed date past that range
    // (after 2261), which is longer than any cap.
    const auto secs = failover::detail::http_date_seconds(failover::detail::trim(a), now);
    FUZZ_CHECK(ra == (secs && *secs > 0 ? std::optional<duration>(duration::max()) : std::nullopt));
    return;
  }
  // A date in the future and within the plausible bound is the wait; one further ahead is
  // duration::max(); a date not in the future is no wait.
  const bool future = *date > now;
  const bool plausible = future && *date - now <= failover::max_plausible_server_wait;
  FUZZ_CHECK(ra == (plausible ? std::optional<duration>(*date - now)
                    : future  ? std::optional<duration>(duration::max())
                              : std::nullopt));

  // Written out again as IMF-fixdate (and asctime), it reads back as the same instant.
  const fuzz::civil c = fuzz::to_civil(*date);
  if (c.year >= 1 && c.year <= 9999) {
    FUZZ_CHECK(failover::parse_http_date(fuzz::format_http_date(c, 0), now) == date);
    FUZZ_CHECK(failover::parse_http_date(fuzz::format_http_date(c, 2), now) == date);
  }
}

// A well-formed date from the input, in one of the three forms: accepted exactly when it can be
// represented, and read as the instant it names.
void check_date(FuzzedDataProvider& in, wall_time now) {
  const std::int64_t secs = in.ConsumeIntegralInRange<std::int64_t>(
      -62'135'596'800, 253'402'300'799);  // 0001-01-01 to 9999-12-31
  const fuzz::civil date = fuzz::to_civil(secs);
  const int form = in.ConsumeIntegralInRange(0, 2);
  const auto parsed = failover::parse_http_date(fuzz::format_http_date(date, form), now);

  if (form == 1) {
    // RFC 850: a two-digit year, resolved to no more than 50 years after now.
    if (!parsed) return;  // the resolved year may fall outside what a wall_time holds
    const fuzz::civil back = fuzz::to_civil(*parsed);
    const fuzz::civil now_civil = fuzz::to_civil(now);
    FUZZ_CHECK(back.year % 100 == date.year % 100);
    FUZZ_CHECK(back.year <= now_civil.year + 50 && back.year > now_civil.year + 50 - 100);
    FUZZ_CHECK(back.month == date.month && back.day == date.day && back.hour == date.hour &&
               back.minute == date.minute && back.second == date.second);
    return;
  }
  FUZZ_CHECK(parsed.has_value() == (secs >= min_secs && secs <= max_secs));
  if (parsed) FUZZ_CHECK(parsed->time_since_epoch() == seconds(secs));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  // `now` is what the system clock gives: somewhere between 1970 and 2200.
  const wall_time now =
      wall_time{} + std::chrono::duration_cast<wall_time::duration>(
                        seconds(in.ConsumeIntegralInRange<std::int64_t>(0, 7'258'118'400)) +
                        std::chrono::nanoseconds(in.ConsumeIntegralInRange(0, 999'999'999)));
  if (in.ConsumeBool()) {
    check_date(in, now);
  } else {
    const std::string a = in.ConsumeRandomLengthString(96);
    const std::string b = in.ConsumeRemainingBytesAsString();
    check_text(a, b, now);
  }
  return 0;
}
