// Concurrency: a configured chain or retrier is shared by many threads, each call keeping its own
// state, and a cancel_source fired from another thread wakes a call in the middle of a wait. These
// run under ThreadSanitizer in CI (scripts/gate.sh tsan), with real clocks and real sleeps.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <failover/failover.hpp>
#include "catch.hpp"

using namespace std::chrono_literals;

namespace {

constexpr int thread_count = 4;
constexpr int calls_per_thread = 25;

// Short real waits: the point is that threads overlap inside the sleeper, not how long they sleep.
failover::exponential_backoff<> short_backoff() {
  return failover::exponential_backoff<>(
      {/*base=*/100us, /*multiplier=*/2.0, /*cap=*/400us, failover::jitter::full});
}

template <class F>
void on_threads(F body) {
  std::vector<std::thread> threads;
  threads.reserve(thread_count);
  for (int t = 0; t < thread_count; ++t) threads.emplace_back([&body, t] { body(t); });
  for (auto& t : threads) t.join();
}

}  // namespace

TEST_CASE("concurrency: one configured chain serves many threads, each call with its own state") {
  struct counting_policies : failover::default_policies {
    using hooks = failover::callback_hooks;
  };
  failover::basic_fallback_chain<std::string(const std::string&), counting_policies> chain;
  std::atomic<int> retries{0};
  std::atomic<int> fallbacks{0};
  chain.hooks().retry = [&](const failover::retry_scheduled&) { ++retries; };
  chain.hooks().fallback = [&](const failover::fallback_taken&) { ++fallbacks; };
  // The primary fails twice per call (503, then 429 with a tiny server wait) and then answers,
  // except for prompts marked "down", where it stays overloaded and the fallback answers.
  chain.add(
      "primary",
      [](const failover::attempt_context& ctx,
         const std::string& prompt) -> failover::outcome<std::string> {
        if (prompt.rfind("down", 0) == 0) return failover::failure::http(529, "overloaded_error");
        if (ctx.attempt == 1) return failover::failure::http(503);
        if (ctx.attempt == 2)
          return failover::failure::http(429, "rate_limit_exceeded")
              .header("retry-after-ms", "0.2");
        return "primary:" + prompt;
      },
      failover::role::standard, {/*max_attempts=*/3}, short_backoff());
  chain.add("secondary", [](const std::string& prompt) { return "secondary:" + prompt; });

  std::atomic<int> good{0};
  on_threads([&](int t) {
    for (int i = 0; i < calls_per_thread; ++i) {
      const bool down = i % 5 == 0;
      const std::string prompt =
          (down ? "down-" : "up-") + std::to_string(t) + "-" + std::to_string(i);
      const auto r = chain.run(prompt);
      const bool ok =
          r && (down ? *r == "secondary:" + prompt && r.fallback_used() && r.trace().size() == 4
                     : *r == "primary:" + prompt && !r.fallback_used() && r.trace().size() == 3);
      if (ok) ++good;
    }
  });
  constexpr int calls = thread_count * calls_per_thread;
  constexpr int down_calls = thread_count * ((calls_per_thread + 4) / 5);
  CHECK(good.load() == calls);
  CHECK(fallbacks.load() == down_calls);
  CHECK(retries.load() == 2 * calls);  // two retries per call on the primary, up or down
}

TEST_CASE("concurrency: one retrier, many threads, independent backoff streams") {
  failover::retrier retrier("model", {/*max_attempts=*/4}, short_backoff());
  std::atomic<int> good{0};
  on_threads([&](int t) {
    for (int i = 0; i < calls_per_thread; ++i) {
      const auto r =
          retrier.run([&](const failover::attempt_context& ctx) -> failover::outcome<int> {
            if (ctx.attempt < 3)
              return failover::failure::of(failover::transport_error::connection_reset);
            return t * 1000 + i;
          });
      if (r && *r == t * 1000 + i && r.trace().size() == 3) ++good;
    }
  });
  CHECK(good.load() == thread_count * calls_per_thread);
}

TEST_CASE("concurrency: cancelling from another thread wakes a call in the middle of a long wait") {
  // Every retry would wait 10 s; the cancel arrives after the first attempt has failed.
  failover::retrier retrier(
      "model", {/*max_attempts=*/5},
      failover::exponential_backoff<>({10s, 2.0, 10s, failover::jitter::none}));
  failover::cancel_source source;
  failover::call_options call;
  call.token = source.token();
  std::atomic<bool> attempted{false};

  std::thread canceller([&] {
    while (!attempted.load()) std::this_thread::yield();
    std::this_thread::sleep_for(20ms);
    source.cancel();
  });
  const auto start = std::chrono::steady_clock::now();
  const auto r = retrier.run_with(call, [&]() -> failover::outcome<int> {
    attempted = true;
    return failover::failure::http(503);
  });
  const auto took = std::chrono::steady_clock::now() - start;
  canceller.join();

  CHECK_FALSE(r.has_value());
  CHECK(r.stop() == failover::stop_reason::cancelled);
  CHECK(r.trace().size() == 1);
  CHECK(took < 5s);
}

TEST_CASE("concurrency: tokens observed on many threads see one cancellation") {
  failover::cancel_source source;
  std::atomic<int> woke{0};
  std::atomic<int> waiting{0};
  std::vector<std::thread> waiters;
  for (int t = 0; t < thread_count; ++t) {
    waiters.emplace_back([&, token = source.token()] {
      ++waiting;
      if (!token.wait_for(30s)) ++woke;  // false: cancelled during the wait
    });
  }
  while (waiting.load() < thread_count) std::this_thread::yield();
  source.cancel();
  for (auto& w : waiters) w.join();
  CHECK(woke.load() == thread_count);
  CHECK(source.cancelled());
}

TEST_CASE("concurrency: a wait of duration::max() waits (until cancelled) instead of returning") {
  // The standard library adds the wait to now(); unclamped, max() overflowed and the wait ended
  // at once, so a retry meant to wait "forever" ran immediately.
  failover::cancel_source source;
  std::atomic<bool> returned{false};
  std::atomic<bool> completed{true};
  std::thread waiter([&, token = source.token()] {
    completed = failover::thread_sleeper{}.sleep_for(failover::duration::max(), token);
    returned = true;
  });
  std::this_thread::sleep_for(100ms);
  const bool returned_early = returned.load();
  source.cancel();
  waiter.join();
  CHECK_FALSE(returned_early);
  CHECK_FALSE(completed.load());  // it ended by cancellation, not by running out
}

TEST_CASE(
    "concurrency: a cancel_callback destroyed while cancel() runs it waits for it to return") {
  for (int round = 0; round < 200; ++round) {
    failover::cancel_source source;
    std::atomic<int> state{0};  // 1: the callback started, 2: it returned
    auto cb = std::make_unique<failover::cancel_callback>(source.token(), [&]() noexcept {
      state.store(1);
      for (int i = 0; i < 1000; ++i) std::this_thread::yield();
      state.store(2);
    });
    std::thread canceller([&] { source.cancel(); });
    while (state.load() == 0 && !source.cancelled()) std::this_thread::yield();
    cb.reset();  // either unregistered before it ran, or waited until it returned
    const int seen = state.load();
    canceller.join();
    CHECK(seen != 1);
  }
}
