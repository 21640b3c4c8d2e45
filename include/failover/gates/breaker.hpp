// Shared model health: a per-key circuit breaker that many chains and threads consult, so that an
// outage stops costing every request its time on a dead model. Time always comes in as an argument.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "failover/core/clock.hpp"
#include "failover/core/error.hpp"
#include "failover/gates/breaker_rules.hpp"
#include "failover/gates/gate.hpp"
#include "failover/gates/state_store.hpp"

namespace failover {

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

namespace detail {

using breaker_rules::counts_against_model;
using breaker_rules::holds_model;
using breaker_rules::opens_at_once;

// What the breaker keeps beside each key's locked state, so that a closed key's calls take no
// lock: the key's mode, published after every rule that ran under the lock, and a tally of the
// successes since then. A success commutes with every other (breaker_rules::count_success), so it
// is tallied here with relaxed atomics and folded into the state before the next rule runs. The
// closed-state success path is then two relaxed loads, at most two increments and one acquire
// load; the key's mutex is taken only on failures, probes and state changes.
struct breaker_side {
  struct bucket {
    std::atomic<std::int64_t> epoch{breaker_rules::unused_epoch};
    std::atomic<std::int32_t> calls{0};
  };
  std::atomic<std::uint8_t> mode{static_cast<std::uint8_t>(circuit_state::closed)};
  std::atomic<std::uint64_t> successes{0};
  std::atomic<bool> run_ended{false};  // a success since the last fold: the failure run is over
  std::array<bucket, breaker_rules::window_buckets> window{};

  circuit_state published() const noexcept {
    return static_cast<circuit_state>(mode.load(std::memory_order_acquire));
  }

  // breaker_rules::count_success, deferred. A bucket of an older epoch is emptied first; a race
  // between two resets can lose a count, which a failure-ratio heuristic tolerates (the exact
  // total is kept separately).
  void tally_success(time_point now, const breaker_options& o) noexcept {
    successes.fetch_add(1, std::memory_order_relaxed);
    if (!run_ended.load(std::memory_order_relaxed))
      run_ended.store(true, std::memory_order_relaxed);
    const std::int64_t ep = breaker_rules::bucket_epoch(now, o);
    bucket& b = window[breaker_rules::bucket_index(ep)];
    std::int64_t seen = b.epoch.load(std::memory_order_acquire);
    if (seen != ep && b.epoch.compare_exchange_strong(seen, ep, std::memory_order_acq_rel))
      b.calls.store(0, std::memory_order_relaxed);
    b.calls.fetch_add(1, std::memory_order_relaxed);
  }

  // Moves the tally into the state (under the key's lock).
  void fold_into(breaker_rules::state& s) noexcept {
    s.successes += successes.exchange(0, std::memory_order_relaxed);
    if (run_ended.exchange(false, std::memory_order_relaxed)) s.consecutive = 0;
    for (auto& b : window) {
      if (b.calls.load(std::memory_order_relaxed) == 0) continue;
      const std::int32_t calls = b.calls.exchange(0, std::memory_order_relaxed);
      if (calls > 0) breaker_rules::add_calls(s, b.epoch.load(std::memory_order_acquire), calls, 0);
    }
  }
};

}  // namespace detail

// The health registry: one breaker state per key, shared by every chain and thread that holds a
// copy of this object (copies share the registry). Keys are chain entry names by default, so name
// entries "provider/model" to share health across chains that call the same model.
class circuit_breaker {
  using store_type = in_process_store<breaker_rules::state, detail::breaker_side>;

 public:
  using handle = store_type::handle;
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
    const breaker_options& o = shared_->options;
    return shared_->store.resolve(key, [&o] { return breaker_rules::fresh(o); });
  }

  // The calls' side is noexcept (the driver requires it of every breaker): a lock that cannot be
  // taken ends the program rather than a call with no outcome.
  admission admit(handle h, time_point now) const noexcept {
    if (store_type::side(h).published() == circuit_state::closed) return {};  // the rule's answer
    return update(h, [&](breaker_rules::state& s) {
      const breaker_rules::admit_result r = breaker_rules::admit(s, shared_->options, now);
      if (r.changed) notify(h, *r.changed, nullptr);
      return r.verdict;
    });
  }
  void on_success(handle h, time_point now, bool probe) const noexcept {
    detail::breaker_side& side = store_type::side(h);
    side.tally_success(now, shared_->options);
    if (!breaker_rules::success_settles(side.published(), probe)) return;
    update(h, [&](breaker_rules::state& s) {
      if (const auto c = breaker_rules::settle_success(s, shared_->options, now, probe))
        notify(h, *c, nullptr);
    });
  }
  void on_failure(handle h, time_point now, const error& e, bool probe) const noexcept {
    update(h, [&](breaker_rules::state& s) {
      if (const auto c = breaker_rules::on_failure(s, shared_->options, now, e, probe))
        notify(h, *c, &e);
    });
  }
  // Would a call at `t` be refused? Lets a retry that would wait only to find the circuit still
  // open give up at once.
  bool would_refuse(handle h, time_point t) const noexcept {
    if (store_type::side(h).published() == circuit_state::closed) return false;
    return shared_->store.read(
        h, [t](const breaker_rules::state& s) { return breaker_rules::would_refuse(s, t); });
  }

  // Called on every state change (opened, half-open, closed) while the key's own lock is held:
  // keep it short and do not call back into the breaker. Set it before sharing the breaker.
  void on_change(listener_type l) { shared_->listener = std::move(l); }

  std::vector<circuit_snapshot> snapshot() const {
    std::vector<circuit_snapshot> out;
    out.reserve(shared_->store.size());
    shared_->store.for_each([&](handle h) { out.push_back(snapshot_of(h)); });
    return out;
  }
  std::optional<circuit_snapshot> snapshot(std::string_view key) const {
    const handle h = shared_->store.find(key);
    if (!h) return std::nullopt;
    return snapshot_of(h);
  }
  const breaker_options& options() const noexcept { return shared_->options; }

 private:
  struct shared {
    explicit shared(breaker_options o) : options(o) {}
    breaker_options options;
    store_type store;
    listener_type listener;
  };

  // A rule under the key's lock: the tally goes in first, the new mode is published last.
  template <class F, class R = std::invoke_result_t<F&, breaker_rules::state&>>
  R update(handle h, F&& f) const {
    return shared_->store.update(h, [&](breaker_rules::state& s) -> R {
      detail::breaker_side& side = store_type::side(h);
      side.fold_into(s);
      struct publish {
        detail::breaker_side& side;
        const breaker_rules::state& s;
        ~publish() {
          side.mode.store(static_cast<std::uint8_t>(s.mode), std::memory_order_release);
        }
      } on_exit{side, s};
      return f(s);
    });
  }

  circuit_snapshot snapshot_of(handle h) const {
    return update(h, [h](const breaker_rules::state& s) {
      circuit_snapshot out;
      out.key = store_type::key(h);
      out.state = s.mode;
      out.open_until = s.open_until;
      out.consecutive_failures = s.consecutive;
      out.successes = s.successes;
      out.failures = s.failures;
      out.rejected = s.rejected;
      out.opened = s.opened;
      return out;
    });
  }

  void notify(handle h, const breaker_rules::change& c, const error* cause) const noexcept {
    if (!shared_->listener) return;
    try {
      shared_->listener(circuit_event{store_type::key(h), c.from, c.to, c.until, cause});
    } catch (...) {  // NOLINT(bugprone-empty-catch): observing must not change the call
    }
  }

  std::shared_ptr<shared> shared_;
};

}  // namespace failover
