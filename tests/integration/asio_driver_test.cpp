// The Asio driver against real loopback servers: completion tokens (a callback, use_future,
// deferred, and under C++20 a coroutine with use_awaitable), retries and fallbacks over the
// curl multi adapter, and cancellation through a cancellation slot in the middle of a transfer.
#include <failover/adapters/curl_multi.hpp>
#include <failover/drivers/asio.hpp>
#include <failover/fallback_chain.hpp>
#include <failover/testing/loopback_server.hpp>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/use_future.hpp>
#if defined(ASIO_HAS_CO_AWAIT)
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/use_awaitable.hpp>
#endif

#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "driver_scenarios.hpp"

using namespace std::chrono_literals;

namespace {

using chain_t = failover::fallback_chain<std::string(const std::string&)>;
using failover::error_kind;
using failover::testing::loopback_reply;
using failover::testing::loopback_server;

// An entry that POSTs the prompt to `url` through the curl multi adapter and answers with the
// body of a 2xx response (anything else is the classified failure).
auto over_http(failover::http::curl_multi& multi, std::string url) {
  return [&multi, url](const failover::attempt_context& ctx, const std::string& prompt,
                       failover::completion<std::string> done) {
    multi.async_post(
        ctx, url + "/v1/chat/completions", prompt, {}, {}, {}, "application/json",
        [done = std::move(done)](failover::outcome<failover::http::response> r) mutable {
          if (!r.has_value()) return done(r.failure());
          failover::http::response& res = r.value();
          if (res.status / 100 != 2) return done(failover::http::status_failure(res));
          done(std::move(res.body));
        });
  };
}

failover::retry_options quick_retries() {
  failover::retry_options o;
  o.max_attempts = 3;
  return o;
}

}  // namespace

TEST_CASE("a plain callback gets the result once, on the io_context's thread") {
  asio::io_context io;
  chain_t chain;
  chain.add("inline", [](const std::string& p) { return "inline:" + p; });
  int calls = 0;
  std::optional<failover::result<std::string>> got;
  failover::async_run(chain, io, std::string("q"), [&](failover::result<std::string> r) {
    ++calls;
    got.emplace(std::move(r));
  });
  CHECK(calls == 0);  // never inside async_run
  io.run();
  CHECK(calls == 1);
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK(**got == "inline:q");
}

TEST_CASE("use_future and deferred tokens complete with the result") {
  asio::io_context io;
  chain_t chain;
  chain.add("inline", [](const std::string& p) { return "inline:" + p; });
  auto future = failover::async_run(chain, io.get_executor(), std::string("f"), asio::use_future);
  auto op = failover::async_run(chain, io, std::string("d"), asio::experimental::deferred);
  std::optional<failover::result<std::string>> deferred_result;
  std::move(op)([&](failover::result<std::string> r) { deferred_result.emplace(std::move(r)); });
  io.run();
  const failover::result<std::string> r = future.get();
  REQUIRE(r.has_value());
  CHECK(*r == "inline:f");
  REQUIRE(deferred_result);
  CHECK(**deferred_result == "inline:d");
}

TEST_CASE("async_run_on runs a blocking entry on the pool, and the I/O thread stays free") {
  asio::io_context io;
  asio::thread_pool pool(1);
  // The entry blocks until a handler on the I/O thread lets it go: run inline, it would hold
  // the thread that handler needs, and give up after 30 s with a failure.
  std::promise<void> let_go;
  std::shared_future<void> released = let_go.get_future().share();
  std::thread::id io_thread, entry_thread;
  chain_t chain;
  chain.add("blocking", [&](const std::string& p) -> failover::outcome<std::string> {
    entry_thread = std::this_thread::get_id();
    if (released.wait_for(30s) != std::future_status::ready)
      return failover::failure::of(error_kind::unknown, "the I/O thread was held");
    return "pooled:" + p;
  });
  std::optional<failover::result<std::string>> got;
  std::thread::id completed_on;
  failover::async_run_on(chain, io, pool, failover::call_options{}, std::string("q"),
                         [&](failover::result<std::string> r) {
                           completed_on = std::this_thread::get_id();
                           got.emplace(std::move(r));
                         });
  asio::post(io, [&] {
    io_thread = std::this_thread::get_id();
    let_go.set_value();
  });
  io.run();
  pool.join();
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK(**got == "pooled:q");
  CHECK(entry_thread != io_thread);
  CHECK(completed_on == io_thread);  // the answer comes back to the call's executor
}

TEST_CASE("async_run_on with a pool executor and per-call options: the deadline still bounds it") {
  asio::io_context io;
  asio::thread_pool pool(2);
  chain_t chain;
  chain.add("first", [](const std::string&) -> failover::outcome<std::string> {
    return failover::failure::of(error_kind::not_found, "no such model");
  });
  chain.add("second", [](const failover::attempt_context& ctx, const std::string& p) {
    return std::string(ctx.remaining ? "bounded:" : "unbounded:") + p;
  });
  failover::call_options call;
  call.deadline = 60s;
  std::optional<failover::result<std::string>> got;
  failover::async_run_on(chain, io.get_executor(), pool.get_executor(), call, std::string("q"),
                         [&](failover::result<std::string> r) { got.emplace(std::move(r)); });
  io.run();
  pool.join();
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK(**got == "bounded:q");
  CHECK(got->served_by() == "second");
  CHECK(got->trace().size() == 2);
}

// Counts itself out when the handler that holds it is destroyed.
struct handler_probe {
  std::shared_ptr<int> alive = std::make_shared<int>(0);
};

TEST_CASE("an io_context destroyed with calls pending lets each go: handlers destroyed, not run") {
  handler_probe before_begin, waiting, in_flight;
  std::weak_ptr<int> gone_before_begin = before_begin.alive, gone_waiting = waiting.alive,
                     gone_in_flight = in_flight.alive;
  int handled = 0;
  std::vector<failover::completion<std::string>> held;  // never answered, outlives the io_context
  std::future<failover::result<std::string>> future;
  chain_t never_begun, backing_off, unanswered;  // a chain outlives its calls
  {
    asio::io_context io;
    never_begun.add("m", [](const std::string& p) { return p; });
    // backing_off's first attempt asks for a 30 s wait, which the io never reaches
    backing_off.add("m", [](const std::string&) -> failover::outcome<std::string> {
      auto f = failover::failure::http(429);
      f.retry_after = "30";
      return f;
    });
    unanswered.add(
        "m", [&held](const failover::attempt_context&, const std::string&,
                     failover::completion<std::string> done) { held.push_back(std::move(done)); });
    failover::async_run(never_begun, io, std::string("a"),
                        [&handled](failover::result<std::string>) { ++handled; });
    failover::async_run(
        backing_off, io, std::string("b"),
        [&handled, p = std::move(waiting)](failover::result<std::string>) { ++handled; });
    failover::async_run(
        unanswered, io, std::string("c"),
        [&handled, p = std::move(in_flight)](failover::result<std::string>) { ++handled; });
    future = failover::async_run(unanswered, io, std::string("d"), asio::use_future);
    io.poll();  // "a" ends; "b" waits on its timer; "c" and "d" have an attempt out
    REQUIRE(held.size() == 2);
    CHECK(handled == 1);
    // Started after the io's last poll: it never begins.
    failover::async_run(
        never_begun, io, std::string("e"),
        [&handled, p = std::move(before_begin)](failover::result<std::string>) { ++handled; });
    CHECK(!gone_waiting.expired());
    CHECK(!gone_in_flight.expired());
  }
  CHECK(handled == 1);  // no pending call's handler ran
  CHECK(gone_waiting.expired());
  CHECK(gone_in_flight.expired());
  CHECK(gone_before_begin.expired());
  REQUIRE(future.wait_for(0s) == std::future_status::ready);
  CHECK_THROWS_AS(future.get(), std::future_error);  // a broken promise, not a hang
  // A completion that outlives its call still works, and answers nobody.
  for (auto& done : held) done(std::string("late"));
  CHECK(handled == 1);
}

TEST_CASE("over curl multi: a 503 is retried after its wait, then a fallback serves") {
  loopback_server primary;
  primary.script({loopback_reply{503, 0ms, "busy", {{"retry-after", "0"}}},
                  loopback_reply{503, 0ms, "busy", {}}, loopback_reply{503, 0ms, "busy", {}}});
  loopback_server backup(loopback_reply{200, 0ms, "backup answer", {}});
  asio::io_context io;
  failover::http::curl_multi multi(io);
  chain_t chain;
  chain.add("primary", over_http(multi, primary.url()), failover::role::standard, quick_retries());
  chain.add("backup", over_http(multi, backup.url()));
  std::optional<failover::result<std::string>> got;
  failover::async_run(chain, io, std::string("{}"),
                      [&](failover::result<std::string> r) { got.emplace(std::move(r)); });
  io.run();
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK(**got == "backup answer");
  CHECK(got->served_by() == "backup");
  REQUIRE(got->trace().size() == 4);
  for (std::size_t i = 0; i < 3; ++i) CHECK(got->trace().attempts()[i].error().status == 503);
  CHECK(got->trace().attempts()[0].wait > 0ms);  // a real wait on the call's steady_timer
  CHECK(primary.answered() == 3);
}

TEST_CASE("terminal cancellation through the slot aborts the transfer in flight") {
  loopback_server slow(loopback_reply{200, 5000ms, "too late", {}});
  asio::io_context io;
  failover::http::curl_multi multi(io);
  chain_t chain;
  chain.add("slow", over_http(multi, slow.url()));
  asio::cancellation_signal signal;
  std::optional<failover::result<std::string>> got;
  failover::async_run(
      chain, io, std::string("{}"),
      asio::bind_cancellation_slot(
          signal.slot(), [&](failover::result<std::string> r) { got.emplace(std::move(r)); }));
  asio::steady_timer later(io, 100ms);
  later.async_wait([&](const std::error_code&) {
    CHECK(slow.held() == 1);  // the request is at the server, held
    signal.emit(asio::cancellation_type::terminal);
  });
  const auto started = std::chrono::steady_clock::now();
  io.run();
  REQUIRE(got);
  REQUIRE_FALSE(got->has_value());
  CHECK(got->error().kind == error_kind::cancelled);
  CHECK(got->stop() == failover::stop_reason::cancelled);
  CHECK(std::chrono::steady_clock::now() - started < 4s);  // not the server's 5 s hold
  CHECK(slow.answered() == 0);
  CHECK(multi.in_flight() == 0);  // the transfer was aborted, not left running
}

TEST_CASE("the call's token cancels it in the middle of a transfer") {
  loopback_server slow(loopback_reply{200, 5000ms, "too late", {}});
  asio::io_context io;
  failover::http::curl_multi multi(io);
  chain_t chain;
  chain.add("slow", over_http(multi, slow.url()));
  failover::cancel_source source;
  failover::call_options call;
  call.token = source.token();
  std::optional<failover::result<std::string>> got;
  failover::async_run_with(chain, io.get_executor(), call, std::string("{}"),
                           [&](failover::result<std::string> r) { got.emplace(std::move(r)); });
  asio::steady_timer later(io, 100ms);
  later.async_wait([&](const std::error_code&) { source.cancel(); });
  io.run();
  REQUIRE(got);
  CHECK(got->error().kind == error_kind::cancelled);
  CHECK(slow.answered() == 0);
  CHECK(multi.in_flight() == 0);
}

namespace {
// A value whose second move on the thread that answers waits until the call is over: the
// answer is then being handed over from that thread while the loop ends the call.
struct handoff {
  std::mutex mutex;
  std::condition_variable changed;
  bool answering = false;  // the worker is inside the completion
  bool call_over = false;  // the call's handler has run, and the loop has moved on
};
thread_local int moves_while_answering = -1;  // -1: not the answering thread
struct held_value {
  std::string text;
  std::shared_ptr<handoff> h;
  held_value() = default;
  held_value(std::string t, std::shared_ptr<handoff> p) : text(std::move(t)), h(std::move(p)) {}
  held_value(const held_value&) = default;
  held_value& operator=(const held_value&) = default;
  held_value& operator=(held_value&&) = default;
  held_value(held_value&& o) noexcept : text(std::move(o.text)), h(std::move(o.h)) {
    if (h && moves_while_answering >= 0 && ++moves_while_answering == 2) {
      std::unique_lock<std::mutex> lock(h->mutex);
      h->answering = true;
      h->changed.notify_all();
      h->changed.wait_for(lock, 10s, [&] { return h->call_over; });
    }
  }
};
}  // namespace

TEST_CASE("an answer handed over from another thread as the call is cancelled is dropped safely") {
  asio::io_context io;
  asio::cancellation_signal signal;
  auto h = std::make_shared<handoff>();
  failover::fallback_chain<held_value(const std::string&)> chain;
  std::thread worker;
  chain.add("threaded", [&worker, h](const failover::attempt_context&, const std::string& p,
                                     failover::completion<held_value> done) {
    worker = std::thread([h, p, done = std::move(done)]() mutable {
      failover::outcome<held_value> answer{held_value(p, h)};
      moves_while_answering = 0;
      done(std::move(answer));
    });
  });
  int handled = 0;
  std::optional<failover::result<held_value>> got;
  failover::async_run(
      chain, io, std::string("q"),
      asio::bind_cancellation_slot(signal.slot(), [&](failover::result<held_value> r) {
        ++handled;
        got.emplace(std::move(r));
        asio::post(io, [h] {  // after the driver has finished with the call
          std::lock_guard<std::mutex> lock(h->mutex);
          h->call_over = true;
          h->changed.notify_all();
        });
      }));
  // Once the worker is inside the completion, cancel the call on the loop's thread.
  asio::steady_timer poll(io);
  std::function<void(const std::error_code&)> watch = [&](const std::error_code&) {
    bool answering = false;
    {
      std::lock_guard<std::mutex> lock(h->mutex);
      answering = h->answering;
    }
    if (answering) return signal.emit(asio::cancellation_type::terminal);
    poll.expires_after(1ms);
    poll.async_wait(watch);
  };
  poll.expires_after(1ms);
  poll.async_wait(watch);
  io.run();
  worker.join();
  io.restart();
  io.run();  // what the worker posted: ignored, the call is over
  CHECK(handled == 1);
  REQUIRE(got);
  CHECK(got->error().kind == error_kind::cancelled);
}

#if defined(ASIO_HAS_CO_AWAIT)
TEST_CASE("an entry written as a coroutine awaits curl multi, and one that throws falls back") {
  loopback_server server(loopback_reply{200, 10ms, "from a coroutine", {}});
  asio::io_context io;
  failover::http::curl_multi multi(io);
  chain_t chain;
  const std::string url = server.url() + "/v1/chat/completions";
  chain.add("throws", failover::make_awaitable_entry<std::string(const std::string&)>(
                          io.get_executor(),
                          [](const failover::attempt_context&,
                             std::string) -> asio::awaitable<failover::outcome<std::string>> {
                            throw std::runtime_error("coroutine failed");
                            co_return std::string("never");
                          }));
  chain.add(
      "coroutine",
      failover::make_awaitable_entry<std::string(const std::string&)>(
          io.get_executor(),
          [&multi, url](const failover::attempt_context& ctx,
                        std::string prompt) -> asio::awaitable<failover::outcome<std::string>> {
            failover::outcome<failover::http::response> r = co_await multi.async_post(
                ctx, url, std::move(prompt), {}, {}, {}, "application/json", asio::use_awaitable);
            if (!r.has_value()) co_return r.failure();
            co_return std::move(r.value().body);
          }));
  std::optional<failover::result<std::string>> got;
  failover::async_run(chain, io, std::string("{}"),
                      [&](failover::result<std::string> r) { got.emplace(std::move(r)); });
  io.run();
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK(**got == "from a coroutine");
  REQUIRE(got->trace().size() == 2);
  CHECK(got->trace().attempts()[0].error().exception != nullptr);  // classified from the throw
}

TEST_CASE("a coroutine awaits a call with use_awaitable") {
  loopback_server server(loopback_reply{200, 10ms, "awaited", {}});
  asio::io_context io;
  failover::http::curl_multi multi(io);
  chain_t chain;
  chain.add("m", over_http(multi, server.url()));
  std::optional<failover::result<std::string>> got;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        got.emplace(co_await failover::async_run(chain, io.get_executor(), std::string("{}"),
                                                 asio::use_awaitable));
      },
      asio::detached);
  io.run();
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK(**got == "awaited");
}
#endif

namespace {

// An Asio clock on the scenario's fake time line, and wait traits that never block: the test
// advances the fake time itself whenever the io_context has nothing ready.
struct fake_asio_clock {
  using duration = failover::duration;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = failover::time_point;
  [[maybe_unused]] static constexpr bool is_steady = true;
  static failover::testing::fake_clock& line() {
    static failover::testing::fake_clock clock;
    return clock;
  }
  static time_point now() noexcept { return line().now(); }
};
struct no_wait_traits {
  static fake_asio_clock::duration to_wait_duration(const fake_asio_clock::duration&) {
    return fake_asio_clock::duration::zero();
  }
  static fake_asio_clock::duration to_wait_duration(const fake_asio_clock::time_point&) {
    return fake_asio_clock::duration::zero();
  }
};
using fake_timer = asio::basic_waitable_timer<fake_asio_clock, no_wait_traits>;

failover::result<std::string> via_asio(failover_test::scenario& s, const std::string& prompt) {
  fake_asio_clock::line() = s.clock;  // the timers read the scenario's time line
  asio::io_context io;
  std::optional<failover::result<std::string>> out;
  int handled = 0;
  failover::async_run_with<fake_timer>(s.chain, io.get_executor(), s.options, prompt,
                                       [&](failover::result<std::string> r) {
                                         ++handled;
                                         out.emplace(std::move(r));
                                       });
  for (int idle = 0; !out && idle < 10'000'000; ++idle) {
    if (io.poll() == 0) s.clock.advance(std::chrono::milliseconds(1));
    if (io.stopped()) io.restart();
  }
  CHECK(handled == 1);
  REQUIRE(out);
  return std::move(*out);
}

}  // namespace

TEST_CASE("drivers: the Asio driver ends every call as run() does, on fake time") {
  for (const auto& [name, builder] : failover_test::driver_scenarios()) {
    SECTION(name) {
      auto blocking = failover_test::build(builder);
      auto asio_run = failover_test::build(builder);
      failover_test::check_same(blocking->chain.run_with(blocking->options, "q"),
                                via_asio(*asio_run, "q"));
    }
  }
}
