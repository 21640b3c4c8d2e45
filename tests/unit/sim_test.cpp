// The virtual-time driver: many calls on one event queue, each ended once, on the library's own
// rules (the 11 call scenarios compared with run() are in fallback_chain_test.cpp).
#include "catch.hpp"

#include <failover/drivers/sim.hpp>
#include <failover/fallback_chain.hpp>
#include <failover/testing.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

using chain_t = failover::basic_fallback_chain<std::string(const std::string&),
                                               failover::testing::fake_policies>;
using machine_t = decltype(std::declval<const chain_t&>().begin_call(
    std::declval<const failover::call_options&>(), std::declval<failover::time_point>()));
using driver_t = failover::sim_driver<machine_t, failover::testing::fake_clock>;
using answer = failover::outcome<std::string>;

// A chain on fake time whose one model, "m", answers with its prompt.
struct echo {
  failover::testing::fake_clock clock;
  chain_t chain;
  explicit echo(failover::backoff_options b = {}) {
    failover::testing::use_fake_time(chain, clock);
    chain.add(
        "m", [](const std::string& p) { return p; }, failover::role::standard, {},
        failover::exponential_backoff<>(b));
  }
};

failover::backoff_options exact(failover::duration base) {
  failover::backoff_options b;
  b.jitter = failover::jitter::none;
  b.base = base;
  return b;
}

}  // namespace

TEST_CASE(
    "sim: 1,000 calls at once, each failing once and then answered, all end once, each "
    "after its backoff") {
  echo e(exact(100ms));
  auto& clock = e.clock;
  auto& chain = e.chain;
  constexpr std::size_t calls = 1000;
  std::vector<int> attempts(calls, 0);
  std::vector<std::optional<failover::result<std::string>>> out(calls);
  driver_t* d = nullptr;
  driver_t sim(
      clock,
      [&](driver_t::call_id c, const failover::actions::start_attempt& s) {
        // The world: each call's first attempt gets a 503 after 10 ms, its second an answer.
        const answer a = attempts[c]++ == 0 ? answer(failover::failure::http(503))
                                            : answer("ok:" + std::to_string(c));
        d->answer_at(clock.now() + 10ms, c, s.id, a);
      },
      [&](driver_t::call_id c, failover::result<std::string> r) {
        REQUIRE_FALSE(out[c]);  // once
        out[c].emplace(std::move(r));
      });
  d = &sim;
  const failover::time_point began = clock.now();
  for (std::size_t i = 0; i < calls; ++i) sim.add(chain.begin_call({}, clock.now()));
  CHECK(sim.running() == calls);
  sim.run();
  CHECK(sim.running() == 0);
  // All calls waited together: 10 ms, the 100 ms backoff, 10 ms.
  CHECK(clock.now() - began == 120ms);
  for (std::size_t i = 0; i < calls; ++i) {
    REQUIRE(out[i]);
    REQUIRE(out[i]->has_value());
    CHECK(**out[i] == "ok:" + std::to_string(i));
    REQUIRE(out[i]->trace().size() == 2);
    CHECK(out[i]->trace().attempts()[1].start == 110ms);
  }
}

TEST_CASE(
    "sim: an attempt never answered ends at the call's deadline, and cancel_at ends another") {
  echo e;
  auto& clock = e.clock;
  auto& chain = e.chain;
  std::vector<std::optional<failover::result<std::string>>> out(2);
  driver_t sim(
      clock, [](driver_t::call_id, const failover::actions::start_attempt&) {},  // never answers
      [&](driver_t::call_id c, failover::result<std::string> r) { out[c].emplace(std::move(r)); });
  failover::call_options timed;
  timed.deadline = 5s;
  const auto first = sim.add(chain.begin_call(timed, clock.now()));
  const auto second = sim.add(chain.begin_call({}, clock.now()));
  sim.cancel_at(clock.now() + 2s, second);
  sim.run();
  REQUIRE(out[first]);
  CHECK(out[first]->error().kind == failover::error_kind::deadline_exceeded);
  REQUIRE(out[second]);
  CHECK(out[second]->error().kind == failover::error_kind::cancelled);
  CHECK(clock.elapsed() == 5s);
}

TEST_CASE(
    "sim: a call ended can start the next one from on_done, and an answer given inside "
    "on_start waits for the next event") {
  echo e;
  auto& clock = e.clock;
  auto& chain = e.chain;
  int ended = 0;
  driver_t* d = nullptr;
  driver_t sim(
      clock,
      [&](driver_t::call_id c, const failover::actions::start_attempt& s) {
        d->answer(c, s.id, answer("at once"));  // from inside the machine's action: queued
      },
      [&](driver_t::call_id, failover::result<std::string> r) {
        REQUIRE(r.has_value());
        CHECK(*r == "at once");
        if (++ended < 3) d->add(chain.begin_call({}, clock.now()));
      });
  d = &sim;
  sim.add(chain.begin_call({}, clock.now()));
  CHECK(sim.run() == 3);  // one queued answer per call
  CHECK(ended == 3);
  CHECK(sim.running() == 0);
}
