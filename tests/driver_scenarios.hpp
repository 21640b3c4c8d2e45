// Call scenarios run through every driver (run(), the stepped machine, the callback driver, the
// Asio driver) on fake time, and a field-by-field comparison of their results and traces.
#pragma once

#include <failover/drivers/callback.hpp>
#include <failover/drivers/sim.hpp>
#include <failover/fallback_chain.hpp>
#include <failover/testing.hpp>
#include <failover/testing/fake_loop.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "catch.hpp"

namespace failover_test {

using scenario_chain = failover::basic_fallback_chain<std::string(const std::string&),
                                                      failover::testing::fake_policies>;
using scenario_answer = failover::outcome<std::string>;

// One scenario, built twice on fresh fake time: the entries' callables (kept here too, so that a
// stepped call can make its attempts itself) and the call's options.
struct scenario {
  std::vector<std::function<scenario_answer(const std::string&)>> models;
  failover::testing::fake_clock clock;
  scenario_chain chain;
  failover::call_options options;
};

using scenario_builder = std::function<void(scenario&)>;

// Adds an entry whose waits are exact (no jitter), so that two runs can be compared wait by wait.
// Each model call takes 1 ms of fake time: the chain's copy advances the clock itself, and a
// stepped call advances it around its own call (see stepped()).
inline void add_entry(scenario& s, std::string name,
                      std::function<scenario_answer(const std::string&)> f,
                      failover::role r = failover::role::standard) {
  failover::backoff_options b;
  b.jitter = failover::jitter::none;
  failover::testing::fake_clock clock = s.clock;
  s.chain.add(
      std::move(name),
      [clock, f](const std::string& p) {
        clock.advance(std::chrono::milliseconds(1));
        return f(p);
      },
      r, failover::retry_options{}, failover::exponential_backoff<>(b));
  s.models.push_back(std::move(f));
}

inline std::unique_ptr<scenario> build(const scenario_builder& b) {
  auto s = std::make_unique<scenario>();
  failover::testing::use_fake_time(s->chain, s->clock);
  b(*s);
  return s;
}

// The same call made through the machine one step at a time, as an async driver would.
inline failover::result<std::string> stepped(scenario& s, const std::string& prompt) {
  auto call = s.chain.begin_call(s.options);
  while (auto a = call.poll()) {
    if (const auto* st = std::get_if<failover::actions::start_attempt>(&*a)) {
      std::optional<scenario_answer> got;
      try {
        s.clock.advance(std::chrono::milliseconds(1));  // as the chain's own copies do
        got.emplace(s.models[st->entry](prompt));
      } catch (...) {
        call.handle(failover::events::failed{st->id, std::current_exception()}, s.clock.now());
        continue;
      }
      call.handle(failover::events::answered<std::string>{st->id, std::move(*got)}, s.clock.now());
    } else if (const auto* w = std::get_if<failover::actions::sleep_until>(&*a)) {
      if (s.chain.sleeper().sleep_for(w->wait, call.token()))
        call.handle(failover::events::timer_fired{}, s.clock.now());
      else
        call.handle(failover::events::cancelled{}, s.clock.now());
    } else if (std::holds_alternative<failover::actions::done>(*a)) {
      break;
    }
  }
  return std::move(call).take();
}

// The same call through the callback driver on an event loop in virtual time (any chain of
// std::string(const std::string&) on fake time).
template <class Chain>
failover::result<std::string> via_callback(const Chain& chain,
                                           const failover::testing::fake_clock& clock,
                                           const failover::call_options& options,
                                           const std::string& prompt) {
  failover::testing::fake_loop loop(clock);
  failover::inline_pool pool;
  std::optional<failover::result<std::string>> out;
  int handled = 0;
  failover::async_run_on(chain, loop, pool, options, prompt, [&](failover::result<std::string> r) {
    ++handled;
    out.emplace(std::move(r));
  });
  loop.run();
  CHECK(handled == 1);
  REQUIRE(out);
  return std::move(*out);
}
inline failover::result<std::string> via_callback(scenario& s, const std::string& prompt) {
  return via_callback(s.chain, s.clock, s.options, prompt);
}

// The same call through the virtual-time driver: each attempt runs its model 1 ms after it
// starts (the time the chain's copy of the model takes), and its answer is handed over then.
inline failover::result<std::string> via_sim(scenario& s, const std::string& prompt) {
  using machine = decltype(s.chain.begin_call(s.options, s.clock.now()));
  using driver = failover::sim_driver<machine, failover::testing::fake_clock>;
  std::optional<failover::result<std::string>> out;
  int handled = 0;
  driver* d = nullptr;
  driver sim(
      s.clock,
      [&](driver::call_id c, const failover::actions::start_attempt& st) {
        const std::size_t entry = st.entry;
        const failover::attempt_id id = st.id;
        d->at(s.clock.now() + std::chrono::milliseconds(1), [&, c, entry, id] {
          std::optional<scenario_answer> got;
          try {
            got.emplace(s.models[entry](prompt));
          } catch (...) {
            return d->fail(c, id, std::current_exception());
          }
          d->answer(c, id, std::move(*got));
        });
      },
      [&](driver::call_id, failover::result<std::string> r) {
        ++handled;
        out.emplace(std::move(r));
      });
  d = &sim;
  sim.add(s.chain.begin_call(s.options, s.clock.now()));
  sim.run();
  CHECK(handled == 1);
  CHECK(sim.running() == 0);
  REQUIRE(out);
  return std::move(*out);
}

inline void check_same(const failover::result<std::string>& blocking,
                       const failover::result<std::string>& step) {
  CHECK(blocking.stop() == step.stop());
  REQUIRE(blocking.has_value() == step.has_value());
  if (blocking.has_value()) {
    CHECK(*blocking == *step);
  } else {
    CHECK(blocking.error().kind == step.error().kind);
    CHECK(blocking.error().message == step.error().message);
  }
  const auto& x = blocking.trace().attempts();
  const auto& y = step.trace().attempts();
  REQUIRE(x.size() == y.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    INFO("attempt " << i);
    CHECK(x[i].model == y[i].model);
    CHECK(x[i].entry == y[i].entry);
    CHECK(x[i].role == y[i].role);
    CHECK(x[i].attempt == y[i].attempt);
    CHECK(x[i].start == y[i].start);
    CHECK(x[i].elapsed == y[i].elapsed);
    CHECK(x[i].ok == y[i].ok);
    CHECK(x[i].skipped == y[i].skipped);
    CHECK(x[i].error().kind == y[i].error().kind);
    CHECK(x[i].error().status == y[i].error().status);
    CHECK(x[i].error().model == y[i].error().model);
    CHECK(x[i].wait == y[i].wait);
    CHECK(x[i].why_wait == y[i].why_wait);
    CHECK(x[i].stop == y[i].stop);
  }
}

// Every scenario, by name.
inline std::vector<std::pair<const char*, scenario_builder>> driver_scenarios() {
  const auto ok = [](std::string name) {
    return [name](const std::string& p) -> scenario_answer { return name + ":" + p; };
  };
  const auto fails = [](int status) {
    return
        [status](const std::string&) -> scenario_answer { return failover::failure::http(status); };
  };
  const auto fails_then_ok = [](int failures, int status) {
    auto left = std::make_shared<int>(failures);
    return [left, status](const std::string& p) -> scenario_answer {
      if ((*left)-- > 0) return failover::failure::http(status);
      return "late:" + p;
    };
  };
  std::vector<std::pair<const char*, scenario_builder>> scenarios = {
      {"first attempt succeeds", [=](scenario& s) { add_entry(s, "a", ok("a")); }},
      {"a retry after a 503", [=](scenario& s) { add_entry(s, "a", fails_then_ok(1, 503)); }},
      {"two retries after 429s, then a fallback",
       [=](scenario& s) {
         add_entry(s, "a", fails_then_ok(2, 429));
         add_entry(s, "b", ok("b"));
       }},
      {"a permanent failure falls back",
       [=](scenario& s) {
         add_entry(s, "a", fails(401));
         add_entry(s, "b", ok("b"));
       }},
      {"the first model throws",
       [=](scenario& s) {
         add_entry(s, "a",
                   [](const std::string&) -> scenario_answer { throw std::runtime_error("boom"); });
         add_entry(s, "b", ok("b"));
       }},
      {"every model fails",
       [=](scenario& s) {
         add_entry(s, "a", fails(503));
         add_entry(s, "b", fails(400));
       }},
      {"a context-window fallback",
       [=](scenario& s) {
         add_entry(s, "a", [](const std::string&) -> scenario_answer {
           return failover::failure::of(failover::error_kind::context_window);
         });
         add_entry(s, "long", ok("long"), failover::role::context_window);
       }},
      {"cancelled before the first attempt",
       [=](scenario& s) {
         add_entry(s, "a", ok("a"));
         failover::cancel_source source;
         source.cancel();
         s.options.token = source.token();
       }},
      {"a deadline that ends the retries",
       [=](scenario& s) {
         add_entry(s, "a", fails(503));
         s.options.deadline = std::chrono::milliseconds(1500);
       }},
      {"a server wait (429 with Retry-After), then success",
       [=](scenario& s) {
         auto left = std::make_shared<int>(1);
         add_entry(s, "a", [left](const std::string& p) -> scenario_answer {
           if ((*left)-- > 0) {
             failover::failure f = failover::failure::http(429);
             f.retry_after = "3";
             return f;
           }
           return "a:" + p;
         });
       }},
      {"a content-policy fallback",
       [=](scenario& s) {
         add_entry(s, "a", [](const std::string&) -> scenario_answer {
           return failover::failure::of(failover::error_kind::content_policy);
         });
         add_entry(s, "b", ok("b"));
         add_entry(s, "lenient", ok("lenient"), failover::role::content_policy);
       }},
  };
  return scenarios;
}

}  // namespace failover_test
