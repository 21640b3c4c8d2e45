// A retry budget shared across requests: first attempts always go, each retry spends a token,
// successes earn tokens back, and a small floor of retries per second keeps quiet clients working.
// During an outage it caps the extra load retries add, whatever each request's own retry policy
// says.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "failover/core/clock.hpp"
#include "failover/gates/budget_rules.hpp"
#include "failover/gates/gate.hpp"

namespace failover {

struct budget_snapshot {
  double tokens = 0;
  std::uint64_t first_attempts = 0;
  std::uint64_t retries_allowed = 0;
  std::uint64_t retries_refused = 0;
  std::uint64_t successes = 0;
};

// The default retry budget. Copies share one bucket. Lock-free: the bucket's two moving words
// are atomics, each changed by a compare-and-set loop around its rule in budget_rules, so the
// success path is one increment and one compare-and-set.
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
    earn(shared_->limits.earn_per_success);
  }

  // Before a retry: spends one token if there is one. False means: do not retry, fall back.
  bool try_retry(time_point now) const noexcept {
    refill(now);
    std::int64_t have = shared_->micro_tokens.load(std::memory_order_relaxed);
    while (const auto left = budget_rules::spend(have)) {
      if (shared_->micro_tokens.compare_exchange_weak(have, *left, std::memory_order_relaxed)) {
        shared_->retries_allowed.fetch_add(1, std::memory_order_relaxed);
        return true;
      }
    }
    shared_->retries_refused.fetch_add(1, std::memory_order_relaxed);
    return false;
  }

  budget_snapshot snapshot() const noexcept {
    budget_snapshot s;
    s.tokens = static_cast<double>(shared_->micro_tokens.load()) / budget_rules::one_token;
    s.first_attempts = shared_->first_attempts.load();
    s.retries_allowed = shared_->retries_allowed.load();
    s.retries_refused = shared_->retries_refused.load();
    s.successes = shared_->successes.load();
    return s;
  }
  const budget_options& options() const noexcept { return shared_->options; }

 private:
  struct shared {
    explicit shared(budget_options o)
        : options(o),
          limits(budget_rules::limits_of(o)),
          micro_tokens(budget_rules::fresh(o).micro_tokens) {}
    budget_options options;
    budget_rules::limits limits;
    std::atomic<std::int64_t> micro_tokens;
    std::atomic<std::int64_t> last_refill_ns{budget_rules::never};
    std::atomic<std::uint64_t> first_attempts{0}, retries_allowed{0}, retries_refused{0},
        successes{0};
  };

  void earn(std::int64_t micro) const noexcept {
    std::int64_t have = shared_->micro_tokens.load(std::memory_order_relaxed);
    std::int64_t want = 0;
    do {
      want = budget_rules::earn(have, micro, shared_->limits);
      if (want == have) return;
    } while (!shared_->micro_tokens.compare_exchange_weak(have, want, std::memory_order_relaxed));
  }

  // The floor: whoever moves the refill clock credits what the time since the last move earned.
  void refill(time_point now) const noexcept {
    std::int64_t last = shared_->last_refill_ns.load(std::memory_order_relaxed);
    const budget_rules::refill_step r =
        budget_rules::refill(last, now.time_since_epoch().count(), shared_->limits);
    if (r.last_refill_ns == last) return;
    if (shared_->last_refill_ns.compare_exchange_strong(last, r.last_refill_ns,
                                                        std::memory_order_relaxed))
      earn(r.earned_micro);
  }

  std::shared_ptr<shared> shared_;
};

}  // namespace failover
