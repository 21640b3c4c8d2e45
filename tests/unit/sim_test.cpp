// The virtual-time driver: many calls on one event queue, each ended once, on the library's own
// rules (the 11 call scenarios compared with run() are in fallback_chain_test.cpp).
#include "catch.hpp"

#include <failover/drivers/sim.hpp>
#include <failover/fallback_chain.hpp>
#include <failover/retrier.hpp>
#include <failover/testing.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
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

TEST_CASE("sim: what on_start throws is that attempt's answer, and the call ends once with it") {
  echo e;
  int ended = 0;
  std::optional<failover::result<std::string>> out;
  driver_t sim(
      e.clock,
      [](driver_t::call_id, const failover::actions::start_attempt&) {
        throw std::runtime_error("the world broke");
      },
      [&](driver_t::call_id, failover::result<std::string> r) {
        ++ended;
        out.emplace(std::move(r));
      });
  sim.add(e.chain.begin_call({}, e.clock.now()));
  sim.run();
  CHECK(ended == 1);
  CHECK(sim.running() == 0);
  REQUIRE(out);
  REQUIRE_FALSE(out->has_value());
  REQUIRE(out->error().exception);
  CHECK_THROWS_WITH(std::rethrow_exception(out->error().exception), "the world broke");
}

TEST_CASE("sim: a call added inside another's on_start leaves that one's answer queued") {
  echo e;
  int in_start = 0;  // on_start calls under way (one nests in the other)
  bool done_inside_start = false;
  int ended = 0;
  driver_t* d = nullptr;
  driver_t sim(
      e.clock,
      [&](driver_t::call_id c, const failover::actions::start_attempt& s) {
        ++in_start;
        if (c == 0) d->add(e.chain.begin_call({}, e.clock.now()));
        d->answer(c, s.id, answer("ok"));  // inside the call's own action: queued
        --in_start;
      },
      [&](driver_t::call_id, const failover::result<std::string>& r) {
        done_inside_start = done_inside_start || in_start > 0;
        ended += r.has_value() ? 1 : 0;
      });
  d = &sim;
  sim.add(e.chain.begin_call({}, e.clock.now()));
  sim.run();
  CHECK(ended == 2);
  CHECK_FALSE(done_inside_start);
}

TEST_CASE("sim: a deadline timer left over by a call that ended moves no clock") {
  echo e;
  driver_t* d = nullptr;
  driver_t sim(
      e.clock,
      [&](driver_t::call_id c, const failover::actions::start_attempt& s) {
        d->answer_at(e.clock.now() + 10ms, c, s.id, answer("ok"));
      },
      [](driver_t::call_id, const failover::result<std::string>&) {});
  d = &sim;
  failover::call_options timed;
  timed.deadline = 30s;
  sim.add(e.chain.begin_call(timed, e.clock.now()));
  CHECK(sim.run() == 1);  // the answer; the deadline's timer is dropped
  CHECK(e.clock.elapsed() == 10ms);
}

TEST_CASE("sim: run() called from inside run() is refused, naming the fix") {
  echo e;
  driver_t* d = nullptr;
  driver_t sim(
      e.clock, [](driver_t::call_id, const failover::actions::start_attempt&) {},
      [](driver_t::call_id, const failover::result<std::string>&) {});
  d = &sim;
  sim.at(e.clock.now() + 1ms, [&] { d->run(); });
  CHECK_THROWS_WITH(sim.run(), Catch::Contains("called from inside run()"));
}

TEST_CASE("sim: a move-only value is answered later") {
  failover::testing::fake_clock clock;
  failover::basic_retrier<failover::testing::fake_policies> retrier("m");
  failover::testing::use_fake_time(retrier, clock);
  using value = std::unique_ptr<int>;
  using machine = decltype(retrier.begin_call<value>(failover::call_options{}, clock.now()));
  using driver = failover::sim_driver<machine, failover::testing::fake_clock>;
  int got = 0;
  driver* d = nullptr;
  driver sim(
      clock,
      [&](driver::call_id c, const failover::actions::start_attempt& s) {
        d->answer_at(clock.now() + 5ms, c, s.id, std::make_unique<int>(7));
      },
      [&](driver::call_id, failover::result<value> r) {
        REQUIRE(r.has_value());
        got = **r;
      });
  d = &sim;
  sim.add(retrier.begin_call<value>(failover::call_options{}, clock.now()));
  sim.run();
  CHECK(got == 7);
}
