// The Backoff policy: how long to wait before retry number n. It never decides whether to retry.
// Pure formulas (given a uniform draw) plus a stateful policy that owns its random stream.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>

#include "failover/core/error.hpp"
#include "failover/detail/failure_path.hpp"

namespace failover {

// The jitter kinds of the 2015 "Exponential Backoff And Jitter" analysis (v = capped exponential):
//   none: v;  full: U(0, v);  equal: v/2 + U(0, v/2);  decorrelated: min(cap, U(base, 3*previous)).
// And the default, rising: the first retry waits U(0, base) as full jitter does; each later retry
// waits min(cap, U(p, m*p)) with p = max(base, previous wait), held at or below cap/m (m = the
// multiplier). A lone failure and a light overload wait as under full jitter; a client refused
// again never comes back sooner than its last wait, so a large backlog is not met by waves of
// short retries. Its windows never end later than full jitter's (base * m^(n-1)).
enum class jitter : std::uint8_t { none, full, equal, decorrelated, rising };

constexpr std::string_view to_string(jitter j) noexcept {
  switch (j) {
    case jitter::none:
      return "none";
    case jitter::full:
      return "full";
    case jitter::equal:
      return "equal";
    case jitter::decorrelated:
      return "decorrelated";
    case jitter::rising:
      return "rising";
  }
  return "none";
}

struct backoff_options {
  duration base = std::chrono::seconds(1);
  double multiplier = 2.0;
  duration cap = std::chrono::seconds(30);
  failover::jitter jitter = jitter::rising;

  // Throws std::invalid_argument naming the first bad parameter.
  FAILOVER_DECL void validate() const;
};

namespace detail {

inline duration to_duration(double seconds) noexcept {
  constexpr double max_s = 9.0e9;                 // ~285 years: inside nanoseconds' range
  if (!(seconds > 0.0)) return duration::zero();  // also catches NaN
  if (seconds >= max_s)
    return std::chrono::duration_cast<duration>(std::chrono::seconds(9'000'000'000));
  // Rounded, not truncated: exp(3 * log 2) is 7.999999999999998, and 8 s must stay 8 s.
  return duration(std::llround(seconds * 1e9));
}

inline double to_seconds(duration d) noexcept {
  return std::chrono::duration<double>(d).count();
}

}  // namespace detail

// The capped exponential for retry number `attempt` (1 = the first retry): min(cap, base *
// multiplier^(attempt-1)). Computed in log space, so attempt 1'000'000 neither overflows nor NaNs.
inline duration exponential_delay(const backoff_options& o, int attempt) noexcept {
  const double base = detail::to_seconds(o.base);
  const double cap = detail::to_seconds(o.cap);
  const int n = std::max(attempt, 1) - 1;
  if (o.multiplier <= 1.0 || n == 0) return std::min(o.base, o.cap);
  const double log_growth = static_cast<double>(n) * std::log(o.multiplier);
  if (log_growth >= std::log(cap / base)) return o.cap;
  return std::min(o.cap, detail::to_duration(base * std::exp(log_growth)));
}

// The jittered delay, pure: `u` is a uniform draw in [0, 1) and `previous` the last delay this
// policy produced (decorrelated and rising jitter only; pass zero before the first).
FAILOVER_FAILURE_PATH FAILOVER_DECL duration jittered_delay(const backoff_options& o, int attempt,
                                                            duration previous, double u) noexcept;

#if FAILOVER_DEFINE_COMPILED
FAILOVER_DECL void backoff_options::validate() const {
  if (base <= duration::zero())
    throw std::invalid_argument("failover::backoff_options: base must be > 0");
  if (cap < base) throw std::invalid_argument("failover::backoff_options: cap must be >= base");
  if (!std::isfinite(multiplier))
    throw std::invalid_argument("failover::backoff_options: multiplier must be finite");
  if (multiplier < 1.0)
    throw std::invalid_argument("failover::backoff_options: multiplier must be >= 1");
  if (jitter == jitter::rising && multiplier <= 1.0)
    throw std::invalid_argument(
        "failover::backoff_options: jitter::rising needs multiplier > 1 (its window after "
        "retry 1 is [p, multiplier * p]); use jitter::full for a constant window");
}

FAILOVER_DECL duration jittered_delay(const backoff_options& o, int attempt, duration previous,
                                      double u) noexcept {
  u = std::clamp(std::isfinite(u) ? u : 0.0, 0.0, 1.0);
  switch (o.jitter) {
    case jitter::none:
      return exponential_delay(o, attempt);
    case jitter::rising:
      if (attempt > 1 && o.multiplier > 1.0) {
        const double base = detail::to_seconds(o.base);
        const double cap = detail::to_seconds(o.cap);
        // Held at cap/m so that at the cap the window stays [cap/m, cap], not a constant cap.
        const double p = std::min(std::max(base, detail::to_seconds(previous)), cap / o.multiplier);
        return std::min(o.cap, detail::to_duration(p + u * (o.multiplier - 1.0) * p));
      }
      [[fallthrough]];  // the first retry: full jitter's window
    case jitter::full:
      return detail::to_duration(u * detail::to_seconds(exponential_delay(o, attempt)));
    case jitter::equal: {
      const double v = detail::to_seconds(exponential_delay(o, attempt));
      return detail::to_duration(v / 2 + u * v / 2);
    }
    case jitter::decorrelated: {
      const double base = detail::to_seconds(o.base);
      const double prev = previous > duration::zero() ? detail::to_seconds(previous) : base;
      const double hi = std::max(base, 3.0 * prev);
      return std::min(o.cap, detail::to_duration(base + u * (hi - base)));
    }
  }
  return exponential_delay(o, attempt);
}
#endif  // FAILOVER_DEFINE_COMPILED

namespace detail {

// splitmix64: a tiny, fast, well-mixed generator; the default stream and the seed deriver.
class splitmix64 {
 public:
  using result_type = std::uint64_t;
  explicit splitmix64(std::uint64_t seed = 0) noexcept : state_(seed) {}
  static constexpr result_type min() noexcept { return 0; }
  static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }
  result_type operator()() noexcept { return mix(state_ += 0x9e3779b97f4a7c15ULL); }
  static constexpr std::uint64_t mix(std::uint64_t z) noexcept {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  std::uint64_t state_;
};

// The first seed mixes both clocks with two addresses that address-space randomisation moves, so
// processes started together draw different jitter. Spreading retries needs no more (this is not
// cryptography), and std::random_device would bring <random> into every TU that wraps a call.
inline std::uint64_t fresh_seed() {
  static std::atomic<std::uint64_t> counter{[] {
    static const char in_image = 0;
    const char on_stack = 0;
    const auto ticks = [](auto now) {
      return static_cast<std::uint64_t>(now.time_since_epoch().count());
    };
    std::uint64_t z = splitmix64::mix(ticks(std::chrono::steady_clock::now()));
    z = splitmix64::mix(z ^ ticks(std::chrono::system_clock::now()));
    z = splitmix64::mix(z ^
                        static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&in_image)));
    return splitmix64::mix(z ^
                           static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&on_stack)));
  }()};
  return splitmix64::mix(counter.fetch_add(0x9e3779b97f4a7c15ULL, std::memory_order_relaxed));
}

// A uniform draw in [0, 1) as [rand.util.canonical] defines std::generate_canonical for double:
// k draws for 53 bits, S = sum of (g_i - min) * R^i, S / R^k, held below 1 (so a seeded stream
// gives the waits it gave with the standard function), without <random>.
template <class Generator>
double uniform01(Generator& g) {
  constexpr auto lo = Generator::min();
  const long double range =
      static_cast<long double>(Generator::max()) - static_cast<long double>(lo) + 1.0L;
  int bits = 0;  // floor(log2(range))
  for (long double r = range; r >= 2.0L; r /= 2.0L) ++bits;
  const int digits = std::numeric_limits<double>::digits;
  const int draws = std::max(1, (digits + bits - 1) / std::max(bits, 1));
  double sum = 0.0;
  double scale = 1.0;
  for (int i = 0; i < draws; ++i) {
    sum += static_cast<double>(g() - lo) * scale;
    scale = static_cast<double>(scale * range);
  }
  const double u = sum / scale;
  return u < 1.0 ? u : std::nextafter(1.0, 0.0);
}

}  // namespace detail

// The default Backoff policy: capped exponential with jitter (rising by default).
//
// A Backoff policy is a copyable type with `duration next(int attempt)` (attempt 1 = the wait
// before the first retry). Each call of a retrier or chain works on its own copy, and a copy starts
// fresh: no previous delay, and its own random stream derived from the original's seed, so two
// requests never share a sequence and a fixed seed still reproduces every stream.
template <class Generator = detail::splitmix64>
class exponential_backoff {
 public:
  using generator_type = Generator;

  explicit exponential_backoff(backoff_options options = {})
      : exponential_backoff(options, detail::fresh_seed()) {}
  exponential_backoff(backoff_options options, std::uint64_t seed)
      : options_((options.validate(), options)), seed_(seed), generator_(seed) {}

  exponential_backoff(const exponential_backoff& other)
      : options_(other.options_), seed_(other.derive()), generator_(seed_) {}
  // A move is the same policy in a new place (a vector growing, a chain being built): it keeps
  // its stream, so a fixed seed reproduces the same waits however the policy was passed around.
  exponential_backoff(exponential_backoff&& other) noexcept
      : options_(other.options_),
        seed_(other.seed_),
        generator_(std::move(other.generator_)),
        previous_(other.previous_),
        copies_(other.copies_.load(std::memory_order_relaxed)) {}
  exponential_backoff& operator=(exponential_backoff&& other) noexcept {
    options_ = other.options_;
    seed_ = other.seed_;
    generator_ = std::move(other.generator_);
    previous_ = other.previous_;
    copies_.store(other.copies_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    return *this;
  }
  exponential_backoff& operator=(const exponential_backoff& other) {
    if (this != &other) {
      options_ = other.options_;
      seed_ = other.derive();
      generator_ = Generator(seed_);
      previous_ = duration::zero();
      copies_.store(0, std::memory_order_relaxed);
    }
    return *this;
  }

  duration next(int attempt) {
    const double u = options_.jitter == jitter::none ? 0.0 : detail::uniform01(generator_);
    previous_ = jittered_delay(options_, attempt, previous_, u);
    return previous_;
  }

  const backoff_options& options() const noexcept { return options_; }
  std::uint64_t seed() const noexcept { return seed_; }

 private:
  std::uint64_t derive() const noexcept {
    const auto n = copies_.fetch_add(1, std::memory_order_relaxed) + 1;
    return detail::splitmix64::mix(seed_ ^ detail::splitmix64::mix(n));
  }

  backoff_options options_;
  std::uint64_t seed_;
  Generator generator_;
  duration previous_ = duration::zero();
  mutable std::atomic<std::uint64_t> copies_{0};
};

}  // namespace failover
