// A retry budget shared across requests: first attempts always go, each retry spends a token,
// successes earn tokens back, and a small floor of retries per second keeps quiet clients working.
// During an outage it caps the extra load retries add, whatever each request's own retry policy
// says.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>

#include "failover/clock.hpp"

namespace failover {

struct budget_options {
  // Tokens a success earns. With the floor, retries stay near 20% of calls: at 100 calls/s, 1.19
  // upstream calls per offered call during an outage (docs/benchmarks.md).
  double retry_ratio = 0.18;
  double min_retries_per_second = 1.0;  // the floor, earned by time alone
  double max_tokens = 20.0;             // the most a quiet period can save up
  double initial_tokens = 10.0;         // what a new budget starts with

  void validate() const {
    auto bad = [](const char* what) {
      throw std::invalid_argument(std::string("failover::budget_options: ") + what);
    };
    if (!(retry_ratio >= 0.0) || !std::isfinite(retry_ratio)) bad("retry_ratio must be >= 0");
    if (!(min_retries_per_second >= 0.0) || !std::isfinite(min_retries_per_second))
      bad("min_retries_per_second must be >= 0");
    if (!(max_tokens >= 1.0) || !(max_tokens <= 1e9)) bad("max_tokens must be in [1, 1e9]");
    if (!(retry_ratio <= 1e9)) bad("retry_ratio must be <= 1e9");
    if (!(min_retries_per_second <= 1e9)) bad("min_retries_per_second must be <= 1e9");
    if (!(initial_tokens >= 0.0) || initial_tokens > max_tokens)
      bad("initial_tokens must be in [0, max_tokens]");
  }
};

struct budget_snapshot {
  double tokens = 0;
  std::uint64_t first_attempts = 0;
  std::uint64_t retries_allowed = 0;
  std::uint64_t retries_refused = 0;
  std::uint64_t successes = 0;
};

// The default retry budget. Copies share one bucket. Lock-free: tokens are fixed-point
// (1/1'000'000 of a token) in one atomic, so the success path is one fetch_add.
class retry_budget {
 public:
  explicit retry_budget(budget_options options = {})
      : shared_(std::make_shared<shared>((options.validate(), options))) {}
  // No move of its own: a move shares the bucket as a copy does, so a budget moved from still
  // counts and answers, and the success path needs no check for a bucket that is gone.
  retry_budget(const retry_budget&) = default;
  retry_budget& operator=(const retry_budget&) = default;
  ~retry_budget() = default;

  // A call's first attempt: always allowed (it is counted, not charged).
  void on_first_attempt(time_point) const noexcept {
    shared_->first_attempts.fetch_add(1, std::memory_order_relaxed);
  }

  // A success earns retry_ratio tokens, up to max_tokens.
  void on_success(time_point) const noexcept {
    shared_->successes.fetch_add(1, std::memory_order_relaxed);
    add(shared_->earn_per_success);
  }

  // Before a retry: spends one token if there is one. False means: do not retry, fall back.
  bool try_retry(time_point now) const noexcept {
    refill(now);
    std::int64_t have = shared_->micro_tokens.load(std::memory_order_relaxed);
    while (have >= one_token) {
      if (shared_->micro_tokens.compare_exchange_weak(have, have - one_token,
                                                      std::memory_order_relaxed)) {
        shared_->retries_allowed.fetch_add(1, std::memory_order_relaxed);
        return true;
      }
    }
    shared_->retries_refused.fetch_add(1, std::memory_order_relaxed);
    return false;
  }

  budget_snapshot snapshot() const noexcept {
    budget_snapshot s;
    s.tokens = static_cast<double>(shared_->micro_tokens.load()) / one_token;
    s.first_attempts = shared_->first_attempts.load();
    s.retries_allowed = shared_->retries_allowed.load();
    s.retries_refused = shared_->retries_refused.load();
    s.successes = shared_->successes.load();
    return s;
  }
  const budget_options& options() const noexcept { return shared_->options; }

 private:
  static constexpr std::int64_t one_token = 1'000'000;

  struct shared {
    explicit shared(budget_options o)
        : options(o),
          max_micro(static_cast<std::int64_t>(o.max_tokens * one_token)),
          earn_per_success(static_cast<std::int64_t>(o.retry_ratio * one_token)),
          micro_tokens(static_cast<std::int64_t>(o.initial_tokens * one_token)) {}
    budget_options options;
    std::int64_t max_micro;
    std::int64_t earn_per_success;
    std::atomic<std::int64_t> micro_tokens;
    std::atomic<std::int64_t> last_refill_ns{std::numeric_limits<std::int64_t>::min()};
    std::atomic<std::uint64_t> first_attempts{0}, retries_allowed{0}, retries_refused{0},
        successes{0};
  };

  void add(std::int64_t micro) const noexcept {
    if (micro <= 0) return;
    std::int64_t have = shared_->micro_tokens.load(std::memory_order_relaxed);
    std::int64_t want = 0;
    do {
      if (have >= shared_->max_micro) return;
      want = std::min(shared_->max_micro, have + micro);
    } while (!shared_->micro_tokens.compare_exchange_weak(have, want, std::memory_order_relaxed));
  }

  // The floor: min_retries_per_second tokens per second of elapsed time, credited lazily.
  void refill(time_point now) const noexcept {
    const double rate = shared_->options.min_retries_per_second;
    if (rate <= 0.0) return;
    const std::int64_t now_ns = now.time_since_epoch().count();
    std::int64_t last = shared_->last_refill_ns.load(std::memory_order_relaxed);
    if (last == std::numeric_limits<std::int64_t>::min()) {
      shared_->last_refill_ns.compare_exchange_strong(last, now_ns, std::memory_order_relaxed);
      return;
    }
    if (now_ns <= last) return;
    const double earned = static_cast<double>(now_ns - last) * 1e-9 * rate * one_token;
    if (earned < 1.0) return;
    if (shared_->last_refill_ns.compare_exchange_strong(last, now_ns, std::memory_order_relaxed))
      add(static_cast<std::int64_t>(std::min(earned, static_cast<double>(shared_->max_micro))));
  }

  std::shared_ptr<shared> shared_;
};

// The default: no budget, every retry the retry policy allows goes.
struct no_budget {
  void on_first_attempt(time_point) const noexcept {}
  void on_success(time_point) const noexcept {}
  bool try_retry(time_point) const noexcept { return true; }
};

}  // namespace failover
