// Shared model health: a per-key circuit breaker that many chains and threads consult, so that an
// outage stops costing every request its time on a dead model. Time always comes in as an argument.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "failover/clock.hpp"
#include "failover/error.hpp"

namespace failover {

enum class circuit_state : std::uint8_t { closed, open, half_open };

constexpr std::string_view to_string(circuit_state s) noexcept {
  switch (s) {
    case circuit_state::closed:
      return "closed";
    case circuit_state::open:
      return "open";
    case circuit_state::half_open:
      return "half-open";
  }
  return "closed";
}

// Defaults and why: docs/architecture.md ("Shared health").
struct breaker_options {
  int consecutive_failures = 5;  // transient failures in a row that open the circuit
  double failure_ratio = 0.5;    // or this share of failures over the window...
  int min_calls = 20;            // ...once the window holds at least this many calls
  duration window = std::chrono::seconds(30);
  duration cooldown = std::chrono::seconds(30);      // the first open period
  double cooldown_multiplier = 2.0;                  // each failed probe lengthens it...
  duration max_cooldown = std::chrono::seconds(60);  // ...up to this: probes are cheap
  int half_open_probes = 1;                          // calls let through at once while half-open
  bool open_on_auth_errors = true;  // unauthorized / forbidden / not_found open at once

  void validate() const {
    auto bad = [](const char* what) {
      throw std::invalid_argument(std::string("failover::breaker_options: ") + what);
    };
    constexpr duration year = std::chrono::hours(24 * 365);
    if (consecutive_failures < 1) bad("consecutive_failures must be >= 1");
    if (!(failure_ratio > 0.0 && failure_ratio <= 1.0)) bad("failure_ratio must be in (0, 1]");
    if (min_calls < 1) bad("min_calls must be >= 1");
    if (window <= duration::zero() || window > year) bad("window must be in (0, 1 year]");
    if (cooldown <= duration::zero() || cooldown > year) bad("cooldown must be in (0, 1 year]");
    if (!(cooldown_multiplier >= 1.0) || cooldown_multiplier > 1e6)
      bad("cooldown_multiplier must be in [1, 1e6]");
    if (max_cooldown < cooldown || max_cooldown > year)
      bad("max_cooldown must be in [cooldown, 1 year]");
    if (half_open_probes < 1) bad("half_open_probes must be >= 1");
  }
};

// A state change, for logs and metrics.
struct circuit_event {
  std::string_view key;
  circuit_state from;
  circuit_state to;
  time_point until;    // when open: the earliest time a probe may go
  const error* cause;  // the failure that opened it (null on close / half-open)
};

// A snapshot of one key, for dashboards and tests.
struct circuit_snapshot {
  std::string key;
  circuit_state state = circuit_state::closed;
  time_point open_until{};
  int consecutive_failures = 0;
  std::uint64_t successes = 0;  // recorded since creation
  std::uint64_t failures = 0;   // counted failures since creation
  std::uint64_t rejected = 0;   // calls refused while open / half-open
  std::uint64_t opened = 0;     // times it opened
};

// What admit() says about the next call on a key.
struct admission {
  bool allowed = true;
  bool probe = false;  // the call is a half-open probe: its result decides the state
  time_point until{};  // when refused: when the key may be tried again
};

namespace detail {

// Does this error say something about the model (rather than about the request)?
inline bool counts_against_model(const error& e) noexcept {
  switch (e.kind) {
    case error_kind::bad_request:
    case error_kind::content_policy:
    case error_kind::context_window:
    case error_kind::cancelled:
    case error_kind::deadline_exceeded:
    case error_kind::circuit_open:
      return false;
    default:
      // Other 4xx and unmapped exceptions (kind unknown, permanent) say nothing about the model.
      return e.transient || e.kind == error_kind::unauthorized || e.kind == error_kind::forbidden ||
             e.kind == error_kind::not_found;
  }
}

// A server's requested wait holds the key only on 429, 503 and 529: answers that speak for the
// model as a whole, not for this one request.
inline bool holds_model(const error& e) noexcept {
  if (!e.retry_after || *e.retry_after <= duration::zero()) return false;
  if (e.kind == error_kind::rate_limited || e.kind == error_kind::overloaded) return true;
  return e.kind == error_kind::server_error && e.status && *e.status == 503;
}

inline bool opens_at_once(const error& e, const breaker_options& o) noexcept {
  return o.open_on_auth_errors &&
         (e.kind == error_kind::unauthorized || e.kind == error_kind::forbidden ||
          e.kind == error_kind::not_found);
}

// One key's state. The closed-state success path is two relaxed atomic loads and at most two
// atomic increments; the mutex is taken only on failures and state changes.
class model_health {
 public:
  static constexpr int buckets = 10;

  model_health(std::string key, const breaker_options& o)
      : key_(std::move(key)), cooldown_(o.cooldown) {}

  const std::string& key() const noexcept { return key_; }

  template <class Notify>
  admission admit(time_point now, const breaker_options& o, Notify&& notify) {
    const auto s = static_cast<circuit_state>(state_.load(std::memory_order_acquire));
    if (s == circuit_state::closed) return {};
    std::lock_guard<std::mutex> lock(mutex_);
    auto st = static_cast<circuit_state>(state_.load(std::memory_order_relaxed));
    if (st == circuit_state::open) {
      if (now < open_until_) {
        rejected_.fetch_add(1, std::memory_order_relaxed);
        return {false, false, open_until_};
      }
      if (!tripped_) {  // held only by a server's wait, which is over: no probe needed
        set_state(circuit_state::closed);
        notify(circuit_event{key_, circuit_state::open, circuit_state::closed, now, nullptr});
        return {};
      }
      set_state(circuit_state::half_open);
      probes_ = 0;
      notify(
          circuit_event{key_, circuit_state::open, circuit_state::half_open, open_until_, nullptr});
      st = circuit_state::half_open;
    }
    if (st == circuit_state::half_open) {
      // A probe that never reported (its call was abandoned, or its result lost) must not wedge
      // the key: after a cooldown its slot is free again.
      if (probes_ >= o.half_open_probes && now - probe_since_ >= cooldown_) probes_ = 0;
      if (probes_ < o.half_open_probes) {
        if (probes_ == 0) probe_since_ = now;
        ++probes_;
        return {true, true, open_until_};
      }
      rejected_.fetch_add(1, std::memory_order_relaxed);
      return {false, false, now};  // a probe is out: come back when it has answered
    }
    return {};
  }

  template <class Notify>
  void on_success(time_point now, bool probe, const breaker_options& o, Notify&& notify) {
    successes_.fetch_add(1, std::memory_order_relaxed);
    if (consecutive_.load(std::memory_order_relaxed) != 0)
      consecutive_.store(0, std::memory_order_relaxed);
    bump(now, o, false);
    if (!probe &&
        state_.load(std::memory_order_acquire) == static_cast<std::uint8_t>(circuit_state::closed))
      return;
    std::lock_guard<std::mutex> lock(mutex_);
    const auto st = static_cast<circuit_state>(state_.load(std::memory_order_relaxed));
    if (probe && probes_ > 0 && st == circuit_state::half_open) --probes_;
    if (st != circuit_state::closed && now >= open_until_) {
      set_state(circuit_state::closed);
      cooldown_ = o.cooldown;
      tripped_ = false;
      reset_window();
      notify(circuit_event{key_, st, circuit_state::closed, now, nullptr});
    }
  }

  template <class Notify>
  void on_failure(time_point now, const error& e, bool probe, const breaker_options& o,
                  Notify&& notify) {
    const bool counts = counts_against_model(e);
    std::lock_guard<std::mutex> lock(mutex_);
    const auto st = static_cast<circuit_state>(state_.load(std::memory_order_relaxed));
    if (probe && probes_ > 0 && st == circuit_state::half_open) --probes_;
    // A server's requested wait holds the key until then (at most max_cooldown: a probe a minute
    // is cheap, a year-long hold from one header is not), whatever the counters say.
    std::optional<time_point> server_until;
    if (holds_model(e)) server_until = now + std::min<duration>(*e.retry_after, o.max_cooldown);
    if (!counts && !server_until) return;
    bool trip = false;
    if (counts) {
      failures_.fetch_add(1, std::memory_order_relaxed);
      const int run = consecutive_.fetch_add(1, std::memory_order_relaxed) + 1;
      bump(now, o, true);
      trip = st == circuit_state::half_open || run >= o.consecutive_failures ||
             opens_at_once(e, o) || ratio_exceeded(now, o);
    }
    if (!trip && !server_until) return;
    time_point until = server_until.value_or(now);
    if (trip) {
      if (st == circuit_state::half_open) {  // a failed probe: back off longer, within bounds
        const double next =
            std::chrono::duration<double>(cooldown_).count() * o.cooldown_multiplier;
        cooldown_ = std::min<duration>(
            o.max_cooldown,
            std::chrono::duration_cast<duration>(std::chrono::duration<double>(
                std::min(next, std::chrono::duration<double>(o.max_cooldown).count()))));
      }
      until = std::max(until, now + cooldown_);
      tripped_ = true;
    }
    // Re-opening keeps the later deadline, never the shorter one.
    if (st == circuit_state::open) until = std::max(until, open_until_);
    open_until_ = until;
    if (st != circuit_state::open) {
      if (!trip) tripped_ = st == circuit_state::half_open;  // a held half-open key stays tripped
      set_state(circuit_state::open);
      opened_.fetch_add(1, std::memory_order_relaxed);
      notify(circuit_event{key_, st, circuit_state::open, open_until_, &e});
    }
  }

  // Would a call at `t` be refused? Read-only: no transition, no counter.
  bool would_refuse(time_point t) const {
    if (state_.load(std::memory_order_acquire) == static_cast<std::uint8_t>(circuit_state::closed))
      return false;
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<circuit_state>(state_.load(std::memory_order_relaxed)) ==
               circuit_state::open &&
           t < open_until_;
  }

  circuit_snapshot snapshot() const {
    std::lock_guard<std::mutex> lock(mutex_);
    circuit_snapshot s;
    s.key = key_;
    s.state = static_cast<circuit_state>(state_.load());
    s.open_until = open_until_;
    s.consecutive_failures = consecutive_.load();
    s.successes = successes_.load();
    s.failures = failures_.load();
    s.rejected = rejected_.load();
    s.opened = opened_.load();
    return s;
  }

 private:
  // Marks a bucket that holds no calls: below any epoch a clock can produce.
  static constexpr std::int64_t unused = std::numeric_limits<std::int64_t>::min();

  struct bucket {
    std::atomic<std::int64_t> epoch{unused};
    std::atomic<std::int32_t> calls{0};
    std::atomic<std::int32_t> failed{0};
  };

  static std::int64_t bucket_epoch(time_point now, const breaker_options& o) noexcept {
    const auto width = std::max<std::int64_t>(1, o.window.count() / buckets);
    return now.time_since_epoch().count() / width;
  }

  // Counts a call in the sliding window. A bucket that belongs to an older epoch is reset first;
  // a race between two resets can lose a count, which a failure-ratio heuristic tolerates (the
  // exact totals above are kept separately).
  void bump(time_point now, const breaker_options& o, bool failed) noexcept {
    const std::int64_t ep = bucket_epoch(now, o);
    bucket& b = window_[static_cast<std::size_t>(((ep % buckets) + buckets) % buckets)];
    std::int64_t seen = b.epoch.load(std::memory_order_acquire);
    if (seen != ep && b.epoch.compare_exchange_strong(seen, ep, std::memory_order_acq_rel)) {
      b.calls.store(0, std::memory_order_relaxed);
      b.failed.store(0, std::memory_order_relaxed);
    }
    b.calls.fetch_add(1, std::memory_order_relaxed);
    if (failed) b.failed.fetch_add(1, std::memory_order_relaxed);
  }

  bool ratio_exceeded(time_point now, const breaker_options& o) const noexcept {
    const std::int64_t ep = bucket_epoch(now, o);
    std::int64_t calls = 0, failed = 0;
    for (const auto& b : window_) {
      const std::int64_t e = b.epoch.load(std::memory_order_acquire);
      if (e != unused && e <= ep && e > ep - buckets) {
        calls += b.calls.load(std::memory_order_relaxed);
        failed += b.failed.load(std::memory_order_relaxed);
      }
    }
    return calls >= o.min_calls &&
           static_cast<double>(failed) >= o.failure_ratio * static_cast<double>(calls);
  }

  void reset_window() noexcept {
    for (auto& b : window_) {
      b.epoch.store(unused, std::memory_order_relaxed);
      b.calls.store(0, std::memory_order_relaxed);
      b.failed.store(0, std::memory_order_relaxed);
    }
    consecutive_.store(0, std::memory_order_relaxed);
  }

  void set_state(circuit_state s) noexcept {
    state_.store(static_cast<std::uint8_t>(s), std::memory_order_release);
  }

  const std::string key_;
  std::atomic<std::uint8_t> state_{static_cast<std::uint8_t>(circuit_state::closed)};
  std::atomic<int> consecutive_{0};
  std::atomic<std::uint64_t> successes_{0}, failures_{0}, rejected_{0}, opened_{0};
  std::array<bucket, buckets> window_{};
  mutable std::mutex mutex_;  // guards the fields below and every state change
  time_point open_until_{};
  duration cooldown_;
  int probes_ = 0;
  time_point probe_since_{};  // when the current half-open period's first probe went
  bool tripped_ = false;      // opened by failures (needs a probe), not only held by a server
};

}  // namespace detail

// The health registry: one breaker state per key, shared by every chain and thread that holds a
// copy of this object (copies share the registry). Keys are chain entry names by default, so name
// entries "provider/model" to share health across chains that call the same model.
class circuit_breaker {
 public:
  using handle = detail::model_health*;
  using listener_type = std::function<void(const circuit_event&)>;

  explicit circuit_breaker(breaker_options options = {})
      : shared_(std::make_shared<shared>((options.validate(), options))) {}
  // No move of its own: a move shares the registry as a copy does, so a breaker moved from
  // (`chain.set_breaker(std::move(health)); health.snapshot();`) still reads the same health,
  // and no call needs a check for a registry that is gone.
  circuit_breaker(const circuit_breaker&) = default;
  circuit_breaker& operator=(const circuit_breaker&) = default;
  ~circuit_breaker() = default;

  // Resolves a key once (at chain set-up); the handle stays valid while any copy lives.
  handle resolve(std::string_view key) const {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    auto it = shared_->models.find(std::string(key));
    if (it == shared_->models.end())
      it = shared_->models
               .emplace(std::string(key),
                        std::make_unique<detail::model_health>(std::string(key), shared_->options))
               .first;
    return it->second.get();
  }

  // The calls' side is noexcept (the driver requires it of every breaker): a lock that cannot be
  // taken ends the program rather than a call with no outcome.
  admission admit(handle h, time_point now) const noexcept {
    return h->admit(now, shared_->options, notifier());
  }
  void on_success(handle h, time_point now, bool probe) const noexcept {
    h->on_success(now, probe, shared_->options, notifier());
  }
  void on_failure(handle h, time_point now, const error& e, bool probe) const noexcept {
    h->on_failure(now, e, probe, shared_->options, notifier());
  }
  // Would a call at `t` be refused? Lets a retry that would wait only to find the circuit still
  // open give up at once.
  bool would_refuse(handle h, time_point t) const noexcept { return h->would_refuse(t); }

  // Called on every state change (opened, half-open, closed) while the key's own lock is held:
  // keep it short and do not call back into the breaker. Set it before sharing the breaker.
  void on_change(listener_type l) { shared_->listener = std::move(l); }

  std::vector<circuit_snapshot> snapshot() const {
    std::vector<circuit_snapshot> out;
    std::lock_guard<std::mutex> lock(shared_->mutex);
    out.reserve(shared_->models.size());
    for (const auto& kv : shared_->models) out.push_back(kv.second->snapshot());
    return out;
  }
  std::optional<circuit_snapshot> snapshot(std::string_view key) const {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    auto it = shared_->models.find(std::string(key));
    if (it == shared_->models.end()) return std::nullopt;
    return it->second->snapshot();
  }
  const breaker_options& options() const noexcept { return shared_->options; }

 private:
  struct shared {
    explicit shared(breaker_options o) : options(o) {}
    breaker_options options;
    std::mutex mutex;
    std::unordered_map<std::string, std::unique_ptr<detail::model_health>> models;
    listener_type listener;
  };
  struct notify {
    const shared* s;
    void operator()(const circuit_event& e) const noexcept {
      if (!s->listener) return;
      try {
        s->listener(e);
      } catch (...) {  // NOLINT(bugprone-empty-catch): observing must not change the call
      }
    }
  };
  notify notifier() const noexcept { return notify{shared_.get()}; }
  std::shared_ptr<shared> shared_;
};

// The default: no shared health. Every member is an empty inline function.
struct no_breaker {
  using handle = std::nullptr_t;
  handle resolve(std::string_view) const noexcept { return nullptr; }
  admission admit(handle, time_point) const noexcept { return {}; }
  void on_success(handle, time_point, bool) const noexcept {}
  void on_failure(handle, time_point, const error&, bool) const noexcept {}
  bool would_refuse(handle, time_point) const noexcept { return false; }
};

}  // namespace failover
