// The attempts a call has in flight, by id: usually one, several when a driver hedges. A table of
// fixed size inside the machine, so that a call makes no allocation for its attempts.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "failover/clock.hpp"
#include "failover/context.hpp"
#include "failover/machine/events.hpp"

namespace failover::detail {

template <class Tickets, std::size_t N>
class attempt_table {
 public:
  struct slot {
    attempt_id id = 0;  // 0: free
    std::size_t entry = 0;
    std::size_t record = 0;  // the attempt's record in the trace
    time_point started{};
    Tickets tickets{};
    attempt_context context;
  };

  attempt_table() = default;
  attempt_table(const attempt_table&) = delete;
  attempt_table& operator=(const attempt_table&) = delete;
  // A machine moved from has nothing in flight: only the one moved to reports its attempts.
  attempt_table(attempt_table&& other) noexcept : slots_(other.slots_), next_(other.next_) {
    other.clear();
  }
  attempt_table& operator=(attempt_table&& other) noexcept {
    slots_ = other.slots_;
    next_ = other.next_;
    other.clear();
    return *this;
  }
  ~attempt_table() = default;

  // A free slot with a fresh id, or null when N are in flight.
  slot* open() noexcept {
    for (slot& s : slots_)
      if (s.id == 0) {
        s = slot{};
        s.id = next_++;
        return &s;
      }
    return nullptr;
  }
  slot* find(attempt_id id) noexcept {
    if (id == 0) return nullptr;
    for (slot& s : slots_)
      if (s.id == id) return &s;
    return nullptr;
  }
  void close(slot& s) noexcept { s.id = 0; }
  std::size_t in_flight() const noexcept {
    std::size_t n = 0;
    for (const slot& s : slots_) n += s.id != 0 ? 1 : 0;
    return n;
  }
  template <class F>
  void each(F&& f) noexcept {
    for (slot& s : slots_)
      if (s.id != 0) f(s);
  }
  void clear() noexcept {
    for (slot& s : slots_) s.id = 0;
  }

 private:
  std::array<slot, N> slots_{};
  attempt_id next_ = 1;
};

// The machine's outbox: what poll() hands out next, in order.
class action_queue {
 public:
  enum class kind : std::uint8_t { start, cancel, sleep, done };
  struct item {
    kind what = kind::done;
    attempt_id id = 0;
  };
  void push(kind k, attempt_id id = 0) noexcept {
    if (size_ == items_.size()) return;  // cannot happen: see items_
    items_[(head_ + size_++) % items_.size()] = item{k, id};
  }
  bool empty() const noexcept { return size_ == 0; }
  item pop() noexcept {
    const item i = items_[head_];
    head_ = (head_ + 1) % items_.size();
    --size_;
    return i;
  }
  void clear() noexcept { size_ = 0; }

 private:
  // Room for the worst case between two polls: a start and a cancel per slot, then done.
  std::array<item, 16> items_{};
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

}  // namespace failover::detail
