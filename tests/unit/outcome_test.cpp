// outcome<T>, result<T>, the trace's helpers, and the small vector that holds the attempts.
#include "catch.hpp"

#include <failover/core/outcome.hpp>

#include <chrono>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

using failover::attempt_record;
using failover::duration;
using failover::error_kind;
using failover::role;
using failover::stop_reason;
using failover::wait_reason;

failover::trace::names_ptr names(std::vector<std::string> list) {
  return failover::detail::intern_names(std::move(list));
}

attempt_record record(std::string_view model, std::uint16_t entry, duration start, duration elapsed,
                      bool ok, duration wait = {}) {
  attempt_record r;
  r.model = model;
  r.entry = entry;
  r.start = start;
  r.elapsed = elapsed;
  r.ok = ok;
  r.wait = wait;
  if (wait > duration::zero()) r.why_wait = wait_reason::backoff;
  if (!ok) {
    failover::error e;
    e.kind = error_kind::server_error;
    r.set_error(std::move(e));
  }
  return r;
}

}  // namespace

TEST_CASE("outcome: holds a value") {
  failover::outcome<std::string> o(std::string("hello"));
  REQUIRE(o.has_value());
  CHECK(static_cast<bool>(o));
  CHECK(o.value() == "hello");
  o.value() += "!";
  CHECK(o.value() == "hello!");
  const auto& co = o;
  CHECK(co.value() == "hello!");
  std::string moved = std::move(o).value();
  CHECK(moved == "hello!");
}

TEST_CASE("outcome: operator* reads, writes and moves the value without a check") {
  failover::outcome<std::string> o(std::string("hello"));
  REQUIRE(o.has_value());
  CHECK(*o == "hello");
  *o += "!";
  const auto& co = o;
  CHECK(*co == "hello!");
  CHECK(&*co == &o.value());
  std::string moved = *std::move(o);
  CHECK(moved == "hello!");
}

TEST_CASE("outcome: holds a failure") {
  failover::outcome<std::string> o(failover::failure::http(503, "busy", "try later"));
  REQUIRE_FALSE(o.has_value());
  CHECK_FALSE(static_cast<bool>(o));
  REQUIRE(o.failure().status.has_value());
  CHECK(*o.failure().status == 503);
  CHECK(o.failure().code == "busy");
  CHECK(o.failure().message == "try later");
  failover::failure f = std::move(o).failure();
  CHECK(f.code == "busy");
}

TEST_CASE("outcome: converts from values convertible to T") {
  failover::outcome<std::string> from_literal("literal");
  REQUIRE(from_literal.has_value());
  CHECK(from_literal.value() == "literal");

  failover::outcome<long long> from_int = 7;
  REQUIRE(from_int.has_value());
  CHECK(from_int.value() == 7);

  auto make = [](bool ok) -> failover::outcome<std::string> {
    if (ok) return "fine";  // const char* -> std::string
    return failover::failure::of(error_kind::overloaded);
  };
  CHECK(make(true).has_value());
  REQUIRE_FALSE(make(false).has_value());
  REQUIRE(make(false).failure().kind.has_value());
  CHECK(*make(false).failure().kind == error_kind::overloaded);

  // A move-only value.
  failover::outcome<std::unique_ptr<int>> ptr(std::make_unique<int>(5));
  REQUIRE(ptr.has_value());
  CHECK(*ptr.value() == 5);

  static_assert(failover::is_outcome<failover::outcome<int>>::value);
  static_assert(!failover::is_outcome<int>::value);
  static_assert(std::is_convertible_v<const char*, failover::outcome<std::string>>);
  static_assert(std::is_convertible_v<failover::failure, failover::outcome<int>>);
}

TEST_CASE("result: the value and its accessors") {
  failover::result<std::string> r(names({"m"}));
  CHECK_FALSE(r.has_value());
  CHECK(r.stop() == stop_reason::none);
  r.set_value(std::string("answer"));
  REQUIRE(r.has_value());
  CHECK(static_cast<bool>(r));
  CHECK(r.stop() == stop_reason::succeeded);
  CHECK(*r == "answer");
  CHECK(r->size() == 6);
  CHECK(r.value() == "answer");
  const auto& cr = r;
  CHECK(*cr == "answer");
  CHECK(cr->size() == 6);
  CHECK(cr.value() == "answer");
  std::string taken = std::move(r).value();
  CHECK(taken == "answer");
}

TEST_CASE("result: the error, and value() throwing call_failed") {
  failover::result<int> r(names({"m"}));
  failover::error e;
  e.kind = error_kind::not_found;
  e.status = 404;
  e.model = "m";
  r.set_error(e, stop_reason::permanent_error);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.stop() == stop_reason::permanent_error);
  CHECK(r.error().kind == error_kind::not_found);
  CHECK(r.error().model == "m");
  REQUIRE_THROWS_AS(r.value(), failover::call_failed);
  bool threw = false;
  try {
    (void)r.value();
  } catch (const std::runtime_error& ex) {  // call_failed is a runtime_error
    threw = true;
    CHECK(std::string(ex.what()).find("not_found") != std::string::npos);
    const auto* cf = dynamic_cast<const failover::call_failed*>(&ex);
    REQUIRE(cf != nullptr);
    CHECK(cf->error().kind == error_kind::not_found);
    REQUIRE(cf->error().status.has_value());
    CHECK(*cf->error().status == 404);
  }
  CHECK(threw);
}

TEST_CASE("trace: helpers on a successful fallback") {
  auto n = names({"model-a", "model-b"});
  failover::trace t(n);
  t.add(record((*n)[0], 0, 0ms, 10ms, false, 100ms));
  t.add(record((*n)[0], 0, 110ms, 5ms, false));
  t.add(record((*n)[1], 1, 115ms, 20ms, true));
  CHECK(t.size() == 3);
  CHECK(t.served_by() == "model-b");
  CHECK(t.fallback_used());
  CHECK_FALSE(t.policy_rerouted());
  CHECK(t.elapsed() == 135ms);
  CHECK(t.total_wait() == 100ms);
  CHECK(t.name(0) == "model-a");
  CHECK(t.name(1) == "model-b");
  CHECK(t.name(2).empty());
}

TEST_CASE("trace: helpers on a failure and on an empty trace") {
  auto n = names({"model-a"});
  failover::trace t(n);
  t.add(record((*n)[0], 0, 0ms, 10ms, false, 50ms));
  t.add(record((*n)[0], 0, 60ms, 10ms, false));
  CHECK(t.served_by().empty());
  CHECK_FALSE(t.fallback_used());
  CHECK(t.elapsed() == 70ms);
  CHECK(t.total_wait() == 50ms);

  failover::trace empty;
  CHECK(empty.size() == 0);
  CHECK(empty.served_by().empty());
  CHECK_FALSE(empty.fallback_used());
  CHECK_FALSE(empty.policy_rerouted());
  CHECK(empty.elapsed() == duration::zero());
  CHECK(empty.total_wait() == duration::zero());
  CHECK(empty.name(0).empty());
}

TEST_CASE("trace: policy_rerouted when a content-policy entry was called") {
  auto n = names({"model-a", "reviewed"});
  failover::trace t(n);
  t.add(record((*n)[0], 0, 0ms, 1ms, false));
  auto cp = record((*n)[1], 1, 1ms, 1ms, true);
  cp.role = role::content_policy;
  t.add(cp);
  CHECK(t.policy_rerouted());
  CHECK(t.served_by() == "reviewed");
}

TEST_CASE("trace: more attempts than fit inline keep their order") {
  auto n = names({"m"});
  failover::trace t(n);
  for (int i = 0; i < 9; ++i) {
    auto r = record((*n)[0], 0, duration(i * 10ms), 1ms, i == 8, i < 8 ? 9ms : 0ms);
    r.attempt = i + 1;
    t.add(r);
  }
  REQUIRE(t.size() == 9);
  int expected = 1;
  for (const auto& a : t.attempts()) CHECK(a.attempt == expected++);
  CHECK(t.attempts()[6].attempt == 7);
  CHECK(t.served_by() == "m");
  CHECK(t.elapsed() == 81ms);
  CHECK(t.total_wait() == 72ms);
  const failover::trace copy = t;
  REQUIRE(copy.size() == 9);
  CHECK(copy.attempts()[8].ok);
  CHECK(copy.attempts()[5].attempt == 6);
}

TEST_CASE("small_vector: beyond its inline capacity it keeps order and values") {
  failover::detail::small_vector<std::string, 4> v;
  CHECK(v.empty());
  for (int i = 0; i < 11; ++i) v.push_back("value-number-" + std::to_string(i));
  REQUIRE(v.size() == 11);
  CHECK_FALSE(v.empty());
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(v[i] == "value-number-" + std::to_string(i));
  CHECK(v.back() == "value-number-10");

  std::size_t index = 0;
  for (const auto& s : v) CHECK(s == "value-number-" + std::to_string(index++));
  CHECK(index == 11);
  CHECK(v.end() - v.begin() == 11);
  CHECK(*(v.begin() + 5) == "value-number-5");
  CHECK(v.begin()[7] == "value-number-7");

  // Writable through the iterator and the index, across the inline/heap boundary.
  for (auto& s : v) s += "!";
  v[3] = "three";
  v[4] = "four";
  CHECK(v[3] == "three");
  CHECK(v[4] == "four");
  CHECK(v[10] == "value-number-10!");

  // Copies and moves keep everything.
  auto copy = v;
  REQUIRE(copy.size() == 11);
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(copy[i] == v[i]);
  auto moved = std::move(copy);
  REQUIRE(moved.size() == 11);
  CHECK(moved[0] == "value-number-0!");
  CHECK(moved[10] == "value-number-10!");

  const auto& cv = v;
  std::vector<std::string> collected(cv.begin(), cv.end());
  REQUIRE(collected.size() == 11);
  CHECK(collected[4] == "four");
}

TEST_CASE("small_vector: push_back returns the new element") {
  failover::detail::small_vector<int, 4> v;
  for (int i = 0; i < 6; ++i) {
    int& added = v.push_back(i * i);
    CHECK(added == i * i);
    added += 1;
  }
  for (std::size_t i = 0; i < 6; ++i) CHECK(v[i] == static_cast<int>(i * i) + 1);
}

namespace {
// Counts live instances; its copy throws once armed, to test copying half-way.
struct fragile {
  static int& live() {
    static int n = 0;
    return n;
  }
  static int& copies_left() {
    static int n = 1000;
    return n;
  }
  fragile() { ++live(); }
  fragile(const fragile&) {
    if (copies_left()-- == 0) throw std::runtime_error("copy failed");
    ++live();
  }
  fragile(fragile&&) noexcept { ++live(); }
  fragile& operator=(const fragile&) = default;
  fragile& operator=(fragile&&) noexcept = default;
  ~fragile() { --live(); }
};
}  // namespace

TEST_CASE("small_vector: a copy that throws half-way leaves nothing behind", "[outcome]") {
  {
    failover::detail::small_vector<fragile, 4> v;
    for (int i = 0; i < 3; ++i) v.emplace_back();
    REQUIRE(fragile::live() == 3);
    fragile::copies_left() = 1;  // the second element's copy throws
    using vec = failover::detail::small_vector<fragile, 4>;
    REQUIRE_THROWS_AS(vec(v), std::runtime_error);
    CHECK(fragile::live() == 3);  // the one copied element was destroyed again
    fragile::copies_left() = 1000;
  }
  CHECK(fragile::live() == 0);
}

TEST_CASE("small_vector: spilling, clearing and spilling again builds and frees every element",
          "[outcome]") {
  {
    failover::detail::small_vector<fragile, 2> v;
    for (int i = 0; i < 5; ++i) v.emplace_back();  // two inline, three past them
    CHECK(fragile::live() == 5);
    v.clear();
    CHECK(fragile::live() == 0);
    CHECK(v.empty());
    for (int i = 0; i < 4; ++i) v.emplace_back();
    CHECK(v.size() == 4);
    CHECK(fragile::live() == 4);
    failover::detail::small_vector<fragile, 2> moved(std::move(v));
    CHECK(v.empty());  // NOLINT(bugprone-use-after-move): a moved-from small_vector is empty
    CHECK(fragile::live() == 4);
    v = moved;
    CHECK(fragile::live() == 8);
  }
  CHECK(fragile::live() == 0);
}

TEST_CASE("small_vector: an element that throws as the first one past the inline ones is not added",
          "[outcome]") {
  {
    failover::detail::small_vector<fragile, 2> v;
    const fragile original;
    v.emplace_back();
    v.emplace_back();
    fragile::copies_left() = 0;  // the next copy throws
    REQUIRE_THROWS_AS(v.emplace_back(original), std::runtime_error);
    CHECK(v.size() == 2);
    CHECK(fragile::live() == 3);
    fragile::copies_left() = 1000;
    v.emplace_back(original);  // spilling still works afterwards
    v.emplace_back(original);
    CHECK(v.size() == 4);
    CHECK(fragile::live() == 5);
  }
  CHECK(fragile::live() == 0);
}

TEST_CASE(
    "trace: a record added in place starts at every field's default, whatever the memory held") {
  // The trace builds records in raw storage without zero-filling it first; every field must
  // therefore have its own initialiser. Build the trace over memory full of junk to show it.
  alignas(failover::trace) unsigned char buffer[sizeof(failover::trace)];
  std::memset(buffer, 0xA5, sizeof buffer);
  auto* t = new (buffer) failover::trace(names({"model-a"}));
  for (int i = 0; i < 3; ++i) {
    const attempt_record& r = t->add();
    CHECK(r.model.empty());
    CHECK(r.entry == 0);
    CHECK(r.role == role::standard);
    CHECK(r.attempt == 0);
    CHECK(r.start == duration::zero());
    CHECK(r.elapsed == duration::zero());
    CHECK_FALSE(r.ok);
    CHECK_FALSE(r.skipped);
    CHECK(r.error().kind == error_kind::unknown);
    CHECK_FALSE(r.error().transient);
    CHECK_FALSE(r.error().status.has_value());
    CHECK(r.error().code.empty());
    CHECK(r.error().message.empty());
    CHECK_FALSE(r.error().retry_after.has_value());
    CHECK(r.error().model.empty());
    CHECK_FALSE(r.error().exception);
    CHECK(r.wait == duration::zero());
    CHECK(r.why_wait == wait_reason::none);
    CHECK(r.stop == stop_reason::none);
  }
  t->~trace();
}

TEST_CASE("trace: model names are interned once per distinct list, for the life of the process") {
  const auto* a = failover::detail::intern_names({"interned-a", "interned-b"});
  const auto* again = failover::detail::intern_names({"interned-a", "interned-b"});
  const auto* other = failover::detail::intern_names({"interned-a"});
  CHECK(a == again);  // chains built from the same names share one list
  CHECK(a != other);
  REQUIRE(a->size() == 2);
  CHECK((*a)[1] == "interned-b");
  failover::trace t(a);
  CHECK(t.name(0) == "interned-a");
  CHECK(t.name(2).empty());
}

TEST_CASE("name_list: interned when a call first needs it, once per distinct list") {
  const std::size_t before = failover::detail::interned_lists();
  failover::detail::name_list names;
  names.push_back("name-list-a");
  names.push_back("name-list-b");
  CHECK(failover::detail::interned_lists() == before);  // adding interns nothing
  const auto* first = names.for_call();
  REQUIRE(first != nullptr);
  CHECK(failover::detail::interned_lists() == before + 1);
  CHECK(names.for_call() == first);

  failover::detail::name_list same;  // another chain with the same names shares the list
  same.push_back("name-list-a");
  same.push_back("name-list-b");
  CHECK(same.for_call() == first);
  const failover::detail::name_list copy = same;  // NOLINT(performance-unnecessary-copy-*)
  CHECK(copy.for_call() == first);

  names.push_back("name-list-c");  // a change: the next call gets a new list, the old one stays
  const auto* grown = names.for_call();
  CHECK(grown != first);
  REQUIRE(grown->size() == 3);
  CHECK((*first).size() == 2);
  CHECK((*first)[1] == "name-list-b");

  const failover::detail::name_list moved(std::move(names));
  CHECK(moved.for_call() == grown);
  // NOLINTNEXTLINE(bugprone-use-after-move): a list moved from is empty
  CHECK(names.size() == 0);
}
