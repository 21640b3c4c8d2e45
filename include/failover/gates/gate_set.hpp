// The gates one call asks, in order: the bundle's breaker and budget behind the gate shape, then
// any gates the bundle adds. The machine sees only the set: ask all, tell all, peek at all.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <tuple>
#include <utility>

#include "failover/core/error.hpp"
#include "failover/gates/gate.hpp"

namespace failover {

// Extra gates for a policy bundle: `using gates = failover::gate_list<my_limiter>;`
template <class... Gates>
struct gate_list {};

// A Breaker policy (failover::circuit_breaker, no_breaker, or a user's) as a gate: it admits each
// attempt (a half-open probe is its ticket) and vetoes a retry whose wait would end in an open
// circuit.
template <class Breaker>
class breaker_gate {
 public:
  using key = typename Breaker::handle;
  breaker_gate() = default;
  explicit breaker_gate(Breaker b) : b_(std::move(b)) {}

  key resolve(std::string_view name) const { return b_.resolve(name); }
  void on_call(time_point) const noexcept {}
  verdict ask(const key& k, const gate_question& q) const noexcept {
    if (q.phase == ask_phase::plan_retry)
      return b_.would_refuse(k, q.at) ? verdict::refuse(q.at, stop_reason::circuit_open)
                                      : verdict::go();
    const admission a = b_.admit(k, q.now);
    return a.allowed ? verdict::go(a.probe ? 1U : 0U)
                     : verdict::refuse(a.until, stop_reason::circuit_open);
  }
  bool would_refuse(const key& k, time_point at) const noexcept { return b_.would_refuse(k, at); }
  void tell(const key& k, const gate_report& r) const noexcept {
    const bool probe = r.ticket != 0;
    if (r.abandoned) {
      // A probe that will never report gives its slot back: reported as cancelled, which frees it
      // and counts nothing. Any other abandoned attempt tells the breaker nothing.
      if (!probe) return;
      try {
        error gone;
        gone.kind = error_kind::cancelled;
        b_.on_failure(k, r.now, gone, true);
      } catch (...) {  // NOLINT(bugprone-empty-catch): building the error ran out of memory
      }
      return;
    }
    if (r.failure)
      b_.on_failure(k, r.now, *r.failure, probe);
    else
      b_.on_success(k, r.now, probe);
  }

  Breaker& policy() noexcept { return b_; }
  const Breaker& policy() const noexcept { return b_; }

 private:
  Breaker b_{};
};

// A Budget policy (failover::retry_budget, no_budget, or a user's) as a gate: it counts each call,
// pays for each retry before its wait, and earns back on success.
template <class Budget>
class budget_gate {
 public:
  struct key {};
  budget_gate() = default;
  explicit budget_gate(Budget b) : b_(std::move(b)) {}

  key resolve(std::string_view) const noexcept { return {}; }
  void on_call(time_point now) const noexcept { b_.on_first_attempt(now); }
  verdict ask(const key&, const gate_question& q) const noexcept {
    if (q.phase == ask_phase::plan_retry && !b_.try_retry(q.now))
      return verdict::refuse(q.now, stop_reason::budget_exhausted);
    return verdict::go();
  }
  bool would_refuse(const key&, time_point) const noexcept { return false; }
  void tell(const key&, const gate_report& r) const noexcept {
    if (!r.abandoned && !r.failure) b_.on_success(r.now);
  }

  Budget& policy() noexcept { return b_; }
  const Budget& policy() const noexcept { return b_; }

 private:
  Budget b_{};
};

// Every gate of a call, asked in order. A refusal or a wait from one gate stops the asking, and the
// tickets the gates before it handed out are given back (reported abandoned).
template <class... Gates>
class gate_set {
 public:
  static constexpr std::size_t size = sizeof...(Gates);
  using keys = std::tuple<typename Gates::key...>;
  using tickets = std::array<std::uint32_t, size>;

  gate_set() = default;
  explicit gate_set(Gates... g) : gates_(std::move(g)...) {}

  keys resolve(std::string_view name) const {
    return resolve_all(name, std::index_sequence_for<Gates...>{});
  }
  void on_call(time_point now) const noexcept {
    std::apply([&](const auto&... g) { (g.on_call(now), ...); }, gates_);
  }
  verdict ask(const keys& k, const gate_question& q, tickets& out) const noexcept {
    return ask_from<0>(k, q, out);
  }
  bool would_refuse(const keys& k, time_point at) const noexcept {
    return refuse_any(k, at, std::index_sequence_for<Gates...>{});
  }
  void tell(const keys& k, time_point now, const error* failure, const tickets& t,
            bool abandoned = false) const noexcept {
    tell_all(k, now, failure, t, abandoned, std::index_sequence_for<Gates...>{});
  }

  template <std::size_t I>
  auto& get() noexcept {
    return std::get<I>(gates_);
  }
  template <std::size_t I>
  const auto& get() const noexcept {
    return std::get<I>(gates_);
  }

 private:
  template <std::size_t... I>
  keys resolve_all(std::string_view name, std::index_sequence<I...>) const {
    return keys(std::get<I>(gates_).resolve(name)...);
  }
  template <std::size_t I>
  verdict ask_from(const keys& k, const gate_question& q, tickets& out) const noexcept {
    if constexpr (I == size) {
      return verdict::go();
    } else {
      const verdict v = std::get<I>(gates_).ask(std::get<I>(k), q);
      if (!v.is_go()) {
        give_back<I>(k, q.now, out);
        return v;
      }
      out[I] = v.ticket;
      return ask_from<I + 1>(k, q, out);
    }
  }
  template <std::size_t Before>
  void give_back(const keys& k, time_point now, tickets& t) const noexcept {
    if constexpr (Before > 0) {
      if (t[Before - 1] != 0)
        std::get<Before - 1>(gates_).tell(std::get<Before - 1>(k),
                                          gate_report{now, nullptr, t[Before - 1], true});
      t[Before - 1] = 0;
      give_back<Before - 1>(k, now, t);
    }
  }
  template <std::size_t... I>
  bool refuse_any(const keys& k, time_point at, std::index_sequence<I...>) const noexcept {
    return (std::get<I>(gates_).would_refuse(std::get<I>(k), at) || ...);
  }
  template <std::size_t... I>
  void tell_all(const keys& k, time_point now, const error* failure, const tickets& t,
                bool abandoned, std::index_sequence<I...>) const noexcept {
    (std::get<I>(gates_).tell(std::get<I>(k), gate_report{now, failure, t[I], abandoned}), ...);
  }

  std::tuple<Gates...> gates_;
};

}  // namespace failover
