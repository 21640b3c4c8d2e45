// What a call returns. `outcome<T>` is what a user callable returns (a value or a raw failure);
// `result<T>` is what a retrier or chain returns: the value or the final error, always with the
// trace of every attempt, wait and error on the way, so a fallback never looks like plain success.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "failover/core/decision.hpp"
#include "failover/core/error.hpp"
#include "failover/detail/failure_path.hpp"
#include "failover/detail/saturate.hpp"
#include "failover/detail/small_vector.hpp"

namespace failover {

// A user callable's answer: the value, or a `failure` for the classifier to judge.
template <class T>
class outcome {
  static_assert(!std::is_void_v<T>, "failover::outcome<T>: T must be a value type, not void");
  static_assert(!std::is_reference_v<T>, "failover::outcome<T>: T must not be a reference");

 public:
  outcome(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  outcome(failover::failure f) : v_(std::in_place_index<1>, std::move(f)) {}  // NOLINT
  template <class U,
            std::enable_if_t<std::is_convertible_v<U&&, T> && !std::is_same_v<std::decay_t<U>, T> &&
                                 !std::is_same_v<std::decay_t<U>, failover::failure> &&
                                 !std::is_same_v<std::decay_t<U>, outcome>,
                             int> = 0>
  outcome(U&& value) : v_(std::in_place_index<0>, std::forward<U>(value)) {}  // NOLINT

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  // The value, unchecked (as std::optional's): only when has_value().
  T& operator*() & noexcept { return *std::get_if<0>(&v_); }
  const T& operator*() const& noexcept { return *std::get_if<0>(&v_); }
  T&& operator*() && noexcept { return std::move(*std::get_if<0>(&v_)); }
  const failover::failure& failure() const& { return std::get<1>(v_); }
  failover::failure&& failure() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, failover::failure> v_;
};

template <class T>
struct is_outcome : std::false_type {};
template <class T>
struct is_outcome<outcome<T>> : std::true_type {};

// One attempt of a call: who, when, how it ended, and the wait that followed.
struct attempt_record {
  attempt_record() = default;
  // An attempt about to run (used by drivers): every other field at its default.
  attempt_record(std::string_view model_name, std::uint16_t entry_index, failover::role entry_role,
                 int attempt_number, duration start_offset) noexcept
      : model(model_name),
        start(start_offset),
        attempt(attempt_number),
        entry(entry_index),
        role(entry_role) {}

  std::string_view model;   // points into the interned names: valid for the life of the process
  duration start{};         // offset from the start of the call
  duration elapsed{};       // how long the callable ran
  duration wait{};          // the wait chosen after this attempt (0 when none)
  int attempt = 0;          // on this model, from 1
  std::uint16_t entry = 0;  // index of the chain entry
  failover::role role = role::standard;
  bool ok = false;
  bool skipped = false;  // not called: the circuit was open (error().kind circuit_open)
  wait_reason why_wait = wait_reason::none;
  stop_reason stop = stop_reason::none;  // set on a model's last attempt when it gave up

  // What went wrong (when !ok); an empty error when the attempt succeeded. The error is held
  // apart from the record, so a successful attempt carries none of its strings; copies of a
  // record (and of a trace) share the one recorded error.
  const failover::error& error() const noexcept {
    static const failover::error none{};
    return error_ ? *error_ : none;
  }
  // Used by drivers (and by tests that build traces): records `e` as this attempt's error.
  FAILOVER_DECL failover::error& set_error(failover::error e);

 private:
  std::shared_ptr<failover::error> error_;
};

#if FAILOVER_DEFINE_COMPILED
FAILOVER_DECL failover::error& attempt_record::set_error(failover::error e) {
  error_ = std::make_shared<failover::error>(std::move(e));
  return *error_;
}
#endif  // FAILOVER_DEFINE_COMPILED

namespace detail {

// Model names a trace refers to are interned: each distinct list is stored once for the life of
// the process and shared by every chain, retrier and trace that uses it. A trace therefore stays
// valid after its chain is gone, and a call copies no name and touches no reference count (a
// shared count would be one cache line written by every call on every thread). Only lists that a
// call has used are interned (see name_list): names are identifiers (the circuit breaker's health
// keys too), a small set however many chains are built from them. Thread-safe.
struct name_registry {
  using list = std::vector<std::string>;
  std::mutex lock;
  // Sorted by their lists; each list is held by pointer, so its address never moves.
  std::vector<std::unique_ptr<const list>> lists;

  // The interned copy of `names`, added when missing. Under `lock`.
  const list* find_or_add(const list& names) {
    const auto at = std::lower_bound(lists.begin(), lists.end(), names,
                                     [](const auto& held, const list& n) { return *held < n; });
    if (at != lists.end() && **at == names) return at->get();  // chains built per request
    return lists.insert(at, std::make_unique<const list>(names))->get();
  }
};
inline name_registry& names_interned() {
  static name_registry registry;
  return registry;
}

inline const std::vector<std::string>* intern_names(const std::vector<std::string>& names) {
  name_registry& r = names_interned();
  const std::lock_guard<std::mutex> hold(r.lock);
  return r.find_or_add(names);
}

// How many distinct lists are interned (for tests: building chains must not make it grow).
inline std::size_t interned_lists() {
  name_registry& r = names_interned();
  const std::lock_guard<std::mutex> hold(r.lock);
  return r.lists.size();
}

// A chain's or retrier's model names. The chain owns them, and add() appends one without copying
// the others; the list a call's trace refers to is interned when a call first needs it after a
// change, so a chain built and destroyed without a call leaves nothing behind, and chains built
// per request from the same names share one interned list. A copy keeps the interned list (the
// same names); a move takes both and leaves an empty list behind.
class name_list {
 public:
  using names_ptr = const std::vector<std::string>*;

  name_list() = default;
  name_list(const name_list& other)
      : names_(other.names_), interned_(other.interned_.load(std::memory_order_acquire)) {}
  name_list(name_list&& other) noexcept
      : names_(std::move(other.names_)),
        interned_(other.interned_.exchange(nullptr, std::memory_order_acq_rel)) {
    other.names_.clear();
  }
  name_list& operator=(const name_list& other) {
    if (this != &other) {
      names_ = other.names_;
      interned_.store(other.interned_.load(std::memory_order_acquire), std::memory_order_release);
    }
    return *this;
  }
  name_list& operator=(name_list&& other) noexcept {
    if (this != &other) {
      names_ = std::move(other.names_);
      other.names_.clear();
      interned_.store(other.interned_.exchange(nullptr, std::memory_order_acq_rel),
                      std::memory_order_release);
    }
    return *this;
  }
  ~name_list() = default;

  std::size_t size() const noexcept { return names_.size(); }
  const std::string& operator[](std::size_t i) const noexcept { return names_[i]; }

  // Configuration only, never during calls. Strong guarantee: a throw leaves the list as it was.
  void push_back(std::string name) {
    names_.push_back(std::move(name));
    interned_.store(nullptr, std::memory_order_release);
  }
  void pop_back() noexcept {
    names_.pop_back();
    interned_.store(nullptr, std::memory_order_release);
  }

  // The interned list for a call: one load once a call has interned it. Null only when interning
  // ran out of memory (the caller ends the call with an error).
  names_ptr for_call() const noexcept {
    const names_ptr p = interned_.load(std::memory_order_acquire);
    return p ? p : intern_now();
  }

 private:
  // Once per chain (its first call after a change): not the path a call takes.
  FAILOVER_FAILURE_PATH FAILOVER_DECL names_ptr intern_now() const noexcept;

  std::vector<std::string> names_;
  mutable std::atomic<names_ptr> interned_{nullptr};
};

#if FAILOVER_DEFINE_COMPILED
FAILOVER_DECL name_list::names_ptr name_list::intern_now() const noexcept {
  try {
    name_registry& r = names_interned();
    names_ptr p = nullptr;
    {
      const std::lock_guard<std::mutex> hold(r.lock);
      p = r.find_or_add(names_);
    }
    // Calls racing here intern the same list and store the same pointer.
    interned_.store(p, std::memory_order_release);
    return p;
  } catch (...) {
    return nullptr;
  }
}
#endif  // FAILOVER_DEFINE_COMPILED

}  // namespace detail

// Every attempt of one call, with the names of the chain's models (interned, see above).
class trace {
 public:
  using names_ptr = const std::vector<std::string>*;
  static constexpr std::size_t inline_attempts = 4;
  using attempts_type = detail::small_vector<attempt_record, inline_attempts>;

  trace() = default;
  explicit trace(names_ptr names) noexcept : names_(names) {}

  const attempts_type& attempts() const noexcept { return attempts_; }
  std::size_t size() const noexcept { return attempts_.size(); }

  // The model that produced the value ("" when the call failed).
  std::string_view served_by() const noexcept {
    return (!attempts_.empty() && attempts_.back().ok) ? attempts_.back().model
                                                       : std::string_view{};
  }
  // True when the answer (or the final error) came from another entry than the first one
  // considered, including when the first was skipped because its circuit was open.
  bool fallback_used() const noexcept {
    return !attempts_.empty() && attempts_.back().entry != attempts_[0].entry;
  }
  // True when a content-policy fallback entry was called: a refused request was rerouted.
  bool policy_rerouted() const noexcept {
    for (const auto& a : attempts_)
      if (a.role == role::content_policy && !a.skipped) return true;
    return false;
  }
  // Time from the start of the call to the end of the last attempt.
  duration elapsed() const noexcept {
    return attempts_.empty() ? duration::zero()
                             : detail::sat_add(attempts_.back().start, attempts_.back().elapsed);
  }
  // Attempts that called a model (skips excluded).
  std::size_t calls() const noexcept {
    std::size_t n = 0;
    for (const auto& a : attempts_) n += a.skipped ? 0 : 1;
    return n;
  }
  // Sum of all waits between attempts.
  duration total_wait() const noexcept {
    duration w{};
    for (const auto& a : attempts_) w = detail::sat_add(w, a.wait);  // a wait may be max()
    return w;
  }
  std::string_view name(std::size_t entry) const noexcept {
    return names_ && entry < names_->size() ? std::string_view((*names_)[entry])
                                            : std::string_view{};
  }

  // Used by drivers.
  // Adds a record built from `args` (none: every field at its default; a record: a copy).
  template <class... A>
  attempt_record& add(A&&... args) {
    return attempts_.emplace_back(std::forward<A>(args)...);
  }
  attempt_record& back() noexcept { return attempts_.back(); }
  attempt_record& at(std::size_t i) noexcept { return attempts_[i]; }

 private:
  names_ptr names_ = nullptr;
  attempts_type attempts_;
};

// Thrown by result<T>::value() when the call failed; carries the final error.
class call_failed : public std::runtime_error {
 public:
  explicit call_failed(failover::error e)
      : std::runtime_error("failover: call failed: " + std::string(to_string(e.kind))),
        error_(std::move(e)) {}
  const failover::error& error() const noexcept { return error_; }

 private:
  failover::error error_;
};

// The end of a call: exactly one of a value or a final error, plus the trace.
template <class T>
class result {
 public:
  explicit result(failover::trace::names_ptr names) noexcept : trace_(names) {}

  bool has_value() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }

  // The value; throws call_failed (holding the error) when the call failed.
  T& value() & {
    check();
    return *value_;
  }
  const T& value() const& {
    check();
    return *value_;
  }
  T&& value() && {
    check();
    return std::move(*value_);
  }
  T& operator*() & noexcept { return *value_; }
  const T& operator*() const& noexcept { return *value_; }
  T* operator->() noexcept { return &*value_; }
  const T* operator->() const noexcept { return &*value_; }

  // The final error (meaningful only when !has_value()). For deadline_exceeded and cancelled it
  // keeps the last attempt's status, code and server wait; the trace has that attempt in full.
  const failover::error& error() const noexcept {
    static const failover::error none{};
    return error_ ? *error_ : none;
  }
  // Why the call ended: succeeded, or the rule that stopped it.
  stop_reason stop() const noexcept { return stop_; }
  const failover::trace& trace() const noexcept { return trace_; }
  std::string_view served_by() const noexcept { return trace_.served_by(); }
  bool fallback_used() const noexcept { return trace_.fallback_used(); }

  // Used by drivers.
  failover::trace& mutable_trace() noexcept { return trace_; }
  void set_value(T&& v) {
    value_.emplace(std::move(v));
    stop_ = stop_reason::succeeded;
  }
  // Ends the call with `e`; a value stored before (by a step that then failed) goes.
  void set_error(failover::error e, stop_reason why) noexcept {
    value_.reset();
    error_.emplace(std::move(e));
    stop_ = why;
  }

 private:
  void check() const {
    if (!value_) throw call_failed(error());
  }

  std::optional<T> value_;
  std::optional<failover::error> error_;  // built only when the call fails
  stop_reason stop_ = stop_reason::none;
  failover::trace trace_;
};

}  // namespace failover
