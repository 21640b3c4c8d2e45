// Many threads through shared chains, one shared breaker and one shared budget, over randomized
// faults in fake time: every call ends with exactly one outcome, and the shared counters agree
// with what the traces recorded. FAILOVER_STRESS_CALLS sets the calls per thread.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <failover/failover.hpp>
#include <failover/testing.hpp>
#include "catch.hpp"

namespace {

using namespace std::chrono_literals;

struct shared_policies : failover::testing::fake_policies {
  using breaker = failover::circuit_breaker;
  using budget = failover::retry_budget;
};
using chain_type = failover::basic_fallback_chain<int(int), shared_policies>;

int calls_per_thread() {
  if (const char* s = std::getenv("FAILOVER_STRESS_CALLS")) {
    const long n = std::strtol(s, nullptr, 10);
    if (n > 0) return static_cast<int>(n);
  }
  return 100'000;
}

// A model whose faults come from a per-thread random stream: mostly successes, then 503s, 429s
// with a server wait, read timeouts, bad requests, context-window refusals and exceptions.
struct flaky_model {
  int fail_percent;
  failover::testing::fake_clock clock;

  failover::outcome<int> operator()(const failover::attempt_context& ctx, int x) const {
    thread_local std::mt19937_64 rng{std::hash<std::thread::id>{}(std::this_thread::get_id())};
    clock.advance(std::chrono::milliseconds(1 + static_cast<int>(rng() % 20)));
    const int roll = static_cast<int>(rng() % 100);
    if (roll >= fail_percent) return x + ctx.attempt;
    switch (rng() % 6) {
      case 0:
        return failover::failure::http(503);
      case 1:
        return failover::failure::http(429).header("retry-after-ms", "20");
      case 2:
        return failover::failure::of(failover::transport_error::read_timeout);
      case 3:
        return failover::failure::http(400);
      case 4:
        return failover::failure::http(400, "context_length_exceeded");
      default:
        throw std::runtime_error("model crashed");
    }
  }
};

struct tally {
  std::uint64_t calls = 0, values = 0, errors = 0;
  std::uint64_t first_attempts = 0, retries = 0, budget_refusals = 0, successes = 0;
  std::vector<std::uint64_t> ok, counted_failures, skips;

  explicit tally(std::size_t models) : ok(models), counted_failures(models), skips(models) {}

  void add(const failover::result<int>& r) {
    ++calls;
    if (r.has_value()) ++values;
    if (!r.has_value()) ++errors;
    ++first_attempts;
    for (const auto& a : r.trace().attempts()) {
      if (a.skipped) {
        ++skips[a.entry];
        continue;
      }
      if (a.ok) {
        ++ok[a.entry];
        ++successes;
        continue;
      }
      if (failover::detail::counts_against_model(a.error())) ++counted_failures[a.entry];
      if (a.why_wait == failover::wait_reason::backoff ||
          a.why_wait == failover::wait_reason::server)
        ++retries;
      if (a.stop == failover::stop_reason::budget_exhausted) ++budget_refusals;
    }
  }
  void merge(const tally& o) {
    calls += o.calls;
    values += o.values;
    errors += o.errors;
    first_attempts += o.first_attempts;
    retries += o.retries;
    budget_refusals += o.budget_refusals;
    successes += o.successes;
    for (std::size_t i = 0; i < ok.size(); ++i) {
      ok[i] += o.ok[i];
      counted_failures[i] += o.counted_failures[i];
      skips[i] += o.skips[i];
    }
  }
};

}  // namespace

TEST_CASE("concurrency: shared chains, breaker and budget reconcile with the traces",
          "[concurrency]") {
  constexpr int threads = 8;
  const int per_thread = calls_per_thread();
  failover::testing::fake_clock clock;
  failover::breaker_options breaker_opts;
  breaker_opts.cooldown = 2s;  // short, so circuits cycle through open, half-open and closed
  breaker_opts.max_cooldown = 8s;
  failover::circuit_breaker breaker(breaker_opts);
  failover::budget_options budget_opts;
  budget_opts.min_retries_per_second = 0.01;  // shared fake time runs fast: keep the floor low
  failover::retry_budget budget(budget_opts);

  // Two chains over the same three model names share health and budget.
  auto make_chain = [&](int primary_fail_percent) {
    failover::chain_options opts;
    opts.deadline = 20s;
    opts.max_total_attempts = 6;
    auto chain = std::make_unique<chain_type>(opts);
    failover::testing::use_fake_time(*chain, clock);
    chain->budget() = budget;
    chain->add("openai/gpt-4o", flaky_model{primary_fail_percent, clock});
    chain->add("anthropic/claude", flaky_model{30, clock});
    chain->add("openai/gpt-4o-long", flaky_model{10, clock}, failover::role::context_window);
    chain->set_breaker(breaker);
    return chain;
  };
  auto chain_a = make_chain(40);
  auto chain_b = make_chain(20);
  chain_a->classifier().on_exception<std::runtime_error>(failover::error_kind::server_error);

  std::vector<tally> tallies(threads, tally(3));
  std::vector<std::thread> pool;
  std::atomic<int> broken_outcomes{0};
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      const chain_type& chain = (t % 2 == 0) ? *chain_a : *chain_b;
      for (int i = 0; i < per_thread; ++i) {
        clock.advance(10ms);  // requests arrive over time, so open circuits come due again
        const failover::result<int> r = chain.run(i);
        // Exactly one outcome: a value xor an error, and a reason the call ended.
        const bool one = r.has_value() == (r.stop() == failover::stop_reason::succeeded) &&
                         r.stop() != failover::stop_reason::none;
        if (!one) broken_outcomes.fetch_add(1);
        tallies[static_cast<std::size_t>(t)].add(r);
      }
    });
  }
  for (auto& th : pool) th.join();

  tally total(3);
  for (const auto& t : tallies) total.merge(t);

  REQUIRE(broken_outcomes.load() == 0);
  REQUIRE(total.calls ==
          static_cast<std::uint64_t>(threads) * static_cast<std::uint64_t>(per_thread));
  REQUIRE(total.values + total.errors == total.calls);
  CHECK(total.values > 0);
  CHECK(total.errors > 0);

  const char* keys[] = {"openai/gpt-4o", "anthropic/claude", "openai/gpt-4o-long"};
  std::uint64_t all_skips = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    const auto snap = breaker.snapshot(keys[i]);
    REQUIRE(snap.has_value());
    INFO("model " << keys[i]);
    CHECK(snap->successes == total.ok[i]);
    CHECK(snap->failures == total.counted_failures[i]);
    CHECK(snap->rejected == total.skips[i]);
    all_skips += total.skips[i];
  }
  CHECK(all_skips > 0);  // the faults are heavy enough to open circuits
  std::uint64_t opened = 0;
  for (const auto& snap : breaker.snapshot()) opened += snap.opened;
  CHECK(opened > 3);  // and circuits reopen after their cooldown, more than once

  const auto b = budget.snapshot();
  UNSCOPED_INFO(
      "calls " << total.calls << " values " << total.values << " retries " << total.retries
               << " refused " << b.retries_refused << " skips " << all_skips << " fake time "
               << std::chrono::duration_cast<std::chrono::seconds>(clock.elapsed()).count() << "s");
  CHECK(b.first_attempts == total.first_attempts);
  CHECK(b.successes == total.successes);
  CHECK(b.retries_allowed == total.retries);
  CHECK(b.retries_refused == total.budget_refusals);
  CHECK(b.retries_refused > 0);  // the budget did bind
}
