// The call machine driven directly (attempts by id, two in flight, answers of cancelled attempts
// ignored), asynchronous entries (a completion called twice or never), and a gate that asks the
// call to wait. All on fake time.
#include "catch.hpp"

#include <failover/drivers/callback.hpp>
#include <failover/fallback_chain.hpp>
#include <failover/testing.hpp>
#include <failover/testing/fake_loop.hpp>

#include "driver_scenarios.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

using namespace std::chrono_literals;

namespace {

using chain_t = failover::basic_fallback_chain<std::string(const std::string&),
                                               failover::testing::fake_policies>;
using answer = failover::outcome<std::string>;
using failover::error_kind;
using failover::stop_reason;
namespace actions = failover::actions;
namespace events = failover::events;

template <class Action, class Machine>
Action expect(Machine& m) {
  auto a = m.poll();
  REQUIRE(a);
  REQUIRE(std::holds_alternative<Action>(*a));
  return std::get<Action>(*a);
}

// One model, "m", that answers with its prompt, on fake time.
struct echo_chain {
  failover::testing::fake_clock clock;
  chain_t chain;
  echo_chain() {
    failover::testing::use_fake_time(chain, clock);
    chain.add("m", [](const std::string& p) { return p; });
  }
};

// Runs one call on `loop` (fake_loop, or any loop of this file with run()) to its end.
template <class Loop>
failover::result<std::string> on_loop(const chain_t& chain, Loop& loop, const std::string& prompt,
                                      int& handled) {
  std::optional<failover::result<std::string>> out;
  failover::async_run(chain, loop, prompt, [&](failover::result<std::string> r) {
    ++handled;
    out.emplace(std::move(r));
  });
  loop.run();
  REQUIRE(out);
  return std::move(*out);
}

}  // namespace

TEST_CASE("machine: two attempts in flight, the first answer wins, the other is cancelled") {
  echo_chain echo;
  const failover::testing::fake_clock& clock = echo.clock;
  const chain_t& chain = echo.chain;
  auto m = chain.begin_call(failover::call_options{}, clock.now());
  const auto first = expect<actions::start_attempt>(m);
  CHECK(first.context->attempt == 1);
  clock.advance(100ms);
  m.handle(events::launch_attempt{}, clock.now());  // a hedge beside the first
  const auto second = expect<actions::start_attempt>(m);
  CHECK(second.id != first.id);
  CHECK(second.entry == first.entry);
  CHECK(second.context->attempt == 2);
  CHECK(m.in_flight() == 2);
  clock.advance(50ms);
  m.handle_answer(second.id, answer("second"), clock.now());
  const auto cancel = expect<actions::cancel_attempt>(m);
  CHECK(cancel.id == first.id);
  expect<actions::done>(m);
  m.handle_answer(first.id, answer("first, too late"), clock.now());  // ignored
  CHECK_FALSE(m.poll());
  const auto r = std::move(m).take();
  REQUIRE(r.has_value());
  CHECK(*r == "second");
  REQUIRE(r.trace().size() == 2);
  CHECK(r.trace().attempts()[0].stop == stop_reason::cancelled);
  CHECK(r.trace().attempts()[0].error().kind == error_kind::cancelled);
  CHECK(r.trace().attempts()[0].elapsed == 150ms);
  CHECK(r.trace().attempts()[1].ok);
  CHECK(r.trace().attempts()[1].start == 100ms);
  CHECK(r.trace().attempts()[1].elapsed == 50ms);
}

TEST_CASE("machine: a failure while a sibling is in flight waits for the sibling") {
  echo_chain echo;
  const failover::testing::fake_clock& clock = echo.clock;
  const chain_t& chain = echo.chain;
  auto m = chain.begin_call(failover::call_options{}, clock.now());
  const auto first = expect<actions::start_attempt>(m);
  m.handle(events::launch_attempt{}, clock.now());
  const auto second = expect<actions::start_attempt>(m);
  m.handle_answer(first.id, answer(failover::failure::http(503)), clock.now());
  CHECK_FALSE(m.poll());  // no retry, no wait: the sibling may still answer
  m.handle_answer(second.id, answer("ok"), clock.now());
  expect<actions::done>(m);
  const auto r = std::move(m).take();
  REQUIRE(r.has_value());
  CHECK(r.trace().attempts()[0].error().status == 503);
}

TEST_CASE("machine: cancelling a call with an attempt in flight cancels the attempt") {
  echo_chain echo;
  const failover::testing::fake_clock& clock = echo.clock;
  const chain_t& chain = echo.chain;
  auto m = chain.begin_call(failover::call_options{}, clock.now());
  const auto start = expect<actions::start_attempt>(m);
  clock.advance(2s);
  m.handle(events::cancelled{}, clock.now());
  CHECK(expect<actions::cancel_attempt>(m).id == start.id);
  expect<actions::done>(m);
  m.handle_answer(start.id, answer("late"), clock.now());  // the answer of a cancelled attempt
  m.handle(events::failed{start.id, nullptr}, clock.now());
  CHECK_FALSE(m.poll());
  const auto r = std::move(m).take();
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().kind == error_kind::cancelled);
  CHECK(r.stop() == stop_reason::cancelled);
  CHECK(r.trace().attempts()[0].elapsed == 2s);
}

TEST_CASE("machine: the deadline ends a call whose attempt is still in flight") {
  echo_chain echo;
  const failover::testing::fake_clock& clock = echo.clock;
  failover::call_options call;
  call.deadline = 10s;
  auto m = echo.chain.begin_call(call, clock.now());
  const failover::time_point began = clock.now();
  const auto start = expect<actions::start_attempt>(m);
  m.handle(events::attempt_started{start.id}, clock.now());
  REQUIRE(m.next_timer());
  CHECK(*m.next_timer() == began + 10s);  // the driver's timer is wanted at the deadline
  clock.advance(4s);
  m.handle(events::timer_fired{}, clock.now());  // early: nothing happens
  CHECK_FALSE(m.poll());
  clock.advance(6s);
  m.handle(events::timer_fired{}, clock.now());
  CHECK(expect<actions::cancel_attempt>(m).id == start.id);
  expect<actions::done>(m);
  CHECK_FALSE(m.next_timer());
  m.handle_answer(start.id, answer("late"), clock.now());  // too late: ignored
  const auto r = std::move(m).take();
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().kind == error_kind::deadline_exceeded);
  CHECK(r.stop() == stop_reason::deadline);
  REQUIRE(r.trace().size() == 1);
  CHECK(r.trace().attempts()[0].elapsed == 10s);
  CHECK(r.trace().attempts()[0].stop == stop_reason::deadline);
  CHECK(r.trace().attempts()[0].error().kind == error_kind::deadline_exceeded);
}

TEST_CASE("machine: without a deadline an attempt in flight wants no timer") {
  echo_chain echo;
  auto m = echo.chain.begin_call(failover::call_options{}, echo.clock.now());
  expect<actions::start_attempt>(m);
  CHECK_FALSE(m.next_timer());
}

TEST_CASE("machine: an answer for an id never handed out is ignored") {
  echo_chain echo;
  const failover::testing::fake_clock& clock = echo.clock;
  const chain_t& chain = echo.chain;
  auto m = chain.begin_call(failover::call_options{}, clock.now());
  const auto start = expect<actions::start_attempt>(m);
  m.handle_answer(start.id + 7, answer("stranger"), clock.now());
  m.handle_answer(0, answer("nobody"), clock.now());
  CHECK_FALSE(m.poll());
  m.handle_answer(start.id, answer("mine"), clock.now());
  expect<actions::done>(m);
  CHECK(*std::move(m).take() == "mine");
}

TEST_CASE("machine: a machine can be moved before its first action is handed out") {
  echo_chain echo;
  const failover::testing::fake_clock& clock = echo.clock;
  const chain_t& chain = echo.chain;
  auto made = chain.begin_call(failover::call_options{}, clock.now());
  auto m = std::move(made);
  const auto start = expect<actions::start_attempt>(m);
  CHECK(start.context->model == "m");
  m.handle_answer(start.id, answer("moved"), clock.now());
  expect<actions::done>(m);
  CHECK(*std::move(m).take() == "moved");
}

TEST_CASE("async entries: a completion called twice gives one outcome") {
  failover::testing::fake_clock clock;
  failover::testing::fake_loop loop(clock);
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  chain.add("twice", [](const failover::attempt_context&, const std::string& p,
                        failover::completion<std::string> done) {
    done(answer("first:" + p));
    done(answer("second:" + p));  // dropped
  });
  int handled = 0;
  const auto r = on_loop(chain, loop, "q", handled);
  CHECK(handled == 1);
  REQUIRE(r.has_value());
  CHECK(*r == "first:q");
  CHECK(r.trace().size() == 1);
}

TEST_CASE(
    "async entries: a completion destroyed uncalled fails the attempt, and the call goes on") {
  failover::testing::fake_clock clock;
  failover::testing::fake_loop loop(clock);
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  chain.add("loses it", [](const failover::attempt_context&, const std::string&,
                           failover::completion<std::string> done) { (void)std::move(done); });
  chain.add("backup", [](const std::string& p) { return "backup:" + p; });
  int handled = 0;
  const auto r = on_loop(chain, loop, "q", handled);
  CHECK(handled == 1);
  REQUIRE(r.has_value());
  CHECK(*r == "backup:q");
  REQUIRE(r.trace().size() == 2);
  CHECK(r.trace().attempts()[0].error().kind == error_kind::unknown);
  CHECK(r.trace().attempts()[0].error().message.find("destroyed without being called") !=
        std::string::npos);
}

TEST_CASE("async entries: an answer from another thread, held over a retry wait") {
  failover::testing::fake_clock clock;
  failover::testing::fake_loop loop(clock);
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  auto calls = std::make_shared<int>(0);
  std::vector<std::thread> threads;
  chain.add("threaded", [calls, &threads](const failover::attempt_context&, const std::string& p,
                                          failover::completion<std::string> done) {
    const int n = ++*calls;
    threads.emplace_back([n, p, done = std::move(done)]() mutable {
      done(n == 1 ? answer(failover::failure::http(503)) : answer("ok:" + p));
    });
  });
  std::optional<failover::result<std::string>> out;
  failover::async_run(chain, loop, std::string("q"),
                      [&](failover::result<std::string> r) { out.emplace(std::move(r)); });
  while (!out) {  // the answers come from other threads: run until the call has its result
    loop.run();
    std::this_thread::yield();
  }
  for (auto& t : threads) t.join();
  REQUIRE(out->has_value());
  CHECK(**out == "ok:q");
  CHECK(out->trace().size() == 2);
  CHECK(out->trace().attempts()[1].start >= out->trace().attempts()[0].wait);
}

TEST_CASE("async entries: answers from other threads race nothing the loop's thread writes") {
  // Each worker answers while the loop's thread may still be inside the action that started its
  // attempt: the driver must read nothing there that the loop's thread writes (a data race that
  // ThreadSanitizer sees when the two meet, which many calls make likely).
  failover::testing::fake_clock clock;
  failover::testing::fake_loop loop(clock);
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  std::vector<std::thread> threads;
  chain.add("threaded", [&threads](const failover::attempt_context&, const std::string& p,
                                   failover::completion<std::string> done) {
    threads.emplace_back([p, done = std::move(done)]() mutable { done(answer("ok:" + p)); });
  });
  for (int i = 0; i < 100; ++i) {
    std::optional<failover::result<std::string>> out;
    failover::async_run(chain, loop, std::string("q"),
                        [&](failover::result<std::string> r) { out.emplace(std::move(r)); });
    while (!out) {
      loop.run();
      std::this_thread::yield();
    }
    REQUIRE(out->has_value());
    CHECK(**out == "ok:q");
  }
  for (auto& t : threads) t.join();
}

TEST_CASE("async entries: run() waits for an asynchronous entry's completion") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  chain.add("async", [](const failover::attempt_context& ctx, const std::string& p,
                        failover::completion<std::string> done) {
    std::thread([m = std::string(ctx.model), p, done = std::move(done)]() mutable {
      done(answer(m + ":" + p));
    }).detach();
  });
  const auto r = chain.run("q");
  REQUIRE(r.has_value());
  CHECK(*r == "async:q");
}

TEST_CASE("async calls: the call's token cancels it during a wait") {
  failover::testing::fake_clock clock;
  failover::testing::fake_loop loop(clock);
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  chain.add("m", [](const std::string&) { return answer(failover::failure::http(503)); });
  failover::cancel_source source;
  failover::call_options call;
  call.token = source.token();
  std::optional<failover::result<std::string>> out;
  failover::inline_pool pool;
  failover::async_run_on(chain, loop, pool, call, std::string("q"),
                         [&](failover::result<std::string> r) { out.emplace(std::move(r)); });
  loop.post([&] { source.cancel(); });  // runs after the first attempt, before its retry's timer
  loop.run();
  REQUIRE(out);
  CHECK(out->error().kind == error_kind::cancelled);
  CHECK(out->trace().size() == 1);
}

TEST_CASE("async calls: the deadline ends a call whose asynchronous attempt never answers") {
  failover::testing::fake_clock clock;
  failover::testing::fake_loop loop(clock);
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  // The entry keeps its completion and never calls it (a transport that ignores the attempt's
  // time budget); it only notices the attempt's token.
  std::optional<failover::completion<std::string>> held;
  const failover::cancel_token* seen = nullptr;
  chain.add("silent", [&](const failover::attempt_context& ctx, const std::string&,
                          failover::completion<std::string> done) {
    seen = ctx.cancel;
    held.emplace(std::move(done));
  });
  failover::call_options call;
  call.deadline = 30s;
  std::optional<failover::result<std::string>> out;
  failover::inline_pool pool;
  const failover::time_point began = clock.now();
  failover::async_run_on(chain, loop, pool, call, std::string("q"),
                         [&](failover::result<std::string> r) { out.emplace(std::move(r)); });
  loop.run();
  REQUIRE(out);
  CHECK(out->error().kind == error_kind::deadline_exceeded);
  CHECK(clock.now() - began == 30s);
  REQUIRE(out->trace().size() == 1);
  CHECK(out->trace().attempts()[0].error().kind == error_kind::deadline_exceeded);
  REQUIRE(seen);
  CHECK(seen->cancelled());  // the attempt was told to stop
  REQUIRE(held);
  (*held)(answer("too late"));  // dropped: the call has its one outcome
  loop.run();
  CHECK(out->error().kind == error_kind::deadline_exceeded);
}

namespace {
// A pool that counts what it is handed, and runs it at once.
struct counting_pool {
  std::shared_ptr<int> submitted = std::make_shared<int>(0);
  void submit(const std::function<void()>& f) const {
    ++*submitted;
    f();
  }
};
}  // namespace

TEST_CASE(
    "async calls: an asynchronous entry is started on the loop and never handed to the pool") {
  failover::testing::fake_clock clock;
  failover::testing::fake_loop loop(clock);
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  chain.add("async", [](const failover::attempt_context&, const std::string& p,
                        failover::completion<std::string> done) { done(answer("async:" + p)); });
  chain.add("sync", [](const std::string& p) { return "sync:" + p; });
  const chain_t copy = chain;  // copies of a chain keep what each entry is
  for (const chain_t* c : {static_cast<const chain_t*>(&chain), &copy}) {
    CHECK(c->entry_is_async(0));
    CHECK_FALSE(c->entry_is_async(1));
    counting_pool pool;
    std::optional<failover::result<std::string>> out;
    failover::async_run_on(*c, loop, pool, failover::call_options{}, std::string("q"),
                           [&](failover::result<std::string> r) { out.emplace(std::move(r)); });
    loop.run();
    REQUIRE(out);
    REQUIRE(out->has_value());
    CHECK(**out == "async:q");
    CHECK(*pool.submitted == 0);
  }
}

namespace {
// A gate that asks every call to wait 2 s before its first attempt, then lets it go.
struct pacing_gate {
  struct key {};
  std::shared_ptr<int> asks = std::make_shared<int>(0);
  key resolve(std::string_view) const { return {}; }
  void on_call(failover::time_point) const noexcept {}
  failover::verdict ask(const key&, const failover::gate_question& q) const noexcept {
    if (q.phase != failover::ask_phase::attempt) return failover::verdict::go();
    return (*asks)++ == 0 ? failover::verdict::wait_for(2s) : failover::verdict::go();
  }
  bool would_refuse(const key&, failover::time_point) const noexcept { return false; }
  void tell(const key&, const failover::gate_report&) const noexcept {}
};
struct paced_policies : failover::testing::fake_policies {
  using gates = failover::gate_list<pacing_gate>;
};
}  // namespace

TEST_CASE("gates: a gate's wait verdict delays the attempt, then the gate is asked again") {
  failover::testing::fake_clock clock;
  failover::basic_fallback_chain<std::string(const std::string&), paced_policies> chain;
  failover::testing::use_fake_time(chain, clock);
  chain.add("m", [](const std::string& p) { return p; });
  const auto r = chain.run("q");
  REQUIRE(r.has_value());
  CHECK(*chain.gates().get<2>().asks == 2);
  CHECK(r.trace().size() == 1);
  CHECK(r.trace().attempts()[0].start == 2s);
}

namespace {
failover::basic_retrier<failover::testing::fake_policies> exact_retrier(std::string model,
                                                                        int attempts) {
  failover::retry_options o;
  o.max_attempts = attempts;
  failover::backoff_options b;
  b.jitter = failover::jitter::none;
  return failover::basic_retrier<failover::testing::fake_policies>(
      std::move(model), o, failover::exponential_backoff<>(b));
}
}  // namespace

TEST_CASE("composition: a retrier alone and a one-entry chain of it make the same call") {
  const auto scripted = [](std::vector<answer> script) {
    auto left = std::make_shared<std::vector<answer>>(std::move(script));
    return [left]() -> answer {
      answer a = left->front();
      if (left->size() > 1) left->erase(left->begin());
      return a;
    };
  };
  const std::vector<std::vector<answer>> scripts = {
      {answer("at once")},
      {answer(failover::failure::http(503)), answer(failover::failure::http(429)), answer("third")},
      {answer(failover::failure::http(503))},  // retries run out
      {answer(failover::failure::http(401))},  // permanent
  };
  for (const auto& script : scripts) {
    failover::testing::fake_clock alone_clock;
    auto alone = exact_retrier("m", 4);
    failover::testing::use_fake_time(alone, alone_clock);
    const auto r1 = alone.run(scripted(script));

    failover::testing::fake_clock chain_clock;
    failover::basic_fallback_chain<std::string(), failover::testing::fake_policies> chain;
    failover::testing::use_fake_time(chain, chain_clock);
    chain.add(exact_retrier("m", 4), scripted(script));
    const auto r2 = chain.run();

    REQUIRE(r1.has_value() == r2.has_value());
    CHECK(r1.stop() == r2.stop());
    if (r1.has_value()) CHECK(*r1 == *r2);
    REQUIRE(r1.trace().size() == r2.trace().size());
    for (std::size_t i = 0; i < r1.trace().size(); ++i) {
      const auto& x = r1.trace().attempts()[i];
      const auto& y = r2.trace().attempts()[i];
      CHECK(x.model == y.model);
      CHECK(x.attempt == y.attempt);
      CHECK(x.start == y.start);
      CHECK(x.wait == y.wait);
      CHECK(x.why_wait == y.why_wait);
      CHECK(x.stop == y.stop);
      CHECK(x.error().kind == y.error().kind);
    }
  }
}

TEST_CASE("composition: the chain's attempt cap spans the retriers it is made of") {
  failover::testing::fake_clock clock;
  failover::chain_options o;
  o.max_total_attempts = 4;
  failover::basic_fallback_chain<std::string(), failover::testing::fake_policies> chain(o);
  failover::testing::use_fake_time(chain, clock);
  int a = 0;
  int b = 0;
  chain.add(exact_retrier("a", 3), [&]() -> answer {
    ++a;
    return failover::failure::http(503);
  });
  chain.add(exact_retrier("b", 3), [&]() -> answer {
    ++b;
    return failover::failure::http(503);
  });
  const auto r = chain.run();
  CHECK_FALSE(r.has_value());
  CHECK(a == 3);
  CHECK(b == 1);  // the cap, not b's own three attempts, ends the call
  CHECK(r.trace().calls() == 4);
  CHECK(r.stop() == stop_reason::total_attempts_exhausted);
}

TEST_CASE("async calls: what an entry throws is its answer, not a lost completion") {
  failover::testing::fake_clock clock;
  failover::testing::fake_loop loop(clock);
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  SECTION("a synchronous entry") {
    chain.add("throws", [](const std::string&) -> std::string { throw std::runtime_error("x"); });
  }
  SECTION("an asynchronous entry, before it answers") {
    chain.add("throws", [](const failover::attempt_context&, const std::string&,
                           failover::completion<std::string>) { throw std::runtime_error("x"); });
  }
  int handled = 0;
  const auto r = on_loop(chain, loop, "q", handled);
  CHECK(handled == 1);
  REQUIRE_FALSE(r.has_value());
  const auto& e = r.trace().attempts()[0].error();
  CHECK(e.exception != nullptr);  // classified from what was thrown
  CHECK(e.message.find("destroyed without being called") == std::string::npos);
  // The same call through run() ends the same way.
  const auto blocking = chain.run("q");
  CHECK(blocking.trace().size() == r.trace().size());
  CHECK(blocking.error().kind == r.error().kind);
}

TEST_CASE("machine: every action survives a burst of events between two polls") {
  echo_chain echo;
  const failover::testing::fake_clock& clock = echo.clock;
  const chain_t& chain = echo.chain;
  auto m = chain.begin_call(failover::call_options{}, clock.now());
  for (int i = 0; i < 5; ++i) m.handle(events::launch_attempt{}, clock.now());  // 4 at most
  m.handle(events::cancelled{}, clock.now());
  int cancels = 0;
  bool done = false;
  while (auto a = m.poll()) {
    cancels += std::holds_alternative<actions::cancel_attempt>(*a) ? 1 : 0;
    done = done || std::holds_alternative<actions::done>(*a);
  }
  CHECK(cancels == 4);
  CHECK(done);
  CHECK(std::move(m).take().error().kind == error_kind::cancelled);
}

TEST_CASE("async entries: completion::fail reports a throw, in run() and in async_run alike") {
  failover::testing::fake_clock clock;
  failover::testing::fake_loop loop(clock);
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  chain.add("fails", [](const failover::attempt_context&, const std::string&,
                        failover::completion<std::string> done) {
    done.fail(std::make_exception_ptr(std::runtime_error("on another thread")));
    done(answer("dropped"));  // after fail(), nothing more is taken
  });
  chain.add("backup", [](const std::string& p) { return "backup:" + p; });
  int handled = 0;
  const auto async = on_loop(chain, loop, "q", handled);
  const auto blocking = chain.run("q");
  for (const auto* r : {&async, &blocking}) {
    REQUIRE(r->has_value());
    CHECK(**r == "backup:q");
    REQUIRE(r->trace().size() == 2);
    CHECK(r->trace().attempts()[0].error().exception != nullptr);
  }
}

namespace {
// What a call told its gates and hooks: how often each was called.
struct call_counts {
  int calls = 0;     // gate on_call
  int asks = 0;      // gate ask, before an attempt
  int tells = 0;     // gate tell
  int told_ok = 0;   // of which a success
  int starts = 0;    // on_attempt_start
  int ends = 0;      // on_attempt_end
  int ended_ok = 0;  // of which a success
  bool operator==(const call_counts& o) const {
    return calls == o.calls && asks == o.asks && tells == o.tells && told_ok == o.told_ok &&
           starts == o.starts && ends == o.ends && ended_ok == o.ended_ok;
  }
};
// The gate's and the hooks' shared record of one call.
struct call_log {
  call_counts n;
  std::vector<failover::verdict> script;  // the gate's verdicts, one per ask; then go
  std::vector<std::uint32_t> open;        // tickets handed out with a go and not told back yet
  int wrong_tickets = 0;                  // tells with a ticket that was not open
};
struct scripted_gate {
  struct key {};
  std::shared_ptr<call_log> log = std::make_shared<call_log>();
  key resolve(std::string_view) const { return {}; }
  void on_call(failover::time_point) const noexcept { ++log->n.calls; }
  // Each go carries a ticket of its own (a half-open probe, say), which must come back once.
  failover::verdict ask(const key&, const failover::gate_question& q) const noexcept {
    if (q.phase != failover::ask_phase::attempt) return failover::verdict::go();
    const auto i = static_cast<std::size_t>(log->n.asks++);
    failover::verdict v = i < log->script.size() ? log->script[i] : failover::verdict::go();
    if (v.is_go()) {
      v.ticket = static_cast<std::uint32_t>(100 + i);
      log->open.push_back(v.ticket);
    }
    return v;
  }
  bool would_refuse(const key&, failover::time_point) const noexcept { return false; }
  void tell(const key&, const failover::gate_report& r) const noexcept {
    ++log->n.tells;
    if (!r.failure && !r.abandoned) ++log->n.told_ok;
    const auto at = std::find(log->open.begin(), log->open.end(), r.ticket);
    if (at == log->open.end()) {
      ++log->wrong_tickets;
    } else {
      log->open.erase(at);
    }
  }
};
struct counting_hooks : failover::no_hooks {
  std::shared_ptr<call_log> log;
  void on_attempt_start(const failover::attempt_started&) const noexcept { ++log->n.starts; }
  void on_attempt_end(const failover::attempt_ended& e) const noexcept {
    ++log->n.ends;
    if (e.ok) ++log->n.ended_ok;
  }
};
struct counted_policies : failover::testing::fake_policies {
  using gates = failover::gate_list<scripted_gate>;
  using hooks = counting_hooks;
};
using counted_chain =
    failover::basic_fallback_chain<std::string(const std::string&), counted_policies>;

// A chain of "a" (its answers from `a`, then its prompt) and "b" (its prompt, or a 503 with
// `b_fails`), each taking 1 ms of fake time, allowed `attempts` attempts in all; the gate's
// verdicts come from `script`.
struct counted_call {
  failover::testing::fake_clock clock;
  counted_chain chain;
  std::shared_ptr<call_log> log;
  counted_call(std::vector<std::function<answer()>> a, std::vector<failover::verdict> script,
               bool b_fails, int attempts)
      : chain([attempts] {
          failover::chain_options o;
          o.max_total_attempts = attempts;
          return o;
        }()) {
    failover::testing::use_fake_time(chain, clock);
    log = chain.gates().get<2>().log;
    log->script = std::move(script);
    chain.hooks().log = log;
    auto left = std::make_shared<std::vector<std::function<answer()>>>(std::move(a));
    failover::backoff_options exact;
    exact.jitter = failover::jitter::none;  // the two calls' waits compare exactly
    chain.add(
        "a",
        [left, clock = clock](const std::string& p) {
          clock.advance(1ms);
          if (left->empty()) return answer("a:" + p);
          auto next = std::move(left->front());
          left->erase(left->begin());
          return next();
        },
        failover::role::standard, failover::retry_options{},
        failover::exponential_backoff<>(exact));
    chain.add(
        "b",
        [b_fails, clock = clock](const std::string& p) {
          clock.advance(1ms);
          return b_fails ? answer(failover::failure::http(503)) : answer("b:" + p);
        },
        failover::role::standard, failover::retry_options{},
        failover::exponential_backoff<>(exact));
  }
};
}  // namespace

TEST_CASE(
    "run(): a call whose first attempt does not end it goes on as the machine would have run it "
    "from its start") {
  // run() makes a first attempt of a call with no deadline itself and hands anything but a value
  // to a machine that adopts it: the gates must hear of the call once, be asked once and told
  // once per attempt, and the hooks see each attempt once, exactly as through the callback driver.
  const auto now = failover::time_point{};
  const auto fail503 = [] { return answer(failover::failure::http(503)); };
  const auto boom = []() -> answer { throw std::runtime_error("boom"); };
  const auto fail400 = [] { return answer(failover::failure::http(400)); };
  struct shape {
    const char* name;
    std::vector<std::function<answer()>> a;
    std::vector<failover::verdict> script;
    std::size_t records;
    const char* value;  // null: the call fails
    call_counts want;   // calls, asks, tells, told_ok, starts, ends, ended_ok
    bool b_fails = false;
    int attempts = 10;
  };
  const std::vector<shape> shapes = {
      {"a value at once", {}, {}, 1, "a:q", {1, 1, 1, 1, 1, 1, 1}},
      {"a 503, then a value", {fail503}, {}, 2, "a:q", {1, 2, 2, 1, 2, 2, 1}},
      {"a throw: the next model", {boom}, {}, 2, "b:q", {1, 2, 2, 1, 2, 2, 1}},
      {"the gate refuses the first model",
       {},
       {failover::verdict::refuse(now + 30s, stop_reason::circuit_open)},
       2,
       "b:q",
       {1, 2, 1, 1, 1, 1, 1}},
      {"the gate asks the first attempt to wait",
       {},
       {failover::verdict::wait_for(2s)},
       1,
       "a:q",
       {1, 2, 1, 1, 1, 1, 1}},
      {"a 400: the call fails at once", {fail400}, {}, 1, nullptr, {1, 1, 1, 0, 1, 1, 0}},
      {"one attempt allowed: a 503 ends the call",
       {fail503},
       {},
       1,
       nullptr,
       {1, 1, 1, 0, 1, 1, 0},
       false,
       1},
      {"every model fails",
       {fail503, fail503, fail503, fail503, fail503},
       {},
       10,
       nullptr,
       {1, 10, 10, 0, 10, 10, 0},
       true},
  };
  for (const auto& sh : shapes) {
    SECTION(sh.name) {
      counted_call blocking(sh.a, sh.script, sh.b_fails, sh.attempts);
      const auto r1 = blocking.chain.run("q");
      counted_call async(sh.a, sh.script, sh.b_fails, sh.attempts);
      const auto r2 = failover_test::via_callback(async.chain, async.clock, {}, "q");
      REQUIRE(r1.has_value() == (sh.value != nullptr));
      if (sh.value) CHECK(*r1 == sh.value);
      CHECK(r1.trace().size() == sh.records);
      for (const auto& rec : r1.trace().attempts())  // each model's own time, as the clock saw it
        CHECK(rec.elapsed == (rec.skipped ? 0ms : 1ms));
      failover_test::check_same(r1, r2);
      for (const auto* log : {blocking.log.get(), async.log.get()}) {
        CHECK(log->n == sh.want);
        CHECK(log->wrong_tickets == 0);
        CHECK(log->open.empty());  // every go's ticket came back
      }
    }
  }
}

namespace {
// A loop that runs on the test's thread and refuses work (post() throws) once `refuse` is set.
struct refusing_loop {
  failover::testing::fake_loop& inner;
  bool refuse = false;
  bool running = false;
  void post(std::function<void()> f) {
    if (refuse) throw std::runtime_error("the loop takes no more work");
    inner.post(std::move(f));
  }
  void at(failover::time_point t, std::function<void()> f) { inner.at(t, std::move(f)); }
  bool running_in_this_thread() const { return running; }
};
}  // namespace

TEST_CASE(
    "async calls: an answer given inside the entry, with a loop that takes no work, ends "
    "the call once") {
  failover::testing::fake_clock clock;
  failover::testing::fake_loop inner(clock);
  refusing_loop loop{inner};
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  chain.add("inline", [&loop](const failover::attempt_context&, const std::string& p,
                              failover::completion<std::string> done) {
    loop.refuse = true;  // the answer below cannot be posted
    done(answer("inline:" + p));
  });
  int handled = 0;
  std::optional<failover::result<std::string>> out;
  failover::async_run(chain, loop, std::string("q"), [&](failover::result<std::string> r) {
    ++handled;
    out.emplace(std::move(r));
  });
  loop.running = true;
  inner.run();
  loop.running = false;
  CHECK(handled == 1);
  REQUIRE(out);
  REQUIRE(out->has_value());
  CHECK(**out == "inline:q");
}

namespace {
// A loop on the test's thread that keeps what it is given until it is run or destroyed. With
// `copying` it stores copies of the closures and lets the originals go, as a loop may; with
// `refuse_timers` its at() throws.
struct holding_loop {
  const failover::testing::fake_clock* clock = nullptr;
  bool copying = false;
  bool refuse_timers = false;
  bool refuse_posts = false;
  std::vector<std::function<void()>> ready;
  std::vector<std::pair<failover::time_point, std::function<void()>>> timers;
  // Work handed over while the loop is being destroyed (it is dropped and counted).
  std::shared_ptr<int> late = std::make_shared<int>(0);
  bool dying = false;

  holding_loop() = default;
  holding_loop(const holding_loop&) = delete;
  holding_loop& operator=(const holding_loop&) = delete;
  ~holding_loop() {
    dying = true;
    std::vector<std::function<void()>> r = std::move(ready);
    auto t = std::move(timers);
    r.clear();  // what it held is destroyed unrun, here
    t.clear();
  }

  void post(std::function<void()> f) {
    if (dying) {
      ++*late;
      return;
    }
    if (refuse_posts) throw std::runtime_error("the loop takes no work");
    if (copying) {
      const std::function<void()>& original = f;
      ready.push_back(original);
    } else {
      ready.push_back(std::move(f));
    }
  }
  void at(failover::time_point t, std::function<void()> f) {
    if (dying) {
      ++*late;
      return;
    }
    if (refuse_timers) throw std::runtime_error("no timers here");
    if (copying) {
      const std::function<void()>& original = f;
      timers.emplace_back(t, original);
    } else {
      timers.emplace_back(t, std::move(f));
    }
  }
  // Runs what was posted, not the timers.
  void run_ready() {
    while (!ready.empty()) {
      auto f = std::move(ready.front());
      ready.erase(ready.begin());
      f();
    }
  }
  // Runs the earliest timer, moving the fake clock to it; false when there is none.
  bool run_one_timer() {
    if (timers.empty()) return false;
    auto first = timers.begin();
    for (auto it = timers.begin(); it != timers.end(); ++it)
      if (it->first < first->first) first = it;
    auto [t, f] = std::move(*first);
    timers.erase(first);
    if (t > clock->now()) clock->advance(t - clock->now());
    f();
    return true;
  }
  // Runs everything, moving the fake clock to each timer in turn.
  void run() {
    for (;;) {
      run_ready();
      if (!run_one_timer()) return;
    }
  }
};
}  // namespace

namespace {
// An asynchronous entry that keeps its completion in `slot`: the test answers for it.
auto keeps_completion(std::optional<failover::completion<std::string>>& slot) {
  return [&slot](const failover::attempt_context&, const std::string&,
                 failover::completion<std::string> done) { slot.emplace(std::move(done)); };
}
failover::call_options with_deadline(failover::duration d) {
  failover::call_options call;
  call.deadline = d;
  return call;
}
}  // namespace

TEST_CASE(
    "async calls: a loop destroyed with calls pending lets each go: handlers destroyed, "
    "never run") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  chain.add("busy", [](const std::string&) { return answer(failover::failure::http(503)); });
  auto loop = std::make_unique<holding_loop>();
  loop->clock = &clock;
  auto held = std::make_shared<int>(0);  // each handler holds a copy
  const std::weak_ptr<int> watch = held;
  int handled = 0;
  // The first call runs up to its retry wait (its timer pending); the second has not begun.
  failover::async_run(chain, *loop, std::string("q"),
                      [&handled, held](const failover::result<std::string>&) { ++handled; });
  loop->run_ready();
  REQUIRE(loop->timers.size() == 1);
  failover::async_run(chain, *loop, std::string("q"),
                      [&handled, held](const failover::result<std::string>&) { ++handled; });
  REQUIRE(loop->ready.size() == 1);
  held.reset();
  CHECK_FALSE(watch.expired());
  loop.reset();
  CHECK(watch.expired());  // both handlers destroyed, and each call's state with them
  CHECK(handled == 0);
}

TEST_CASE("async calls: a loop that copies the closures it is given ends each call once") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  int calls = 0;
  chain.add("flaky", [&calls](const std::string& p) {
    return ++calls == 1 ? answer(failover::failure::http(503)) : answer("ok:" + p);
  });
  holding_loop loop;
  loop.clock = &clock;
  loop.copying = true;
  int handled = 0;
  const std::optional<failover::result<std::string>> out = on_loop(chain, loop, "q", handled);
  CHECK(handled == 1);
  REQUIRE(out->has_value());
  CHECK(**out == "ok:q");
  CHECK(out->trace().size() == 2);  // the retry's timer ran from a copy
}

TEST_CASE("async calls: a loop whose timer throws ends the call once, with what it threw") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  chain.add("busy", [](const std::string&) { return answer(failover::failure::http(503)); });
  holding_loop loop;
  loop.clock = &clock;
  loop.refuse_timers = true;
  int handled = 0;
  const std::optional<failover::result<std::string>> out = on_loop(chain, loop, "q", handled);
  CHECK(handled == 1);
  REQUIRE_FALSE(out->has_value());
  CHECK(out->error().message.find("the loop's timer threw") != std::string::npos);
  REQUIRE(out->error().exception);
  CHECK_THROWS_WITH(std::rethrow_exception(out->error().exception), "no timers here");
  CHECK(out->trace().size() == 1);
}

TEST_CASE(
    "async calls: a call whose handler holds another call's completion: the loop destroyed "
    "lets both go, and nothing is posted to it as it goes") {
  failover::testing::fake_clock clock;
  auto loop = std::make_unique<holding_loop>();
  loop->clock = &clock;
  const std::shared_ptr<int> late = loop->late;
  chain_t inner;
  failover::testing::use_fake_time(inner, clock);
  inner.add("busy", [](const std::string&) { return answer(failover::failure::http(503)); });
  chain_t outer;
  failover::testing::use_fake_time(outer, clock);
  auto held = std::make_shared<int>(0);
  const std::weak_ptr<int> watch = held;
  // The outer call's entry runs an inner call on the same loop and answers when it ends: the inner
  // call's handler owns the outer attempt's completion.
  outer.add("nested", [&inner, &loop](const failover::attempt_context&, const std::string& p,
                                      failover::completion<std::string> done) {
    auto shared = std::make_shared<failover::completion<std::string>>(std::move(done));
    failover::async_run(inner, *loop, p, [shared](failover::result<std::string> r) {
      (*shared)(r ? answer(*r) : answer(failover::failure::http(503)));
    });
  });
  int handled = 0;
  failover::async_run(outer, *loop, std::string("q"),
                      [&handled, held](const failover::result<std::string>&) { ++handled; });
  held.reset();
  loop->run_ready();  // the outer attempt is out; the inner call waits for its retry
  REQUIRE(loop->timers.size() == 1);
  loop.reset();
  CHECK(watch.expired());  // the outer call was let go as well
  CHECK(handled == 0);
  CHECK(*late == 0);
}

namespace {
// A loop that runs what it is posted at once, on the caller's thread.
struct inline_loop {
  void post(std::function<void()> f) { f(); }
  void at(failover::time_point, std::function<void()>) {
    throw std::logic_error("inline_loop has no timers");
  }
};
}  // namespace

TEST_CASE(
    "async calls: a loop destroyed from inside another loop's post() still lets its calls "
    "go") {
  failover::testing::fake_clock clock;
  chain_t quick;
  failover::testing::use_fake_time(quick, clock);
  quick.add("m", [](const std::string& p) { return p; });
  chain_t busy;
  failover::testing::use_fake_time(busy, clock);
  busy.add("busy", [](const std::string&) { return answer(failover::failure::http(503)); });
  auto waiting = std::make_unique<holding_loop>();
  waiting->clock = &clock;
  auto held = std::make_shared<int>(0);
  const std::weak_ptr<int> watch = held;
  failover::async_run(busy, *waiting, std::string("q"),
                      [held](const failover::result<std::string>&) {});
  held.reset();
  waiting->run_ready();
  REQUIRE(waiting->timers.size() == 1);
  // The quick call runs whole inside the inline loop's post(); its handler destroys the other
  // loop, whose call waits on its timer.
  inline_loop now;
  bool quick_done = false;
  failover::async_run(quick, now, std::string("q"), [&](const failover::result<std::string>& r) {
    quick_done = r.has_value();
    waiting.reset();
  });
  CHECK(quick_done);
  CHECK(watch.expired());
}

TEST_CASE(
    "async calls: a loop that refuses the call's start: async_run throws and frees the "
    "call") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  chain.add("m", [](const std::string& p) { return p; });
  holding_loop loop;
  loop.clock = &clock;
  loop.refuse_posts = true;
  auto held = std::make_shared<int>(0);
  const std::weak_ptr<int> watch = held;
  CHECK_THROWS_WITH(failover::async_run(chain, loop, std::string("q"),
                                        [held](const failover::result<std::string>&) {}),
                    "the loop takes no work");
  held.reset();
  CHECK(watch.expired());  // the handler is destroyed with the call, never run
}

TEST_CASE("async calls: an answer from another thread that post() refuses is parked, not lost") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  std::optional<failover::completion<std::string>> held;
  chain.add("later", keeps_completion(held));
  holding_loop loop;
  loop.clock = &clock;
  int handled = 0;
  std::optional<failover::result<std::string>> out;
  failover::async_run(chain, loop, std::string("q"), [&](failover::result<std::string> r) {
    ++handled;
    out.emplace(std::move(r));
  });
  loop.run_ready();  // the attempt is out, and the call has nothing on the loop
  REQUIRE(held);
  REQUIRE(loop.timers.empty());
  loop.refuse_posts = true;  // a full queue, say, while the answer comes from a worker thread
  SECTION("an answer: at() brings the call back for it") {
    std::thread([&held] { (*held)(answer("ok")); }).join();
    loop.refuse_posts = false;
    CHECK_FALSE(out);
    REQUIRE(loop.timers.size() == 1);  // the turn the call asked at() for
    loop.run();
    CHECK(handled == 1);
    REQUIRE(out);
    REQUIRE(out->has_value());
    CHECK(**out == "ok");
    CHECK(out->trace().size() == 1);
  }
  SECTION("what the attempt threw, reported through fail(): at() brings it back too") {
    std::thread([&held] {
      held->fail(std::make_exception_ptr(std::runtime_error("worker gave up")));
    }).join();
    loop.refuse_posts = false;
    CHECK_FALSE(out);
    REQUIRE(loop.timers.size() == 1);
    loop.run();
    CHECK(handled == 1);
    REQUIRE(out);
    REQUIRE_FALSE(out->has_value());  // an unmapped exception is permanent: one entry, one try
    REQUIRE(out->trace().size() == 1);
    REQUIRE(out->error().exception);
    CHECK_THROWS_WITH(std::rethrow_exception(out->error().exception), "worker gave up");
  }
}

TEST_CASE("async calls: with post() and at() refusing, a parked answer waits for the deadline") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  std::optional<failover::completion<std::string>> held;
  chain.add("later", keeps_completion(held));
  holding_loop loop;
  loop.clock = &clock;
  failover::inline_pool pool;
  const failover::call_options call = with_deadline(std::chrono::seconds(10));
  std::optional<failover::result<std::string>> out;
  failover::async_run_on(chain, loop, pool, call, std::string("q"),
                         [&](failover::result<std::string> r) { out.emplace(std::move(r)); });
  loop.run_ready();
  REQUIRE(held);
  REQUIRE(loop.timers.size() == 1);  // the deadline's
  loop.refuse_posts = true;
  loop.refuse_timers = true;
  std::thread([&held] { (*held)(answer("ok")); }).join();
  loop.refuse_posts = false;
  loop.refuse_timers = false;
  CHECK_FALSE(out);
  CHECK(loop.timers.size() == 1);  // nothing more could be handed over
  const failover::time_point start = clock.now();
  loop.run();  // the deadline's turn takes the parked answer before the deadline can end the call
  CHECK(clock.now() - start == std::chrono::seconds(10));
  REQUIRE(out);
  REQUIRE(out->has_value());
  CHECK(**out == "ok");
}

namespace {
// A loop with one timer, as the Asio driver's asio_loop has one per call: a later at() replaces
// the earlier one (whose closure is destroyed inside at()). Everything runs on the test's thread.
struct one_timer_loop {
  using one_timer_per_call = std::true_type;
  bool running_in_this_thread() const { return true; }
  const failover::testing::fake_clock* clock = nullptr;
  bool refuse_posts = false;
  std::vector<std::function<void()>> ready;
  std::optional<std::pair<failover::time_point, std::function<void()>>> timer;
  void post(std::function<void()> f) {
    if (refuse_posts) throw std::runtime_error("the queue is full");
    ready.push_back(std::move(f));
  }
  void at(failover::time_point t, std::function<void()> f) {
    timer.reset();
    timer.emplace(t, std::move(f));
  }
  void run_ready() {
    while (!ready.empty()) {
      auto f = std::move(ready.front());
      ready.erase(ready.begin());
      f();
    }
  }
  void run() {
    for (;;) {
      run_ready();
      if (!timer) return;
      auto next = std::move(*timer);
      timer.reset();
      if (next.first > clock->now()) clock->advance(next.first - clock->now());
      next.second();
    }
  }
};
}  // namespace

TEST_CASE("async calls: a parked answer's turn on a one-timer loop keeps the call's deadline") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  std::optional<failover::completion<std::string>> first;
  std::optional<failover::completion<std::string>> second;
  chain.add(exact_retrier("first", 1), keeps_completion(first));
  chain.add("second", keeps_completion(second));
  one_timer_loop loop;
  loop.clock = &clock;
  failover::inline_pool pool;
  const failover::call_options call = with_deadline(std::chrono::seconds(10));
  std::optional<failover::result<std::string>> out;
  const failover::time_point start = clock.now();
  failover::async_run_on(chain, loop, pool, call, std::string("q"),
                         [&](failover::result<std::string> r) { out.emplace(std::move(r)); });
  loop.run_ready();
  REQUIRE(first);
  REQUIRE(loop.timer);  // the deadline's
  // On the loop's thread, outside the call's own actions, the attempt reports a throw while the
  // queue is full: the answer is parked and the call's turn replaces its deadline timer.
  loop.refuse_posts = true;
  first->fail(std::make_exception_ptr(std::runtime_error("worker gave up")));
  loop.refuse_posts = false;
  REQUIRE(loop.timer);
  CHECK(loop.timer->first == clock.now());
  loop.run();  // the turn: the failure falls back to "second", which never answers; the deadline
  CHECK(second);
  REQUIRE(out);
  REQUIRE_FALSE(out->has_value());
  CHECK(out->error().kind == failover::error_kind::deadline_exceeded);
  CHECK(clock.now() - start == std::chrono::seconds(10));
}

TEST_CASE("async calls: a parked answer's turn leaves a loop's other timers alone") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  std::optional<failover::completion<std::string>> first;
  std::optional<failover::completion<std::string>> second;
  chain.add(exact_retrier("first", 1), keeps_completion(first));
  chain.add("second", keeps_completion(second));
  holding_loop loop;  // keeps every timer: the deadline's stays armed through the turn
  loop.clock = &clock;
  failover::inline_pool pool;
  const failover::call_options call = with_deadline(std::chrono::seconds(10));
  std::optional<failover::result<std::string>> out;
  failover::async_run_on(chain, loop, pool, call, std::string("q"),
                         [&](failover::result<std::string> r) { out.emplace(std::move(r)); });
  loop.run_ready();
  REQUIRE(first);
  REQUIRE(loop.timers.size() == 1);  // the deadline's
  loop.refuse_posts = true;
  std::thread([&first] { (*first)(answer(failover::failure::http(503))); }).join();
  loop.refuse_posts = false;
  REQUIRE(loop.timers.size() == 2);  // and the turn's
  loop.refuse_timers = true;         // still congested when the turn runs
  REQUIRE(loop.run_one_timer());     // the turn: "second" is called, nothing more is armed
  loop.refuse_timers = false;
  REQUIRE(second);
  (*second)(answer("ok"));
  loop.run();
  REQUIRE(out);
  REQUIRE(out->has_value());
  CHECK(**out == "ok");
}

TEST_CASE("async calls: fail(nullptr) is an empty exception, posted or parked") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  std::optional<failover::completion<std::string>> held;
  chain.add("later", keeps_completion(held));
  holding_loop loop;
  loop.clock = &clock;
  std::optional<failover::result<std::string>> out;
  failover::async_run(chain, loop, std::string("q"),
                      [&](failover::result<std::string> r) { out.emplace(std::move(r)); });
  loop.run_ready();
  REQUIRE(held);
  const bool refused = GENERATE(false, true);
  loop.refuse_posts = refused;
  std::thread([&held] { held->fail(nullptr); }).join();
  loop.refuse_posts = false;
  loop.run();
  REQUIRE(out);
  REQUIRE_FALSE(out->has_value());
  CHECK(out->trace().attempts()[0].error().message == "the attempt reported an empty exception");
}

TEST_CASE("async calls: a loop that refuses the deadline's timer ends the call once") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  std::optional<failover::completion<std::string>> held;
  chain.add("later", keeps_completion(held));
  holding_loop loop;
  loop.clock = &clock;
  loop.refuse_timers = true;
  failover::inline_pool pool;
  const failover::call_options call = with_deadline(std::chrono::seconds(10));
  int handled = 0;
  std::optional<failover::result<std::string>> out;
  failover::async_run_on(chain, loop, pool, call, std::string("q"),
                         [&](failover::result<std::string> r) {
                           ++handled;
                           out.emplace(std::move(r));
                         });
  loop.run();
  CHECK(held);
  CHECK(handled == 1);
  REQUIRE(out);
  REQUIRE_FALSE(out->has_value());
  CHECK(out->error().message.find("the loop's timer threw") != std::string::npos);
  held.reset();  // an answer too late for the call
  loop.run();
  CHECK(handled == 1);
}

TEST_CASE("async calls: an answer, then a throw the loop refuses: the answer still counts") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  holding_loop loop;
  loop.clock = &clock;
  chain.add("answers-then-throws", [&loop](const failover::attempt_context&, const std::string&,
                                           failover::completion<std::string> done) {
    done(answer("ok"));        // posted: the queue has room
    loop.refuse_posts = true;  // and now it is full
    throw std::runtime_error("after answering");
  });
  std::optional<failover::result<std::string>> out;
  failover::async_run(chain, loop, std::string("q"),
                      [&](failover::result<std::string> r) { out.emplace(std::move(r)); });
  loop.run_ready();
  loop.refuse_posts = false;
  loop.run();
  REQUIRE(out);
  REQUIRE(out->has_value());
  CHECK(**out == "ok");
  CHECK(out->trace().size() == 1);
}

namespace {
// A pool that takes no work, as a bounded pool that is full.
struct full_pool {
  void submit(const std::function<void()>&) const { throw std::runtime_error("the pool is full"); }
};
}  // namespace

TEST_CASE("async calls: a pool that refuses an attempt: the attempt fails with it, the call ends") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  int blocking = 0;
  chain.add("blocking", [&blocking](const std::string& p) {
    ++blocking;
    return p;
  });
  chain.add("async", [](const failover::attempt_context&, const std::string& p,
                        failover::completion<std::string> done) { done(answer("async:" + p)); });
  failover::testing::fake_loop loop(clock);
  full_pool pool;
  int handled = 0;
  std::optional<failover::result<std::string>> out;
  failover::async_run_on(chain, loop, pool, failover::call_options{}, std::string("q"),
                         [&](failover::result<std::string> r) {
                           ++handled;
                           out.emplace(std::move(r));
                         });
  CHECK_NOTHROW(loop.run());
  CHECK(handled == 1);
  CHECK(blocking == 0);
  REQUIRE(out);
  REQUIRE(out->has_value());  // the refusal is the first entry's failure: the next one served
  CHECK(**out == "async:q");
  REQUIRE(out->trace().size() == 2);
  const failover::error& refused = out->trace().attempts()[0].error();
  REQUIRE(refused.exception);
  CHECK_THROWS_WITH(std::rethrow_exception(refused.exception), "the pool is full");
}

namespace {
// A pool that keeps the closure and then says it is full, as a queue that took work it will run.
struct keeping_full_pool {
  std::vector<std::function<void()>>* kept;
  void submit(const std::function<void()>& f) const {
    kept->push_back(f);
    throw std::runtime_error("taken, then reported full");
  }
};
// A pool that drops what it took without running it (shutting down with work queued).
struct keeping_pool {
  std::vector<std::function<void()>>* kept;
  void submit(const std::function<void()>& f) const { kept->push_back(f); }
};
}  // namespace

TEST_CASE("async calls: an attempt its pool refused runs cancelled if the pool runs it after all") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  std::optional<bool> cancelled_when_run;
  chain.add("blocking", [&](const failover::attempt_context& ctx, const std::string& p) {
    cancelled_when_run = ctx.cancelled();
    return p;
  });
  chain.add("async", [](const failover::attempt_context&, const std::string& p,
                        failover::completion<std::string> done) { done(answer("async:" + p)); });
  failover::testing::fake_loop loop(clock);
  std::vector<std::function<void()>> kept;
  const keeping_full_pool pool{&kept};
  std::optional<failover::result<std::string>> out;
  failover::async_run_on(chain, loop, pool, failover::call_options{}, std::string("q"),
                         [&](failover::result<std::string> r) { out.emplace(std::move(r)); });
  loop.run();
  REQUIRE(out);
  REQUIRE(out->has_value());
  CHECK(**out == "async:q");
  REQUIRE(kept.size() == 1);
  kept.front()();  // the pool runs what it had taken
  loop.run();
  REQUIRE(cancelled_when_run);
  CHECK(*cancelled_when_run);
  CHECK(**out == "async:q");  // and the answer changes nothing
}

TEST_CASE("async calls: a pool that drops an attempt unrun: it fails as lost, the call goes on") {
  failover::testing::fake_clock clock;
  chain_t chain;
  failover::testing::use_fake_time(chain, clock);
  chain.add("blocking", [](const std::string& p) { return p; });
  chain.add("async", [](const failover::attempt_context&, const std::string& p,
                        failover::completion<std::string> done) { done(answer("async:" + p)); });
  failover::testing::fake_loop loop(clock);
  std::vector<std::function<void()>> kept;
  const keeping_pool pool{&kept};
  int handled = 0;
  std::optional<failover::result<std::string>> out;
  failover::async_run_on(chain, loop, pool, failover::call_options{}, std::string("q"),
                         [&](failover::result<std::string> r) {
                           ++handled;
                           out.emplace(std::move(r));
                         });
  loop.run();
  REQUIRE(kept.size() == 1);
  CHECK_FALSE(out);
  kept.clear();  // the pool shuts down with the attempt queued
  loop.run();
  CHECK(handled == 1);
  REQUIRE(out);
  REQUIRE(out->has_value());
  CHECK(**out == "async:q");
  REQUIRE(out->trace().size() == 2);
  CHECK(out->trace().attempts()[0].error().message.find("completion") != std::string::npos);
}

namespace {
// One of several handles onto one holding_loop's queue, as a loop per call over one shared queue.
struct loop_handle {
  holding_loop* queue;
  void post(std::function<void()> f) { queue->post(std::move(f)); }
  void at(failover::time_point t, std::function<void()> f) { queue->at(t, std::move(f)); }
};
}  // namespace

TEST_CASE(
    "async calls: calls on two handles onto one queue: the queue destroyed lets both go, "
    "and nothing is posted to it as it goes") {
  failover::testing::fake_clock clock;
  auto queue = std::make_unique<holding_loop>();
  queue->clock = &clock;
  const std::shared_ptr<int> late = queue->late;
  loop_handle outer_loop{queue.get()};
  loop_handle inner_loop{queue.get()};
  chain_t inner;
  failover::testing::use_fake_time(inner, clock);
  inner.add("busy", [](const std::string&) { return answer(failover::failure::http(503)); });
  chain_t outer;
  failover::testing::use_fake_time(outer, clock);
  outer.add("nested", [&inner, &inner_loop](const failover::attempt_context&, const std::string& p,
                                            failover::completion<std::string> done) {
    auto shared = std::make_shared<failover::completion<std::string>>(std::move(done));
    failover::async_run(inner, inner_loop, p, [shared](failover::result<std::string> r) {
      (*shared)(r ? answer(*r) : answer(failover::failure::http(503)));
    });
  });
  auto held = std::make_shared<int>(0);
  const std::weak_ptr<int> watch = held;
  failover::async_run(outer, outer_loop, std::string("q"),
                      [held](const failover::result<std::string>&) {});
  held.reset();
  queue->run_ready();
  REQUIRE(queue->timers.size() == 1);
  queue.reset();
  CHECK(watch.expired());
  CHECK(*late == 0);
}
