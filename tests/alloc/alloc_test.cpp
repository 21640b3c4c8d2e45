// The success path allocates nothing: every global operator new is replaced by a counting one,
// and a call is measured after one warm-up call. The failure path is measured too, to prove the
// counter sees the library's allocations.
#include "catch.hpp"

#include <failover/failover.hpp>
#include <failover/testing.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>

namespace {

std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
std::atomic<long> frees{0};  // while counting: blocks given back (allocations - frees: still live)
std::atomic<long> fail_at{-1};  // while counting: the allocation (from 0) that throws bad_alloc
void* volatile sink = nullptr;  // keeps the compiler from eliding a new/delete pair

void note_allocation() noexcept {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
}

void release(void* p) noexcept {
  if (p && counting.load(std::memory_order_relaxed)) frees.fetch_add(1, std::memory_order_relaxed);
  std::free(p);
}

void* allocate(std::size_t size) {
  if (counting.load(std::memory_order_relaxed) &&
      allocations.load(std::memory_order_relaxed) == fail_at.load(std::memory_order_relaxed)) {
    fail_at.store(-1);  // once
    throw std::bad_alloc();
  }
  if (size == 0) size = 1;
  for (;;) {
    if (void* p = std::malloc(size)) {
      note_allocation();
      return p;
    }
    std::new_handler handler = std::get_new_handler();
    if (!handler) throw std::bad_alloc();
    handler();
  }
}

void* allocate_aligned(std::size_t size, std::align_val_t align) {
  const auto alignment = static_cast<std::size_t>(align);
  if (size == 0) size = 1;
  // aligned_alloc wants a size that is a multiple of the alignment.
  const std::size_t rounded = (size + alignment - 1) / alignment * alignment;
  for (;;) {
    if (void* p = std::aligned_alloc(alignment, rounded)) {
      note_allocation();
      return p;
    }
    std::new_handler handler = std::get_new_handler();
    if (!handler) throw std::bad_alloc();
    handler();
  }
}

void* allocate_nothrow(std::size_t size) noexcept {
  try {
    return allocate(size);
  } catch (...) {
    return nullptr;
  }
}

void* allocate_aligned_nothrow(std::size_t size, std::align_val_t align) noexcept {
  try {
    return allocate_aligned(size, align);
  } catch (...) {
    return nullptr;
  }
}

// Counts the allocations made while it is alive.
class allocation_scope {
 public:
  // `fail` >= 0: that allocation (counting from 0) throws std::bad_alloc instead.
  explicit allocation_scope(long fail = -1) noexcept {
    allocations.store(0);
    frees.store(0);
    fail_at.store(fail);
    counting.store(true);
  }
  ~allocation_scope() {
    counting.store(false);
    fail_at.store(-1);
  }
  allocation_scope(const allocation_scope&) = delete;
  allocation_scope& operator=(const allocation_scope&) = delete;
  long count() const noexcept { return allocations.load(); }
  // Blocks allocated in the scope and not given back yet (blocks from before it that it frees
  // count against this too).
  long live() const noexcept { return allocations.load() - frees.load(); }
};

}  // namespace

// NOLINTBEGIN(misc-new-delete-overloads): every form is replaced on purpose.
void* operator new(std::size_t size) {
  return allocate(size);
}
void* operator new[](std::size_t size) {
  return allocate(size);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return allocate_nothrow(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return allocate_nothrow(size);
}
void* operator new(std::size_t size, std::align_val_t align) {
  return allocate_aligned(size, align);
}
void* operator new[](std::size_t size, std::align_val_t align) {
  return allocate_aligned(size, align);
}
void* operator new(std::size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
  return allocate_aligned_nothrow(size, align);
}
void* operator new[](std::size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
  return allocate_aligned_nothrow(size, align);
}

void operator delete(void* p) noexcept {
  release(p);
}
void operator delete[](void* p) noexcept {
  release(p);
}
void operator delete(void* p, std::size_t) noexcept {
  release(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  release(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  release(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  release(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  release(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  release(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  release(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  release(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  release(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  release(p);
}
// NOLINTEND(misc-new-delete-overloads)

namespace {

template <class Chain>
void add_three_models(Chain& chain) {
  chain.add("model-a", [](int x) { return x * 2; });
  chain.add("model-b", [](int x) { return x + 2; });
  chain.add("model-c", [](int x) { return x - 2; });
}

struct aligned_thing {
  alignas(64) unsigned char bytes[64];
};

}  // namespace

TEST_CASE("alloc: the counter sees every form of operator new") {
  long plain = 0;
  long array = 0;
  long nothrow = 0;
  long aligned = 0;
  {
    allocation_scope scope;
    int* p = new int(1);
    sink = p;
    delete p;
    plain = scope.count();
  }
  {
    allocation_scope scope;
    int* p = new int[3];
    sink = p;
    delete[] p;
    array = scope.count();
  }
  {
    allocation_scope scope;
    int* p = new (std::nothrow) int(2);
    sink = p;
    delete p;
    nothrow = scope.count();
  }
  {
    allocation_scope scope;
    auto* p = new aligned_thing;
    sink = p;
    const bool is_aligned = reinterpret_cast<std::uintptr_t>(p) % 64 == 0;
    delete p;
    aligned = scope.count();
    CHECK(is_aligned);
  }
  CHECK(plain == 1);
  CHECK(array == 1);
  CHECK(nothrow == 1);
  CHECK(aligned == 1);
}

TEST_CASE("alloc: a chain whose first model answers allocates nothing (default policies)") {
  failover::fallback_chain<int(int)> chain;
  add_three_models(chain);
  REQUIRE(chain.run(1).value() == 2);  // warm-up
  long count = -1;
  bool ok = false;
  int value = 0;
  {
    allocation_scope scope;
    auto r = chain.run(21);
    ok = r.has_value();
    value = ok ? *r : 0;
    count = scope.count();
  }
  CHECK(ok);
  CHECK(value == 42);
  CHECK(count == 0);
}

TEST_CASE("alloc: a chain whose first model answers allocates nothing (fake policies)") {
  failover::basic_fallback_chain<int(int), failover::testing::fake_policies> chain;
  failover::testing::fake_clock clock;
  failover::testing::use_fake_time(chain, clock);
  add_three_models(chain);
  REQUIRE(chain.run(1).value() == 2);  // warm-up
  long count = -1;
  bool ok = false;
  {
    allocation_scope scope;
    auto r = chain.run(1);
    ok = r.has_value() && *r == 2 && !r.fallback_used();
    count = scope.count();
  }
  CHECK(ok);
  CHECK(count == 0);
}

TEST_CASE("alloc: a retrier success allocates nothing") {
  failover::retrier retrier("model-a");
  auto call = [](const failover::attempt_context& ctx, int x) { return x * 3 + ctx.attempt; };
  REQUIRE(retrier.run(call, 1).value() == 4);  // warm-up
  long count = -1;
  int value = 0;
  {
    allocation_scope scope;
    auto r = retrier.run(call, 2);
    value = r.has_value() ? *r : 0;
    count = scope.count();
  }
  CHECK(value == 7);
  CHECK(count == 0);
}

TEST_CASE("alloc: the failure path does allocate, so the counter works") {
  SECTION("a permanent failure, then a fallback (default policies: no wait)") {
    failover::fallback_chain<int(int)> chain;
    const std::string code = "a_provider_code_too_long_for_small_strings";
    chain.add("model-a",
              [code](int) -> failover::outcome<int> { return failover::failure::http(401, code); });
    chain.add("model-b", [](int x) { return x + 1; });
    REQUIRE(chain.run(1).value() == 2);  // warm-up
    long count = -1;
    bool ok = false;
    {
      allocation_scope scope;
      auto r = chain.run(1);
      ok = r.has_value() && r.fallback_used();
      count = scope.count();
    }
    CHECK(ok);
    CHECK(count > 0);
  }
  SECTION("a failing call (fake policies)") {
    failover::basic_fallback_chain<int(int), failover::testing::fake_policies> chain;
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    chain.add("model-a",
              [](int) -> failover::outcome<int> { return failover::failure::http(503); });
    REQUIRE_FALSE(chain.run(1).has_value());  // warm-up
    long count = -1;
    bool failed = false;
    {
      allocation_scope scope;
      auto r = chain.run(1);
      failed = !r.has_value();
      count = scope.count();
    }
    CHECK(failed);
    CHECK(count > 0);
  }
}

TEST_CASE("alloc: an add() that runs out of memory leaves the chain as it was") {
  // Fails each of add()'s allocations in turn; every failed add() must leave the entries and their
  // names of one length, and the chain must still call and name its models correctly.
  long failures = 0;
  for (long fail = 0;; ++fail) {
    failover::basic_fallback_chain<int(int), failover::testing::fake_policies> chain;
    failover::testing::fake_clock clock;
    failover::testing::use_fake_time(chain, clock);
    chain.add("model-a", [](int) -> failover::outcome<int> {
      return failover::failure::http(404);  // permanent: falls back at once
    });
    bool threw = false;
    {
      allocation_scope scope(fail);
      try {
        chain.add("model-b", [](int x) { return x + 1; });
      } catch (const std::bad_alloc&) {
        threw = true;
      }
    }
    if (!threw) {  // no allocation left to fail: add() went through
      CHECK(chain.size() == 2);
      const auto r = chain.run(1);
      CHECK(r.served_by() == "model-b");
      break;
    }
    ++failures;
    CHECK(chain.size() == 1);
    const auto r = chain.run(1);
    CHECK_FALSE(r.has_value());
    REQUIRE(r.trace().size() == 1);
    CHECK(r.trace().attempts()[0].model == "model-a");
    // The chain still takes the entry afterwards.
    chain.add("model-b", [](int x) { return x + 1; });
    const auto again = chain.run(1);
    CHECK(again.served_by() == "model-b");
    CHECK(*again == 2);
  }
  CHECK(failures >= 3);  // the callable, the name list and the entry vector at least
}

TEST_CASE("alloc: arguments taken by value are not copied by the library") {
  // Long enough that every copy of it allocates.
  const std::string prompt(200, 'p');
  SECTION("a chain of std::size_t(std::string), its callable taking a const reference") {
    failover::fallback_chain<std::size_t(std::string)> chain;
    chain.add("model-a", [](const std::string& s) { return s.size(); });
    chain.add("model-b",
              [](const failover::attempt_context&, const std::string& s) { return s.size() + 1; });
    REQUIRE(chain.run(prompt).value() == 200);  // warm-up
    std::string moved_in = prompt;
    long count = -1;
    std::size_t value = 0;
    {
      allocation_scope scope;
      auto r = chain.run(std::move(moved_in));
      value = r.has_value() ? *r : 0;
      count = scope.count();
    }
    CHECK(value == 200);
    CHECK(count == 0);
  }
  SECTION("a by-value parameter of the callable is its own copy, one per attempt") {
    failover::basic_fallback_chain<std::size_t(std::string), failover::testing::fake_policies>
        chain;
    failover::testing::use_fake_time(chain, failover::testing::fake_clock{});
    int calls = 0;
    chain.add("model-a", [&calls](std::string s) -> failover::outcome<std::size_t> {
      if (++calls == 1) return failover::failure::http(404);  // permanent: falls back
      return s.size();
    });
    chain.add("model-b", [](std::string s) { return s.size() * 2; });
    REQUIRE(chain.run(prompt).value() == 400);  // warm-up: model-a fails once, model-b serves
    calls = 10;                                 // model-a answers from now on
    std::string moved_in = prompt;
    long count = -1;
    std::size_t value = 0;
    {
      allocation_scope scope;
      auto r = chain.run(std::move(moved_in));
      value = r.has_value() ? *r : 0;
      count = scope.count();
    }
    CHECK(value == 200);
    CHECK(count == 1);  // the callable's own parameter, nothing else
  }
  SECTION("a retrier forwards its arguments") {
    failover::retrier retrier("model-a");
    auto call = [](const std::string& s) { return s.size(); };
    REQUIRE(retrier.run(call, prompt).value() == 200);  // warm-up
    std::string moved_in = prompt;
    long count = -1;
    std::size_t value = 0;
    {
      allocation_scope scope;
      auto a = retrier.run(call, prompt);
      auto b = retrier.run(call, std::move(moved_in));
      value = (a.has_value() ? *a : 0) + (b.has_value() ? *b : 0);
      count = scope.count();
    }
    CHECK(value == 400);
    CHECK(count == 0);
  }
}

TEST_CASE("alloc: chains built and destroyed per request leave nothing behind") {
  SECTION("100,000 chains with names of their own, never called") {
    const std::size_t lists = failover::detail::interned_lists();
    long live = -1;
    {
      allocation_scope scope;
      for (int i = 0; i < 100000; ++i) {
        failover::fallback_chain<int(int)> chain;
        const std::string id = std::to_string(i);
        chain.add("request-" + id + "-primary-model-name", [](int x) { return x; });
        chain.add("request-" + id + "-fallback-model-name", [](int x) { return x; });
      }
      live = scope.live();
    }
    CHECK(live == 0);
    CHECK(failover::detail::interned_lists() == lists);
  }
  SECTION("100,000 chains with the same names, each called: they share one interned list") {
    const auto build = [] {
      failover::fallback_chain<int(int)> chain;
      add_three_models(chain);
      return chain;
    };
    REQUIRE(build().run(1).value() == 2);  // warm-up: the list is interned once
    const std::size_t lists = failover::detail::interned_lists();
    long live = -1;
    bool ok = true;
    {
      allocation_scope scope;
      for (int i = 0; i < 100000; ++i) {
        const auto chain = build();
        const auto r = chain.run(i);
        ok = ok && r.has_value() && *r == 2 * i && r.served_by() == "model-a";
      }
      live = scope.live();
    }
    CHECK(ok);
    CHECK(live == 0);
    CHECK(failover::detail::interned_lists() == lists);
  }
}

TEST_CASE("alloc: add() is linear: 3000 entries cost a few allocations each") {
  // Names long enough that every copy of one allocates: copying the list on each add() would
  // make about 4.5 million allocations here.
  const std::string prefix(40, 'm');
  long count = -1;
  long after_call = -1;
  bool ok = false;
  {
    allocation_scope scope;
    failover::fallback_chain<int(int)> chain;
    for (int i = 0; i < 3000; ++i) {
      chain.add(prefix + std::to_string(i), [](int) -> failover::outcome<int> {
        return failover::failure::http(404);  // permanent: falls back to the next
      });
    }
    count = scope.count();
    const auto r = chain.run(1);
    ok = !r.has_value() && r.trace().size() >= 1 && r.trace().name(0) == prefix + "0" &&
         r.trace().name(2999) == prefix + "2999" && r.trace().name(3000).empty();
    after_call = scope.count();
  }
  CHECK(ok);
  // Per add: the name, the callable, and the amortised growth of two vectors.
  CHECK(count < 4 * 3000);
  // The first call interns the list once: one copy of each name, not one per add.
  CHECK(after_call - count < 2 * 3000);
}

TEST_CASE("alloc: a chain with a circuit breaker and a retry budget allocates nothing on success") {
  failover::basic_fallback_chain<int(int), failover::resilient_policies> chain;
  add_three_models(chain);
  failover::circuit_breaker health;
  chain.set_breaker(health);
  REQUIRE(chain.run(1).value() == 2);  // warm-up
  failover::error down;
  down.kind = failover::error_kind::server_error;
  down.transient = true;
  const auto now = failover::steady_clock{}.now();
  health.on_failure(health.resolve("model-a"), now, down, false);  // a run to end, still closed
  const auto backup = health.resolve("model-b");
  long count = -1;
  int value = 0;
  {
    allocation_scope scope;
    for (int i = 0; i < 3; ++i) {
      auto r = chain.run(21);
      value = r.has_value() ? *r : 0;
    }
    health.on_failure(backup, now, down, false);  // the locked path too
    count = scope.count();
  }
  CHECK(value == 42);
  CHECK(count == 0);
  const auto s = health.snapshot("model-a");
  REQUIRE(s.has_value());
  CHECK(s->successes == 4);
  CHECK(s->consecutive_failures == 0);
}
