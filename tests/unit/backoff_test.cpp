// Backoff: the capped exponential, the four jitter formulas (pure, given a draw), option
// validation, and the seeded, copyable exponential_backoff policy.
#include "catch.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <failover/core/backoff.hpp>

namespace {

using namespace std::chrono_literals;
using failover::backoff_options;
using failover::duration;
using failover::jitter;

backoff_options opts(duration base, double multiplier, duration cap, jitter j) {
  backoff_options o;
  o.base = base;
  o.multiplier = multiplier;
  o.cap = cap;
  o.jitter = j;
  return o;
}

double secs(duration d) {
  return std::chrono::duration<double>(d).count();
}

// |a - b| <= tolerance, on durations.
bool near(duration a, duration b, duration tolerance = 1us) {
  const duration diff = a > b ? a - b : b - a;
  return diff <= tolerance;
}

std::string what_of(const backoff_options& o) {
  try {
    o.validate();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

template <class Backoff>
std::vector<duration> draws(Backoff& b, int n, int attempt = 3) {
  std::vector<duration> out;
  for (int i = 0; i < n; ++i) out.push_back(b.next(attempt));
  return out;
}

constexpr jitter all_jitters[] = {jitter::none, jitter::full, jitter::equal, jitter::decorrelated,
                                  jitter::rising};

}  // namespace

TEST_CASE("exponential_delay: base, doubling, cap", "[backoff]") {
  const backoff_options o = opts(1s, 2.0, 30s, jitter::none);
  const duration expected[] = {1s, 2s, 4s, 8s, 16s, 30s, 30s, 30s};
  for (int attempt = 1; attempt <= 8; ++attempt) {
    CAPTURE(attempt);
    const duration d = failover::exponential_delay(o, attempt);
    CAPTURE(d.count());
    CHECK(near(d, expected[attempt - 1]));
  }
  SECTION("another base and multiplier") {
    const backoff_options o3 = opts(100ms, 3.0, 10s, jitter::none);
    const duration expected3[] = {100ms, 300ms, 900ms, 2700ms, 8100ms, 10s, 10s};
    for (int attempt = 1; attempt <= 7; ++attempt) {
      CAPTURE(attempt);
      CHECK(near(failover::exponential_delay(o3, attempt), expected3[attempt - 1]));
    }
    const backoff_options o15 = opts(1s, 1.5, 60s, jitter::none);
    CHECK(near(failover::exponential_delay(o15, 3), 2250ms));
  }
  SECTION("the first delay is the base, exactly") {
    CHECK(failover::exponential_delay(o, 1) == duration(1s));
    CHECK(failover::exponential_delay(opts(123456789ns, 2.0, 1s, jitter::none), 1) ==
          duration(123456789ns));
  }
  SECTION("never decreasing, never above the cap") {
    duration prev = duration::zero();
    for (int attempt = 1; attempt <= 2000; ++attempt) {
      const duration d = failover::exponential_delay(o, attempt);
      if (d < prev || d > o.cap) {
        INFO("attempt " << attempt << ": " << d.count() << "ns after " << prev.count() << "ns");
        CHECK(d >= prev);
        CHECK(d <= o.cap);
      }
      prev = d;
    }
    CHECK(prev == o.cap);
  }
}

TEST_CASE("exponential_delay is exact for whole-number growth", "[backoff][exact]") {
  // base * multiplier^(attempt-1) is a whole number of nanoseconds here; the user should get it.
  const backoff_options o = opts(1s, 2.0, 1h, jitter::none);
  std::int64_t expected_s = 1;
  for (int attempt = 1; attempt <= 12; ++attempt, expected_s *= 2) {
    CAPTURE(attempt, expected_s);
    const duration d = failover::exponential_delay(o, attempt);
    CAPTURE(d.count());
    CHECK(d == duration(std::chrono::seconds(expected_s)));
  }
}

TEST_CASE("exponential_delay: multiplier 1 is a constant delay", "[backoff]") {
  const backoff_options o = opts(250ms, 1.0, 30s, jitter::none);
  for (int attempt : {1, 2, 3, 10, 1000, INT_MAX}) {
    CAPTURE(attempt);
    CHECK(failover::exponential_delay(o, attempt) == duration(250ms));
  }
}

TEST_CASE("exponential_delay: attempt 0 or negative counts as the first", "[backoff]") {
  const backoff_options o = opts(2s, 2.0, 30s, jitter::none);
  for (int attempt : {0, -1, -1000, INT_MIN}) {
    CAPTURE(attempt);
    CHECK(failover::exponential_delay(o, attempt) == duration(2s));
  }
}

TEST_CASE("exponential_delay: huge attempts give exactly the cap, no overflow or NaN",
          "[backoff]") {
  const backoff_options rows[] = {
      opts(1s, 2.0, 30s, jitter::none),
      opts(1ns, 10.0, std::chrono::hours(24 * 365 * 200), jitter::none),  // 200 years
      opts(1ms, 1.01, 5s, jitter::none),
      opts(7s, 2.0, 7s, jitter::none),  // cap == base
      opts(1s, std::numeric_limits<double>::max(), 30s, jitter::none),
  };
  for (const backoff_options& o : rows) {
    for (int attempt : {1000, 100000, INT_MAX - 1, INT_MAX}) {
      INFO("base " << o.base.count() << "ns, multiplier " << o.multiplier << ", cap "
                   << o.cap.count() << "ns, attempt " << attempt);
      CHECK(failover::exponential_delay(o, attempt) == o.cap);
    }
  }
  // The same at the edge of jittered_delay.
  const backoff_options full = opts(1s, 2.0, 30s, jitter::full);
  CHECK(failover::jittered_delay(full, INT_MAX, duration::zero(), 0.5) == duration(15s));
}

TEST_CASE("jittered_delay: the four formulas with an explicit draw", "[backoff]") {
  const backoff_options base = opts(1s, 2.0, 30s, jitter::none);
  const int attempt = 3;  // v = 4s
  const duration v = 4s;
  const double us[] = {0.0, 0.5, 0.999999};

  SECTION("none: v") {
    backoff_options o = base;
    o.jitter = jitter::none;
    for (double u : us) {
      CAPTURE(u);
      CHECK(near(failover::jittered_delay(o, attempt, duration::zero(), u), v, 1ns));
    }
  }
  SECTION("full: u * v") {
    backoff_options o = base;
    o.jitter = jitter::full;
    CHECK(failover::jittered_delay(o, attempt, duration::zero(), 0.0) == duration::zero());
    CHECK(near(failover::jittered_delay(o, attempt, duration::zero(), 0.5), 2s));
    CHECK(near(failover::jittered_delay(o, attempt, duration::zero(), 0.999999), 3999996us));
  }
  SECTION("equal: v/2 + u * v/2") {
    backoff_options o = base;
    o.jitter = jitter::equal;
    CHECK(near(failover::jittered_delay(o, attempt, duration::zero(), 0.0), 2s));
    CHECK(near(failover::jittered_delay(o, attempt, duration::zero(), 0.5), 3s));
    CHECK(near(failover::jittered_delay(o, attempt, duration::zero(), 0.999999), 3999998us));
  }
  SECTION("decorrelated: min(cap, base + u * (3 * previous - base)), previous 0 = base") {
    backoff_options o = base;
    o.jitter = jitter::decorrelated;
    // No previous delay: previous = base, so the range is [base, 3 * base].
    CHECK(near(failover::jittered_delay(o, attempt, duration::zero(), 0.0), 1s));
    CHECK(near(failover::jittered_delay(o, attempt, duration::zero(), 0.5), 2s));
    CHECK(near(failover::jittered_delay(o, attempt, duration::zero(), 0.999999), 2999998us));
    // previous 5s: [1s, 15s].
    CHECK(near(failover::jittered_delay(o, attempt, 5s, 0.0), 1s));
    CHECK(near(failover::jittered_delay(o, attempt, 5s, 0.5), 8s));
    CHECK(near(failover::jittered_delay(o, attempt, 5s, 0.999999), 14999986us));
    // previous 20s: 1 + 0.5 * 59 = 30.5s, capped at 30s.
    CHECK(failover::jittered_delay(o, attempt, 20s, 0.5) == duration(30s));
    // A previous below base / 3 never pulls the delay below base.
    CHECK(near(failover::jittered_delay(o, attempt, 100ms, 0.999999), 1s));
    // Decorrelated jitter depends on the previous delay, not the attempt number.
    CHECK(failover::jittered_delay(o, 1, 5s, 0.5) == failover::jittered_delay(o, 50, 5s, 0.5));
  }
}

TEST_CASE("jittered_delay: bounds hold for every attempt and jitter kind", "[backoff]") {
  const backoff_options shapes[] = {
      opts(1s, 2.0, 30s, jitter::none),
      opts(123456789ns, 1.7, 45678ms, jitter::none),
      opts(1ns, 3.0, 1h, jitter::none),
      opts(500ms, 1.0, 500ms, jitter::none),
  };
  std::mt19937_64 rng(20240101);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  for (const backoff_options& shape : shapes) {
    for (jitter j : all_jitters) {
      backoff_options o = shape;
      o.jitter = j;
      INFO("jitter " << failover::to_string(j) << ", base " << o.base.count() << "ns, multiplier "
                     << o.multiplier << ", cap " << o.cap.count() << "ns");
      duration previous = duration::zero();
      int failures = 0;
      for (int attempt = 1; attempt <= 2000; ++attempt) {
        const double fixed[] = {0.0, 1e-9, 0.5, 0.999999, 1.0, uni(rng)};
        for (int k = 0; k < 6; ++k) {
          const double u = fixed[k];
          const duration v = failover::exponential_delay(o, attempt);
          const duration d = failover::jittered_delay(o, attempt, previous, u);
          bool ok = d >= duration::zero() && d <= o.cap;
          switch (j) {
            case jitter::none:
              ok = ok && d == v;
              break;
            case jitter::full:
              ok = ok && d <= v;
              break;
            case jitter::equal:
              ok = ok && d >= v / 2 && d <= v;
              break;
            case jitter::decorrelated: {
              const duration prev = previous > duration::zero() ? previous : o.base;
              ok = ok && d >= o.base && d <= std::max(o.base, 3 * prev);
              break;
            }
            case jitter::rising: {
              // Never past the exponential's window top (1 us for rounding); after the first
              // retry, never below max(base, previous) held at cap / multiplier.
              ok = ok && d <= v + 1us;
              if (attempt > 1 && o.multiplier > 1.0) {
                const duration floor =
                    std::min(std::max(o.base, previous),
                             std::chrono::duration_cast<duration>(o.cap / o.multiplier));
                ok = ok && d + 1us >= floor;
              }
              break;
            }
          }
          if (!ok && failures++ < 5) {
            CAPTURE(attempt, u, d.count(), v.count(), previous.count());
            CHECK(ok);
          }
          if (k == 5) previous = d;  // feed the random draw's delay forward
        }
      }
      CHECK(failures == 0);
    }
  }
}

TEST_CASE("jittered_delay: a NaN or infinite draw is clamped", "[backoff]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (jitter j : all_jitters) {
    const backoff_options o = opts(1s, 2.0, 30s, j);
    INFO("jitter " << failover::to_string(j));
    const duration v = failover::exponential_delay(o, 4);  // 8s
    const duration lo = failover::jittered_delay(o, 4, 2s, 0.0);
    const duration hi = failover::jittered_delay(o, 4, 2s, 1.0);
    CHECK(failover::jittered_delay(o, 4, 2s, nan) == lo);  // NaN counts as no jitter draw: 0
    for (double u : {inf, -inf, 2.0, 1e300, -0.5, -1e300}) {
      CAPTURE(u);
      const duration d = failover::jittered_delay(o, 4, 2s, u);
      CHECK(d >= lo);
      CHECK(d <= hi);
      CHECK(d <= std::max(v, o.cap));
    }
    CHECK(failover::jittered_delay(o, 4, 2s, 2.0) == hi);
    CHECK(failover::jittered_delay(o, 4, 2s, -0.5) == lo);
  }
}

TEST_CASE("backoff_options::validate names the bad parameter", "[backoff]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  struct row {
    const char* what;
    backoff_options o;
    const char* parameter;
  };
  const row rows[] = {
      {"base 0", opts(duration::zero(), 2.0, 30s, jitter::full), "base"},
      {"base negative", opts(-1s, 2.0, 30s, jitter::full), "base"},
      {"cap below base", opts(2s, 2.0, 1s, jitter::full), "cap"},
      {"multiplier below 1", opts(1s, 0.5, 30s, jitter::full), "multiplier"},
      {"multiplier 0", opts(1s, 0.0, 30s, jitter::full), "multiplier"},
      {"multiplier negative", opts(1s, -2.0, 30s, jitter::full), "multiplier"},
      {"multiplier NaN", opts(1s, nan, 30s, jitter::full), "multiplier"},
      {"multiplier +inf", opts(1s, inf, 30s, jitter::full), "multiplier"},
      {"multiplier -inf", opts(1s, -inf, 30s, jitter::full), "multiplier"},
  };
  for (const row& r : rows) {
    INFO(r.what);
    REQUIRE_THROWS_AS(r.o.validate(), std::invalid_argument);
    const std::string message = what_of(r.o);
    CAPTURE(message);
    CHECK(message.find(r.parameter) != std::string::npos);
    // The policy refuses the same options, with and without a seed.
    REQUIRE_THROWS_AS(failover::exponential_backoff<>(r.o, 1), std::invalid_argument);
    REQUIRE_THROWS_AS(failover::exponential_backoff<>(r.o), std::invalid_argument);
  }
  SECTION("valid edge cases are accepted") {
    CHECK(what_of(backoff_options{}).empty());
    CHECK(what_of(opts(1ns, 1.0, 1ns, jitter::decorrelated)).empty());  // cap == base, mult 1
    CHECK(what_of(opts(1s, 1000.0, 1h, jitter::equal)).empty());
    CHECK(failover::exponential_backoff<>(opts(1s, 1.0, 1s, jitter::none), 1).next(5) ==
          duration(1s));
  }
}

TEST_CASE("exponential_backoff: a fixed seed reproduces the sequence", "[backoff]") {
  for (jitter j : all_jitters) {
    INFO("jitter " << failover::to_string(j));
    const backoff_options o = opts(100ms, 2.0, 20s, j);
    failover::exponential_backoff<> a(o, 42);
    failover::exponential_backoff<> b(o, 42);
    CHECK(a.seed() == 42);
    for (int attempt = 1; attempt <= 50; ++attempt) {
      CAPTURE(attempt);
      const duration da = a.next(attempt);
      CHECK(da == b.next(attempt));
      CHECK(da <= o.cap);
    }
    if (j != jitter::none) {
      failover::exponential_backoff<> c(o, 43);
      failover::exponential_backoff<> d(o, 42);
      CHECK(draws(c, 20) != draws(d, 20));
    }
  }
  SECTION("jitter none draws no randomness: the plain exponential") {
    failover::exponential_backoff<> b(opts(1s, 2.0, 30s, jitter::none), 9);
    for (int attempt = 1; attempt <= 10; ++attempt)
      CHECK(b.next(attempt) == failover::exponential_delay(b.options(), attempt));
  }
  SECTION("options() reports the options") {
    const backoff_options o = opts(3s, 1.5, 40s, jitter::equal);
    const failover::exponential_backoff<> b(o, 1);
    CHECK(b.options().base == o.base);
    CHECK(b.options().cap == o.cap);
    CHECK(b.options().multiplier == o.multiplier);
    CHECK(b.options().jitter == o.jitter);
  }
}

TEST_CASE("exponential_backoff: copies get their own reproducible streams", "[backoff]") {
  const backoff_options o = opts(100ms, 2.0, 20s, jitter::full);
  SECTION("a copy's stream differs from the original's") {
    failover::exponential_backoff<> original(o, 7);
    failover::exponential_backoff<> copy = original;
    CHECK(copy.seed() != original.seed());
    failover::exponential_backoff<> reference(o, 7);  // what the original draws
    const auto copy_draws = draws(copy, 30);
    CHECK(copy_draws != draws(reference, 30));
    CHECK(copy_draws != draws(original, 30));
  }
  SECTION("successive copies of one original differ from each other") {
    failover::exponential_backoff<> original(o, 7);
    failover::exponential_backoff<> first = original;
    failover::exponential_backoff<> second = original;
    CHECK(first.seed() != second.seed());
    CHECK(draws(first, 30) != draws(second, 30));
  }
  SECTION("copies made in the same order from identically seeded originals are identical") {
    failover::exponential_backoff<> a(o, 7);
    failover::exponential_backoff<> b(o, 7);
    (void)a.next(1);  // drawing from the original does not change its copies' streams
    failover::exponential_backoff<> a1 = a;
    failover::exponential_backoff<> b1 = b;
    failover::exponential_backoff<> a2 = a;
    failover::exponential_backoff<> b2 = b;
    CHECK(a1.seed() == b1.seed());
    CHECK(a2.seed() == b2.seed());
    const auto s1 = draws(a1, 30);
    CHECK(s1 == draws(b1, 30));
    const auto s2 = draws(a2, 30);
    CHECK(s2 == draws(b2, 30));
    CHECK(s1 != s2);
    // A copy of a copy is reproducible too.
    failover::exponential_backoff<> a11 = a1;
    failover::exponential_backoff<> b11 = b1;
    CHECK(draws(a11, 30) == draws(b11, 30));
  }
  SECTION("copy assignment behaves like a copy") {
    failover::exponential_backoff<> a(o, 7);
    failover::exponential_backoff<> b(o, 7);
    failover::exponential_backoff<> x(o, 100);
    failover::exponential_backoff<> y(o, 200);
    x = a;
    y = b;
    CHECK(x.seed() == y.seed());
    CHECK(x.seed() != a.seed());
    CHECK(draws(x, 30) == draws(y, 30));
  }
}

TEST_CASE("exponential_backoff: a copy starts fresh", "[backoff]") {
  const backoff_options o = opts(1s, 2.0, 1000s, jitter::decorrelated);
  failover::exponential_backoff<> original(o, 11);
  duration last = duration::zero();
  for (int i = 1; i <= 200 && last <= 20s; ++i) last = original.next(i);
  REQUIRE(last > 20s);  // the original's previous delay is now large

  for (int k = 0; k < 20; ++k) {
    CAPTURE(k);
    failover::exponential_backoff<> copy = original;
    // Fresh: previous is reset, so the first delay lies in [base, 3 * base].
    const duration first = copy.next(1);
    CHECK(first >= duration(1s));
    CHECK(first <= duration(3s));
    // And it is exactly the stream a new policy with the copy's seed produces.
    failover::exponential_backoff<> copy2 = original;
    failover::exponential_backoff<> fresh(o, copy2.seed());
    CHECK(draws(copy2, 20, 1) == draws(fresh, 20, 1));
  }
  SECTION("copy assignment starts fresh too") {
    failover::exponential_backoff<> target(o, 5);
    for (int i = 1; i <= 50; ++i) (void)target.next(i);
    target = original;
    failover::exponential_backoff<> fresh(o, target.seed());
    CHECK(draws(target, 20, 1) == draws(fresh, 20, 1));
  }
}

namespace {

struct stats {
  double mean = 0, min = 0, max = 0;
};

template <class Backoff>
stats sample(Backoff& b, int attempt, int n) {
  stats s;
  s.min = std::numeric_limits<double>::infinity();
  s.max = -s.min;
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    const double d = secs(b.next(attempt));
    sum += d;
    s.min = std::min(s.min, d);
    s.max = std::max(s.max, d);
  }
  s.mean = sum / n;
  return s;
}

}  // namespace

TEST_CASE("exponential_backoff: jitter distributions with a fixed seed", "[backoff]") {
  const int n = 20000;
  const int attempt = 4;  // v = 8s
  const double v = 8.0;
  SECTION("full jitter: uniform on [0, v]") {
    failover::exponential_backoff<> b(opts(1s, 2.0, 30s, jitter::full), 12345);
    const stats s = sample(b, attempt, n);
    CAPTURE(s.mean, s.min, s.max);
    CHECK(std::abs(s.mean - v / 2) < 0.03 * (v / 2));
    CHECK(s.min >= 0.0);
    CHECK(s.min < 0.01 * v);
    CHECK(s.max <= v);
    CHECK(s.max > 0.99 * v);
  }
  SECTION("equal jitter: uniform on [v/2, v]") {
    failover::exponential_backoff<> b(opts(1s, 2.0, 30s, jitter::equal), 12345);
    const stats s = sample(b, attempt, n);
    CAPTURE(s.mean, s.min, s.max);
    CHECK(std::abs(s.mean - 0.75 * v) < 0.03 * (0.75 * v));
    CHECK(s.min >= v / 2 - 1e-9);
    CHECK(s.min < 0.51 * v);
    CHECK(s.max <= v);
    CHECK(s.max > 0.99 * v);
  }
  SECTION("decorrelated jitter stays in [base, cap] and reaches the cap") {
    failover::exponential_backoff<> b(opts(1s, 2.0, 30s, jitter::decorrelated), 12345);
    const stats s = sample(b, attempt, n);
    CAPTURE(s.mean, s.min, s.max);
    CHECK(s.min >= 1.0);
    CHECK(s.max <= 30.0);
    CHECK(s.max == 30.0);
    CHECK(s.min < 1.1);
  }
}

TEST_CASE("exponential_backoff: a custom generator works", "[backoff]") {
  const backoff_options o = opts(1s, 2.0, 30s, jitter::full);
  failover::exponential_backoff<std::mt19937_64> a(o, 99);
  failover::exponential_backoff<std::mt19937_64> b(o, 99);
  static_assert(std::is_same_v<failover::exponential_backoff<std::mt19937_64>::generator_type,
                               std::mt19937_64>);
  const auto da = draws(a, 50, 4);
  CHECK(da == draws(b, 50, 4));
  for (duration d : da) {
    CHECK(d >= duration::zero());
    CHECK(d <= duration(8s));
  }
  // Different from the default generator with the same seed: the template argument is used.
  failover::exponential_backoff<> dflt(o, 99);
  CHECK(draws(dflt, 50, 4) != da);
  // Copies are reproducible with it too.
  failover::exponential_backoff<std::mt19937_64> a1 = a;
  failover::exponential_backoff<std::mt19937_64> b1 = b;
  CHECK(draws(a1, 30, 4) == draws(b1, 30, 4));
  // And the distribution is still uniform.
  failover::exponential_backoff<std::mt19937_64> m(o, 2024);
  const stats s = sample(m, 4, 20000);
  CAPTURE(s.mean);
  CHECK(std::abs(s.mean - 4.0) < 0.12);
}

TEST_CASE("backoff: a moved policy keeps its stream, so a fixed seed reproduces its waits",
          "[backoff]") {
  const failover::backoff_options o{};
  failover::exponential_backoff<> reference(o, 42);
  failover::exponential_backoff<> original(o, 42);
  failover::exponential_backoff<> moved(std::move(original));
  std::vector<failover::exponential_backoff<>> grown;
  grown.emplace_back(o, 42);
  for (int i = 0; i < 8; ++i) grown.emplace_back(o, 7);  // growth moves the first element
  for (int attempt = 1; attempt <= 6; ++attempt) {
    const auto want = reference.next(attempt);
    CHECK(moved.next(attempt) == want);
    CHECK(grown.front().next(attempt) == want);
  }
}

TEST_CASE("rising jitter: full jitter's first window, then windows that never shrink",
          "[backoff]") {
  const backoff_options o = opts(1s, 2.0, 30s, jitter::rising);
  SECTION("the first retry waits U(0, base), as full jitter does") {
    CHECK(failover::jittered_delay(o, 1, duration::zero(), 0.0) == duration::zero());
    CHECK(failover::jittered_delay(o, 1, duration::zero(), 0.5) == duration(500ms));
    backoff_options full = o;
    full.jitter = jitter::full;
    for (double u : {0.0, 0.1, 0.5, 0.9, 0.999999})
      CHECK(failover::jittered_delay(o, 1, duration::zero(), u) ==
            failover::jittered_delay(full, 1, duration::zero(), u));
  }
  SECTION("later retries wait U(p, 2p), p = max(base, previous)") {
    // A short first wait does not make the second short: p is at least the base.
    CHECK(failover::jittered_delay(o, 2, 300ms, 0.0) == duration(1s));
    CHECK(failover::jittered_delay(o, 2, 300ms, 0.5) == duration(1500ms));
    CHECK(failover::jittered_delay(o, 3, 1500ms, 0.5) == duration(2250ms));
    CHECK(failover::jittered_delay(o, 3, 1500ms, 0.0) == duration(1500ms));
  }
  SECTION("near the cap the window stays [cap / 2, cap] rather than collapsing onto the cap") {
    CHECK(failover::jittered_delay(o, 9, 20s, 0.0) == duration(15s));
    CHECK(failover::jittered_delay(o, 9, 20s, 0.999999) <= duration(30s));
    CHECK(failover::jittered_delay(o, 9, 20s, 0.999999) > duration(29s));
  }
  SECTION("a sequence: each wait at least the last (below cap / 2), never past full jitter's top") {
    failover::exponential_backoff<> b(o, 7);
    for (int trial = 0; trial < 2000; ++trial) {
      failover::exponential_backoff<> copy(b);  // a fresh per-call copy, as a call makes
      duration last = duration::zero();
      for (int attempt = 1; attempt <= 6; ++attempt) {
        const duration d = copy.next(attempt);
        const duration top = failover::exponential_delay(o, attempt);
        CAPTURE(trial, attempt, d.count(), last.count());
        CHECK(d <= top + 1us);
        if (attempt > 1) {
          CHECK(d >= o.base);
          CHECK(d + 1us >= std::min(last, duration(15s)));
        }
        last = d;
      }
    }
  }
  SECTION("it is the default") {
    CHECK(backoff_options{}.jitter == jitter::rising);
    CHECK(failover::to_string(jitter::rising) == "rising");
  }
  SECTION("a multiplier of 1 is refused with a message naming the fix") {
    try {
      opts(1s, 1.0, 30s, jitter::rising).validate();
      FAIL("no exception");
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      CHECK(what.find("rising") != std::string::npos);
      CHECK(what.find("multiplier") != std::string::npos);
      CHECK(what.find("jitter::full") != std::string::npos);
    }
  }
}

TEST_CASE(
    "backoff: the uniform draw is std::generate_canonical's, so seeded waits stay as they were",
    "[backoff]") {
  // The draw is written out (<random> stays out of the headers); a seeded policy must still give
  // the waits the standard function gave, for the default generator and for the standard ones,
  // whose ranges need one draw (2^64, 2^32 with two) or a range that is no power of two.
  auto same_stream = [](auto a) {
    auto b = a;
    for (int i = 0; i < 1000; ++i) {
      const double ours = failover::detail::uniform01(a);
      const double standard =
          std::generate_canonical<double, std::numeric_limits<double>::digits>(b);
      if (ours != standard) return false;
      if (!(ours >= 0.0 && ours < 1.0)) return false;
    }
    return true;
  };
  CHECK(same_stream(failover::detail::splitmix64(42)));
  CHECK(same_stream(std::mt19937_64(42)));
  CHECK(same_stream(std::mt19937(42)));
  CHECK(same_stream(std::minstd_rand(42)));
}

TEST_CASE("backoff: policies built without a seed get different seeds", "[backoff]") {
  // The first seed comes from the clocks and addresses, then a counter: no two policies of one
  // process share a stream, so their clients do not retry in step.
  std::vector<std::uint64_t> seeds;
  for (int i = 0; i < 100; ++i) seeds.push_back(failover::exponential_backoff<>().seed());
  std::sort(seeds.begin(), seeds.end());
  CHECK(std::adjacent_find(seeds.begin(), seeds.end()) == seeds.end());
}
