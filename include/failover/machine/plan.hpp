// A call's plan: everything a call machine reads and never changes (the entries, their names, the
// chain's options, the gates, the classifier, the hooks), handed over as one value of pointers.
#pragma once

#include <charconv>
#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "failover/core/context.hpp"
#include "failover/core/decision.hpp"
#include "failover/core/error.hpp"
#include "failover/core/outcome.hpp"
#include "failover/detail/failure_path.hpp"

namespace failover {

// What the machine needs of a chain entry (a front end's entries derive from it and add the
// callable).
template <class Backoff, class Keys>
struct entry_meta {
  failover::role role = role::standard;
  retry_options retry;
  Backoff backoff;  // the prototype; each call copies it, and a copy starts fresh
  Keys keys{};      // each gate's key for this entry (its breaker handle, ...)
};

// The plan of one call. `Entries` is indexable and its elements are entry_meta-like; the clock is
// read for calendar time only (an HTTP-date Retry-After), never for the machine's own time.
// Everything pointed to must outlive the machine.
template <class Entries, class Gates, class Classifier, class Hooks, class Clock>
struct call_plan {
  using entries_type = Entries;
  using gates_type = Gates;
  using classifier_type = Classifier;
  using hooks_type = Hooks;
  using clock_type = Clock;

  const Entries* entries = nullptr;
  trace::names_ptr names = nullptr;
  const chain_options* options = nullptr;
  const Gates* gates = nullptr;
  const Classifier* classifier = nullptr;
  const Hooks* hooks = nullptr;
  const Clock* clock = nullptr;
  std::optional<std::size_t>
      start;  // the entry calls start from (first_entry()); none: no_fallback
};

namespace detail {

template <class Entries>
struct roles_view {
  const Entries& entries;
  std::size_t size() const noexcept { return entries.size(); }
  failover::role operator[](std::size_t i) const noexcept { return entries[i].role; }
};

inline std::optional<duration> earlier(std::optional<duration> a, std::optional<duration> b) {
  if (!a) return b;
  if (!b) return a;
  return *a < *b ? a : b;
}

// The entry a front end's calls start from, which a move takes along with the entries: a chain
// or retrier moved from has none, and its calls end with no_fallback.
struct start_cache {
  std::optional<std::size_t> index;
  start_cache() = default;
  explicit start_cache(std::optional<std::size_t> i) noexcept : index(i) {}
  start_cache(const start_cache&) = default;
  start_cache& operator=(const start_cache&) = default;
  start_cache(start_cache&& other) noexcept : index(std::exchange(other.index, std::nullopt)) {}
  start_cache& operator=(start_cache&& other) noexcept {
    index = std::exchange(other.index, std::nullopt);
    return *this;
  }
  ~start_cache() = default;
};

// The error builders below are `noinline`, which GCC refuses on a function declared `inline`
// before: so the declaration is written only under separate compilation (every unit sees it, and
// compiled.hpp's unit checks it against the definition), and header-only units see the definition
// alone.
// Joins `parts` into one string with one allocation: every message the machine builds is made
// here from its parts, not by a chain of concatenations at each step that stops a call.
#if defined(FAILOVER_SEPARATE_COMPILATION)
FAILOVER_FAILURE_STEP std::string join(std::initializer_list<std::string_view> parts);
#endif
#if FAILOVER_DEFINE_COMPILED
FAILOVER_FAILURE_STEP FAILOVER_DECL std::string join(
    std::initializer_list<std::string_view> parts) {
  std::size_t size = 0;
  for (const std::string_view p : parts) size += p.size();
  std::string out;
  out.reserve(size);
  for (const std::string_view p : parts) out.append(p.data(), p.size());
  return out;
}
#endif

// An error the machine makes itself (a skip, a cancelled attempt, an empty exception): one call
// at each step rather than the error's fields written and destroyed there.
#if defined(FAILOVER_SEPARATE_COMPILATION)
FAILOVER_FAILURE_STEP error machine_error(error_kind kind, std::string_view model,
                                          std::string_view message);
#endif
#if FAILOVER_DEFINE_COMPILED
FAILOVER_FAILURE_STEP FAILOVER_DECL error machine_error(error_kind kind, std::string_view model,
                                                        std::string_view message) {
  error e;
  e.kind = kind;
  e.model.assign(model.data(), model.size());
  e.message.assign(message.data(), message.size());
  return e;
}
#endif

// The final error when the call stops for cancellation or the deadline: the new kind, with the
// last attempt's status, code and server wait kept (the trace holds that attempt in full).
#if defined(FAILOVER_SEPARATE_COMPILATION)
FAILOVER_FAILURE_STEP error stop_error(error_kind kind, const error* last, std::string_view model);
#endif
#if FAILOVER_DEFINE_COMPILED
FAILOVER_FAILURE_STEP FAILOVER_DECL error stop_error(error_kind kind, const error* last,
                                                     std::string_view model) {
  error e;
  if (last) e = *last;
  e.kind = kind;
  e.transient = false;
  if (e.model.empty()) e.model.assign(model.data(), model.size());
  const std::string_view what = kind == error_kind::cancelled ? "cancelled" : "deadline exceeded";
  const bool said = last && !last->message.empty();
  e.message = join({what, last ? " (last error: " : " before the first attempt",
                    last ? to_string(last->kind) : std::string_view(), said ? ": " : "",
                    said ? std::string_view(last->message) : std::string_view(), last ? ")" : ""});
  return e;
}
#endif

#if defined(FAILOVER_SEPARATE_COMPILATION)
FAILOVER_FAILURE_STEP error all_open_error(std::string_view model, duration until_reopen);
#endif
#if FAILOVER_DEFINE_COMPILED
FAILOVER_FAILURE_STEP FAILOVER_DECL error all_open_error(std::string_view model,
                                                         duration until_reopen) {
  char ms[24];
  const long long count =
      std::chrono::duration_cast<std::chrono::milliseconds>(until_reopen).count();
  const char* end = std::to_chars(ms, ms + sizeof ms, count).ptr;  // 24 digits hold any long long
  error e = machine_error(
      error_kind::circuit_open, model,
      join({"every model's circuit is open; the earliest, ", model, ", allows a probe in ",
            std::string_view(ms, static_cast<std::size_t>(end - ms)), "ms"}));
  e.retry_after = until_reopen;
  return e;
}
#endif

// What a policy that may throw threw, with the policy's name: the machine ends the call with it.
struct policy_failure {
  const char* policy;
  std::exception_ptr cause;
};

// A call's copy of its entry's Backoff prototype. The Backoff policy may throw (its next() and its
// copy need not be noexcept); what it throws comes out named, so the call ends with an error that
// says which policy failed.
template <class Backoff>
class guarded_backoff {
 public:
  explicit guarded_backoff(const Backoff& prototype) : b_(copy(prototype)) {}
  duration next(int attempt) {
    if constexpr (noexcept(std::declval<Backoff&>().next(attempt))) {
      return b_.next(attempt);
    } else {
      try {
        return b_.next(attempt);
      } catch (...) {
        throw policy_failure{"the Backoff policy's next()", std::current_exception()};
      }
    }
  }

 private:
  static Backoff copy(const Backoff& prototype) {
    try {
      return prototype;
    } catch (...) {
      throw policy_failure{"copying the Backoff policy", std::current_exception()};
    }
  }
  Backoff b_;
};

// A call that could not start because interning the model names ran out of memory: it ends with
// an error rather than an exception, and its trace names no model.
#if defined(FAILOVER_SEPARATE_COMPILATION)
FAILOVER_FAILURE_STEP error unnamed_error() noexcept;
#endif
#if FAILOVER_DEFINE_COMPILED
FAILOVER_FAILURE_STEP FAILOVER_DECL error unnamed_error() noexcept {
  error e;
  e.kind = error_kind::unknown;
  try {
    e.message = "failover: out of memory while interning the model names";
  } catch (...) {  // NOLINT(bugprone-empty-catch): the bare error still ends the call
  }
  return e;
}
#endif
inline const std::vector<std::string>* no_names() noexcept {
  static const std::vector<std::string> none;
  return &none;
}
template <class R>
result<R> unnamed_call() noexcept {
  result<R> res(no_names());
  res.set_error(unnamed_error(), stop_reason::permanent_error);
  return res;
}

}  // namespace detail
}  // namespace failover
