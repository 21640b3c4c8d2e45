// The attempts a call has in flight, by id: usually one, several when a driver hedges. A table of
// fixed size inside the machine, so that a call makes no allocation for its attempts.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "failover/core/clock.hpp"
#include "failover/core/context.hpp"
#include "failover/machine/events.hpp"

namespace failover::detail {

// The table is built with every call: a slot is written only when an attempt opens it (nothing is
// zeroed up front), and a count of the attempts in flight spares the common call with none a scan.
template <class Tickets, std::size_t N>
class attempt_table {
 public:
  struct slot {
    attempt_id id;
    std::uint32_t at;  // its place in the table
    std::size_t entry;
    std::size_t record;  // the attempt's record in the trace
    time_point started;
    Tickets tickets;
    attempt_context context;
  };
  // Slots are copied as bytes and never destroyed.
  static_assert(std::is_trivially_copyable_v<slot> && std::is_trivially_destructible_v<slot>);

  attempt_table() noexcept {}  // NOLINT(modernize-use-equals-default): leaves the slots unwritten
  attempt_table(const attempt_table&) = delete;
  attempt_table& operator=(const attempt_table&) = delete;
  // A machine moved from has nothing in flight: only the one moved to reports its attempts.
  attempt_table(attempt_table&& other) noexcept { take(other); }
  attempt_table& operator=(attempt_table&& other) noexcept {
    if (this != &other) take(other);
    return *this;
  }
  ~attempt_table() = default;

  // A slot with a fresh id and every field but the context written (the caller writes that field
  // by field: a context built apart and copied in is read back before its stores have landed), or
  // null when N are in flight.
  slot* open(std::size_t entry, std::size_t record, time_point started,
             const Tickets& tickets) noexcept {
    if (count_ == N) return nullptr;
    std::size_t i = 0;
    while (ids_[i] != 0) ++i;
    ++count_;
    slot& s = cells_[i].s;
    ids_[i] = next_;
    s.id = next_++;
    s.at = static_cast<std::uint32_t>(i);
    s.entry = entry;
    s.record = record;
    s.started = started;
    s.tickets = tickets;
    return &s;
  }
  slot* find(attempt_id id) noexcept {
    if (id == 0) return nullptr;
    for (std::size_t i = 0; i < N; ++i)
      if (ids_[i] == id) return &cells_[i].s;
    return nullptr;
  }
  // Frees `s`; its fields stay readable until the next open().
  void close(slot& s) noexcept {
    ids_[s.at] = 0;
    --count_;
  }
  std::size_t in_flight() const noexcept { return count_; }
  bool empty() const noexcept { return count_ == 0; }
  template <class F>
  void each(F&& f) noexcept {
    for (std::size_t i = 0; i < N && count_ != 0; ++i)
      if (ids_[i] != 0) f(cells_[i].s);
  }
  void clear() noexcept {
    ids_ = {};
    count_ = 0;
  }

 private:
  union cell {
    cell() noexcept {}  // NOLINT(modernize-use-equals-default): unwritten until opened
    slot s;
  };
  void take(attempt_table& other) noexcept {
    ids_ = other.ids_;
    count_ = other.count_;
    next_ = other.next_;
    for (std::size_t i = 0; i < N; ++i)
      if (ids_[i] != 0) cells_[i].s = other.cells_[i].s;
    other.clear();
  }

  std::array<cell, N> cells_;
  std::array<attempt_id, N> ids_{};  // each slot's attempt, 0 when free
  std::uint32_t count_ = 0;
  attempt_id next_ = 1;
};

// The machine's outbox: what poll() hands out next, in order. Items are written only when pushed,
// each field apart and read back apart (an item stored in parts and loaded whole waits for the
// parts to land).
class action_queue {
 public:
  enum class kind : std::uint8_t { start, cancel, sleep, done };
  struct item {
    kind what;
    attempt_id id;
  };
  action_queue() noexcept {}  // NOLINT(modernize-use-equals-default): leaves the items unwritten
  action_queue(const action_queue& other) noexcept { *this = other; }
  action_queue& operator=(const action_queue& other) noexcept {
    head_ = 0;
    size_ = other.size_;
    for (std::uint8_t i = 0; i < size_; ++i) {
      const std::uint8_t from = (other.head_ + i) % capacity;
      kinds_[i] = other.kinds_[from];
      ids_[i] = other.ids_[from];
    }
    return *this;
  }
  ~action_queue() = default;

  void push(kind k, attempt_id id = 0) noexcept {
    if (size_ == capacity) return;  // cannot happen: see capacity
    const std::uint8_t at = (head_ + size_++) % capacity;
    kinds_[at] = k;
    ids_[at] = id;
  }
  bool empty() const noexcept { return size_ == 0; }
  item pop() noexcept {
    const item i{kinds_[head_], ids_[head_]};
    head_ = static_cast<std::uint8_t>((head_ + 1) % capacity);
    --size_;
    return i;
  }
  void clear() noexcept { size_ = 0; }

 private:
  // Room for the worst case between two polls: a start and a cancel per slot, then done.
  static constexpr std::uint8_t capacity = 16;
  std::array<kind, capacity> kinds_;
  std::array<attempt_id, capacity> ids_;
  std::uint8_t head_ = 0;
  std::uint8_t size_ = 0;
};

}  // namespace failover::detail
