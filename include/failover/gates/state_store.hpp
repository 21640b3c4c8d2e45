// Where a gate keeps its per-key state: a key resolves once to a handle, and the one operation a
// gate needs is a read-modify-write of that key's state, run atomically. In-process here.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace failover {

// What a gate keeps beside a key's state when it needs nothing there.
struct no_side {};

// The store the gates use today: a registry of keys, each with its state under its own mutex.
//
// The operations, and what a store kept elsewhere (Redis) does for each:
//   resolve(key, make) → handle   once per key at set-up; `make()` builds a new key's state
//   update(h, f)                  f(State&) run atomically on the key's state; returns f's result
//   read(h, f)                    f(const State&) on a consistent state
//   for_each(f), find(key)        snapshots
// Here f runs once, under the key's lock. A store that fetches the state, runs f on a copy and
// writes it back with a compare-and-set may run f again after a conflict, so whatever f does
// besides changing the state (telling a listener) must then move after update returns.
//
// `Side` is lock-free data a gate keeps beside each key in this process only (the breaker keeps
// its mode there, for calls that need no lock, and a tally of successes): it must be safe to use
// from many threads without the key's lock. It is built by default and never copied.
template <class State, class Side = no_side>
class in_process_store {
  struct slot {
    slot(std::string k, State s) : key(std::move(k)), state(std::move(s)) {}
    const std::string key;
    Side side{};
    std::mutex mutex;  // guards `state`
    State state;
  };

 public:
  using state_type = State;
  using side_type = Side;
  using handle = slot*;  // valid while the store lives

  in_process_store() = default;
  in_process_store(const in_process_store&) = delete;
  in_process_store& operator=(const in_process_store&) = delete;

  template <class Make>
  handle resolve(std::string_view key, Make&& make) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = slots_.find(std::string(key));
    if (it == slots_.end())
      it = slots_.emplace(std::string(key), std::make_unique<slot>(std::string(key), make())).first;
    return it->second.get();
  }

  // Null when the key was never resolved.
  handle find(std::string_view key) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = slots_.find(std::string(key));
    return it == slots_.end() ? nullptr : it->second.get();
  }

  template <class F>
  decltype(auto) update(handle h, F&& f) {
    std::lock_guard<std::mutex> lock(h->mutex);
    return std::forward<F>(f)(h->state);
  }

  template <class F>
  decltype(auto) read(handle h, F&& f) const {
    std::lock_guard<std::mutex> lock(h->mutex);
    return std::forward<F>(f)(static_cast<const State&>(h->state));
  }

  // f(handle) for every key, under the registry's lock (no key is added meanwhile): f may take a
  // key's lock through update or read, never resolve or find.
  template <class F>
  void for_each(F&& f) const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& kv : slots_) f(kv.second.get());
  }

  std::size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return slots_.size();
  }

  static const std::string& key(handle h) noexcept { return h->key; }
  static Side& side(handle h) noexcept { return h->side; }

 private:
  mutable std::mutex mutex_;  // guards the map, not the states
  std::unordered_map<std::string, std::unique_ptr<slot>> slots_;
};

}  // namespace failover
