// Test support: a fake clock and a sleeper that advances it, so code built on failover (and
// failover's own tests) can run every retry path in virtual time without sleeping.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "failover/core/clock.hpp"
#include "failover/policies.hpp"

namespace failover::testing {

// A manually advanced clock. Copies share one time line, so a test keeps a copy and the chain
// under test holds another. Thread-safe.
class fake_clock {
 public:
  fake_clock() : state_(std::make_shared<state>()) {}
  explicit fake_clock(wall_time wall_start) : fake_clock() {
    state_->wall_offset = wall_start.time_since_epoch();
  }
  // No move of its own: a move shares the time line as a copy does, so a clock moved from (in a
  // chain or retrier moved from) still reads the time instead of a null state.
  fake_clock(const fake_clock&) = default;
  fake_clock& operator=(const fake_clock&) = default;

  time_point now() const noexcept { return time_point(duration(state_->elapsed.load())); }
  wall_time wall_now() const noexcept {
    return wall_time(std::chrono::duration_cast<wall_time::duration>(
        state_->wall_offset + duration(state_->elapsed.load())));
  }
  void advance(duration d) const noexcept { state_->elapsed.fetch_add(d.count()); }
  // Time since the clock was made.
  duration elapsed() const noexcept { return duration(state_->elapsed.load()); }

 private:
  struct state {
    std::atomic<duration::rep> elapsed{0};
    wall_time::duration wall_offset =
        std::chrono::duration_cast<wall_time::duration>(std::chrono::hours(24 * 365 * 56));
  };
  std::shared_ptr<state> state_;
};

// A sleeper that records each wait and advances a fake_clock instead of sleeping. Copies share
// the record. `on_sleep` (optional) runs before each wait returns, e.g. to cancel a token mid-call.
class fake_sleeper {
 public:
  fake_sleeper() : fake_sleeper(fake_clock{}) {}
  explicit fake_sleeper(const fake_clock& clock)
      : clock_(clock), state_(std::make_shared<state>()) {}
  // As fake_clock: a move shares the record as a copy does.
  fake_sleeper(const fake_sleeper&) = default;
  fake_sleeper& operator=(const fake_sleeper&) = default;

  bool sleep_for(duration d, const cancel_token& token) const {
    if (token.cancelled()) return false;
    std::function<void(duration)> hook;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->sleeps.push_back(d);
      hook = state_->on_sleep;
    }
    if (hook) hook(d);
    if (token.cancelled()) return false;
    clock_.advance(d);
    return true;
  }

  std::vector<duration> sleeps() const {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->sleeps;
  }
  void on_sleep(std::function<void(duration)> f) {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->on_sleep = std::move(f);
  }
  const fake_clock& clock() const noexcept { return clock_; }

 private:
  struct state {
    std::mutex mutex;
    std::vector<duration> sleeps;
    std::function<void(duration)> on_sleep;
  };
  fake_clock clock_;
  std::shared_ptr<state> state_;
};

// Policies for tests: fake time, real classifier and backoff.
struct fake_policies : default_policies {
  using clock = fake_clock;
  using sleeper = fake_sleeper;
};

// Points a retrier's or chain's clock and sleeper at one shared fake time line.
template <class T>
fake_sleeper use_fake_time(T& target, const fake_clock& clock) {
  target.clock() = clock;
  target.sleeper() = fake_sleeper(clock);
  return target.sleeper();
}

}  // namespace failover::testing
