// An event loop in virtual time for the callback driver: posted work runs in order, and when
// nothing is ready the fake clock jumps to the earliest timer. Tests run async calls without
// sleeping.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <utility>

#include "failover/core/clock.hpp"
#include "failover/testing.hpp"

namespace failover::testing {

class fake_loop {
 public:
  explicit fake_loop(const fake_clock& clock) : clock_(clock) {}

  // The loop contract of drivers/callback.hpp. post() may be called from any thread.
  void post(std::function<void()> f) {
    std::lock_guard<std::mutex> lock(mutex_);
    ready_.push_back(std::move(f));
  }
  void at(time_point t, std::function<void()> f) {
    std::lock_guard<std::mutex> lock(mutex_);
    timers_.emplace(std::make_pair(t, seq_++), std::move(f));
  }

  // Runs until nothing is ready and no timer is left; returns the number of functions run.
  std::size_t run() {
    std::size_t n = 0;
    while (auto f = next()) {
      f();
      ++n;
    }
    return n;
  }
  const fake_clock& clock() const noexcept { return clock_; }

 private:
  std::function<void()> next() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!ready_.empty()) {
      auto f = std::move(ready_.front());
      ready_.pop_front();
      return f;
    }
    if (timers_.empty()) return {};
    auto it = timers_.begin();
    if (it->first.first > clock_.now()) clock_.advance(it->first.first - clock_.now());
    auto f = std::move(it->second);
    timers_.erase(it);
    return f;
  }

  fake_clock clock_;
  std::mutex mutex_;
  std::deque<std::function<void()>> ready_;
  std::map<std::pair<time_point, std::uint64_t>, std::function<void()>> timers_;
  std::uint64_t seq_ = 0;
};

}  // namespace failover::testing
