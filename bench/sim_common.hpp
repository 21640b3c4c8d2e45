// Shared parts of the virtual-time simulations: an event queue, network noise, the retry state a
// retrier keeps for one call, summary statistics, and a small command line reader.
#pragma once

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <queue>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <failover/core/backoff.hpp>
#include <failover/core/decision.hpp>
#include <failover/core/error.hpp>

namespace failover_bench {

using failover::duration;

inline duration from_ms(double ms) {
  return duration(static_cast<std::int64_t>(std::llround(ms * 1e6)));
}
inline double to_ms(duration d) {
  return static_cast<double>(d.count()) / 1e6;
}
inline double to_s(duration d) {
  return static_cast<double>(d.count()) / 1e9;
}

// Seeds for one (point, trial): every strategy sees the same network noise for the same trial
// (common random numbers), so differences between strategies are not noise between runs.
inline std::uint64_t trial_seed(std::uint64_t base, std::uint64_t point, std::uint64_t trial) {
  using failover::detail::splitmix64;
  return splitmix64::mix(base ^ splitmix64::mix(point * 0x100000001b3ULL ^ splitmix64::mix(trial)));
}

// One network hop: |N(mean, sd)|, as in the 2015 contention model.
class network {
 public:
  network(double mean_ms, double sd_ms, std::uint64_t seed) : rng_(seed), normal_(mean_ms, sd_ms) {}
  duration hop() { return from_ms(std::fabs(normal_(rng_))); }

 private:
  std::mt19937_64 rng_;
  std::normal_distribution<double> normal_;
};

// A min-queue of (time, sequence, client, kind). The sequence number breaks ties in insertion
// order, so a run is reproducible from its seed alone.
struct event {
  duration at;
  std::uint64_t seq;
  int client;
  int kind;
  bool operator>(const event& o) const noexcept { return at != o.at ? at > o.at : seq > o.seq; }
};

class event_queue {
 public:
  void push(duration at, int client, int kind) { q_.push(event{at, seq_++, client, kind}); }
  bool empty() const noexcept { return q_.empty(); }
  event pop() {
    event e = q_.top();
    q_.pop();
    return e;
  }

 private:
  std::priority_queue<event, std::vector<event>, std::greater<>> q_;
  std::uint64_t seq_ = 0;
};

// What a retrier's machine keeps for one call on one model with no deadline: the attempt counters,
// the backoff copied from the prototype at the first retry, and the decide_retry verdict after each
// failure (max_total_attempts INT_MAX, as a retrier's). Only the rate-limit simulation still uses
// it, and it checks it against a real retrier before it runs; the herd runs on the machine itself
// (drivers/sim.hpp).
template <class Backoff>
class retry_state {
 public:
  retry_state(failover::retry_options options, const Backoff* prototype)
      : options_(options), prototype_(prototype) {}
  // A copy starts without a backoff of its own, as a new call would (the simulations copy states
  // before any failure). Not copying the optional also keeps g++ 12 at -O2 from a false
  // -Wmaybe-uninitialized in optional's copy of a disengaged Backoff.
  retry_state(const retry_state& other)
      : options_(other.options_), prototype_(other.prototype_), counters_(other.counters_) {}
  retry_state& operator=(const retry_state& other) {
    options_ = other.options_;
    prototype_ = other.prototype_;
    backoff_.reset();
    counters_ = other.counters_;
    return *this;
  }
  ~retry_state() = default;

  failover::retry_decision after_failure(const failover::error& e) {
    ++counters_.attempts;
    counters_.total_attempts = counters_.attempts;
    if (e.kind == failover::error_kind::read_timeout) ++counters_.read_timeouts;
    duration delay{};
    if (e.transient) {
      if (!backoff_) backoff_.emplace(*prototype_);
      delay = backoff_->next(counters_.attempts);
    }
    return failover::decide_retry(options_, INT_MAX, e, counters_, delay, std::nullopt);
  }
  int attempts() const noexcept { return counters_.attempts; }

 private:
  failover::retry_options options_;
  const Backoff* prototype_;
  std::optional<Backoff> backoff_;
  failover::retry_counters counters_;
};

// Candidate formulas tried against the library's jitter kinds (--explore). Each maps the capped
// exponential v of this retry (from failover::exponential_delay), the previous delay and a uniform
// draw to a wait.
enum class candidate : std::uint8_t {
  library,         // failover::jittered_delay with the options' jitter kind
  zero,            // no backoff at all
  floor_quarter,   // U(v/4, v)
  decorr_factor,   // min(cap, U(base, f * previous))
  decorr_full,     // min(cap, U(0, 3 * previous)), previous starting at base
  full_or_decorr,  // min(cap, U(0, max(v, f * previous)))
  decorr_env,      // min(cap, U(base, max(v, f * previous)))
  decorr_up,       // min(cap, U(previous, f * previous)): never shorter than the last wait
  decorr_capped,   // min(cap, U(base, min(v, f * previous))): decorrelated under the envelope
  // Hybrids: the first retry is exactly the library's full jitter U(0, base), so a lone failure and
  // a light overload wait as the default does; later retries never shrink.
  full_then_up,        // retry n >= 2: U(p, f * p), p = min(max(base, previous), cap / f)
  full_then_up_floor,  // as full_then_up with max(v of retry n-1, previous) inside the min
  tiled,               // U(min(v of retry n-1, v / m), v), v of retry 0 = 0: adjacent windows
};

// Adds the hybrid candidates, each with f in {2, 2.5, 3}, to an exploration: `add(name, options,
// candidate, f)` as both simulations define it.
template <class Add>
void add_hybrid_candidates(Add&& add, const failover::backoff_options& o) {
  for (double f : {2.0, 2.5, 3.0}) {
    char name[64];
    std::snprintf(name, sizeof name, "hybrid U(p; %.2g p)", f);
    add(name, o, candidate::full_then_up, f);
    std::snprintf(name, sizeof name, "hybrid floor U(p; %.2g p)", f);
    add(name, o, candidate::full_then_up_floor, f);
  }
}

// A Backoff policy for the simulation: the library's exponential_backoff, or a candidate formula.
// Copies behave as the library's do (fresh state, a derived stream): the inner exponential_backoff
// is copied, and a candidate draws from a generator seeded with the copy's derived seed.
class sim_backoff {
 public:
  sim_backoff(failover::backoff_options o, candidate c, double factor, int attempt_shift,
              std::uint64_t seed)
      : inner_(o, seed), kind_(c), factor_(factor), shift_(attempt_shift) {}
  sim_backoff(const sim_backoff& other)
      : inner_(other.inner_), kind_(other.kind_), factor_(other.factor_), shift_(other.shift_) {}
  // A move keeps the stream, as exponential_backoff's does.
  sim_backoff(sim_backoff&&) noexcept = default;
  sim_backoff& operator=(const sim_backoff& other) {
    inner_ = other.inner_;
    kind_ = other.kind_;
    factor_ = other.factor_;
    shift_ = other.shift_;
    previous_ = duration::zero();
    generator_.reset();
    return *this;
  }

  duration next(int attempt) {
    attempt += shift_;
    if (kind_ == candidate::library) return inner_.next(attempt);
    if (kind_ == candidate::zero) return duration::zero();
    if (!generator_) generator_.emplace(inner_.seed());
    const double u = failover::detail::uniform01(*generator_);
    const failover::backoff_options& o = inner_.options();
    const double v = to_s(failover::exponential_delay(o, attempt));
    const double base = to_s(o.base);
    const double cap = to_s(o.cap);
    const double prev = previous_ > duration::zero() ? to_s(previous_) : base;
    // The capped exponential of the retry before this one (0 before the first retry).
    const double v_before = attempt > 1 ? to_s(failover::exponential_delay(o, attempt - 1)) : 0.0;
    if (attempt <= 1 && (kind_ == candidate::full_then_up ||
                         kind_ == candidate::full_then_up_floor || kind_ == candidate::tiled)) {
      // The library's own full-jitter formula and rounding, on the same first draw as the default.
      failover::backoff_options full = o;
      full.jitter = failover::jitter::full;
      previous_ = failover::jittered_delay(full, attempt, duration::zero(), u);
      return previous_;
    }
    double s = 0;
    switch (kind_) {
      case candidate::floor_quarter:
        s = v / 4 + u * (v - v / 4);
        break;
      case candidate::decorr_factor:
        s = std::min(cap, base + u * (std::max(base, factor_ * prev) - base));
        break;
      case candidate::decorr_full:
        s = std::min(cap, u * 3 * prev);
        break;
      case candidate::full_or_decorr:
        s = std::min(cap, u * std::max(v, factor_ * prev));
        break;
      case candidate::decorr_env:
        s = std::min(cap, base + u * (std::max({base, v, factor_ * prev}) - base));
        break;
      case candidate::decorr_up:
        s = std::min(cap, prev + u * (factor_ - 1) * prev);
        break;
      case candidate::decorr_capped:
        s = std::min(cap, base + u * (std::max(base, std::min(v, factor_ * prev)) - base));
        break;
      // p is held at or below cap / f, so at the cap the window is U(cap / f, cap) rather than a
      // constant cap (no jitter left).
      case candidate::full_then_up: {
        const double p = std::min(std::max(base, prev), cap / factor_);
        s = std::min(cap, p + u * (factor_ - 1) * p);
        break;
      }
      case candidate::full_then_up_floor: {
        const double p = std::min(std::max(v_before, prev), cap / factor_);
        s = std::min(cap, p + u * (factor_ - 1) * p);
        break;
      }
      case candidate::tiled: {
        // Below the cap v / m is v of retry n-1, so the windows tile; at the cap the window stays
        // U(cap / m, cap) instead of collapsing to a constant cap (no jitter left).
        const double lo = std::min(v_before, v / o.multiplier);
        s = lo + u * (v - lo);
        break;
      }
      default:
        break;
    }
    previous_ = duration(static_cast<std::int64_t>(s * 1e9));
    return previous_;
  }

 private:
  failover::exponential_backoff<> inner_;
  candidate kind_;
  double factor_;
  int shift_;
  duration previous_ = duration::zero();
  std::optional<failover::detail::splitmix64> generator_;
};

// Mean and standard error of a sample.
struct summary {
  double mean = 0;
  double sem = 0;
};

inline summary summarize(const std::vector<double>& xs) {
  summary s;
  if (xs.empty()) return s;
  double sum = 0;
  for (double x : xs) sum += x;
  s.mean = sum / static_cast<double>(xs.size());
  if (xs.size() > 1) {
    double ss = 0;
    for (double x : xs) ss += (x - s.mean) * (x - s.mean);
    s.sem = std::sqrt(ss / static_cast<double>(xs.size() - 1) / static_cast<double>(xs.size()));
  }
  return s;
}

// Nearest-rank percentile of a sample (sorted in place); 0 for an empty sample.
inline double percentile(std::vector<double>& xs, double p) {
  if (xs.empty()) return 0;
  std::sort(xs.begin(), xs.end());
  const double rank = std::ceil(p / 100.0 * static_cast<double>(xs.size()));
  const auto i = static_cast<std::size_t>(std::max(rank, 1.0)) - 1;
  return xs[std::min(i, xs.size() - 1)];
}

// `--name=value` options; anything else is an error that names the argument.
class options {
 public:
  options(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string_view a(argv[i]);
      if (a.substr(0, 2) != "--")
        throw std::invalid_argument("unexpected argument: " + std::string(a));
      a.remove_prefix(2);
      const auto eq = a.find('=');
      values_[std::string(a.substr(0, eq))] =
          eq == std::string_view::npos ? std::string("1") : std::string(a.substr(eq + 1));
    }
  }
  std::string get(const std::string& name, std::string fallback) {
    used_.push_back(name);
    const auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
  }
  long long get_int(const std::string& name, long long fallback) {
    const std::string v = get(name, std::to_string(fallback));
    char* end = nullptr;
    const long long n = std::strtoll(v.c_str(), &end, 10);
    if (end == v.c_str() || *end != '\0')
      throw std::invalid_argument("--" + name + " must be an integer, got '" + v + "'");
    return n;
  }
  double get_double(const std::string& name, double fallback) {
    const std::string v = get(name, std::to_string(fallback));
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (end == v.c_str() || *end != '\0' || !std::isfinite(x))
      throw std::invalid_argument("--" + name + " must be a number, got '" + v + "'");
    return x;
  }
  // A comma-separated list of integers, e.g. --clients=10,20,50.
  std::vector<int> get_ints(const std::string& name, const std::string& fallback) {
    std::vector<int> out;
    const std::string v = get(name, fallback);
    std::size_t from = 0;
    while (from <= v.size()) {
      const auto comma = std::min(v.find(',', from), v.size());
      const std::string item = v.substr(from, comma - from);
      char* end = nullptr;
      const long n = std::strtol(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || n < 1 || n > 1'000'000)
        throw std::invalid_argument("--" + name + " must list positive integers, got '" + v + "'");
      out.push_back(static_cast<int>(n));
      from = comma + 1;
    }
    return out;
  }
  // Throws for an option no get() asked about, so a typo does not silently run the defaults.
  void reject_unknown() const {
    for (const auto& kv : values_)
      if (std::find(used_.begin(), used_.end(), kv.first) == used_.end())
        throw std::invalid_argument("unknown option --" + kv.first);
  }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> used_;
};

// Is `name` picked by `filter`, a comma-separated list of substrings ("" picks everything)?
inline bool selected(const std::string& filter, const std::string& name) {
  if (filter.empty()) return true;
  for (std::size_t from = 0; from <= filter.size();) {
    const auto comma = std::min(filter.find(',', from), filter.size());
    const std::string part = filter.substr(from, comma - from);
    if (!part.empty() && name.find(part) != std::string::npos) return true;
    from = comma + 1;
  }
  return false;
}

// A file opened for writing, closed on scope exit; a null path writes nowhere.
class output_file {
 public:
  explicit output_file(const std::string& path) {
    if (path.empty()) return;
    f_ = std::fopen(path.c_str(), "w");
    if (!f_) throw std::invalid_argument("cannot write " + path);
  }
  ~output_file() {
    if (f_) std::fclose(f_);
  }
  output_file(const output_file&) = delete;
  output_file& operator=(const output_file&) = delete;
  std::FILE* get() const noexcept { return f_; }
  explicit operator bool() const noexcept { return f_ != nullptr; }

 private:
  std::FILE* f_ = nullptr;
};

}  // namespace failover_bench
