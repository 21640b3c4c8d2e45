// Cancellation, the real sleeper's early exits, and the fake clock and sleeper tests rely on.
#include "catch.hpp"

#include <failover/core/clock.hpp>
#include <failover/retrier.hpp>
#include <failover/testing.hpp>

#include <chrono>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {
using failover::duration;
}  // namespace

TEST_CASE("cancel_token: a default token can never be cancelled") {
  failover::cancel_token token;
  CHECK_FALSE(token.can_be_cancelled());
  CHECK_FALSE(token.cancelled());
  failover::cancel_token copy = token;
  CHECK_FALSE(copy.cancelled());
}

TEST_CASE("cancel_source: the source and all its tokens share one state") {
  failover::cancel_source source;
  failover::cancel_token a = source.token();
  failover::cancel_token b = a;
  CHECK(a.can_be_cancelled());
  CHECK_FALSE(source.cancelled());
  CHECK_FALSE(a.cancelled());
  CHECK_FALSE(b.cancelled());
  source.cancel();
  CHECK(source.cancelled());
  CHECK(a.cancelled());
  CHECK(b.cancelled());
  CHECK(source.token().cancelled());
  source.cancel();  // idempotent
  CHECK(a.cancelled());

  // A copied source is the same source.
  failover::cancel_source other;
  failover::cancel_source alias = other;
  alias.cancel();
  CHECK(other.cancelled());
  CHECK(other.token().cancelled());

  // Separate sources are independent.
  failover::cancel_source fresh;
  CHECK_FALSE(fresh.cancelled());
}

TEST_CASE("thread_sleeper: returns at once when already cancelled or with nothing to wait") {
  const failover::thread_sleeper sleeper;
  const auto before = std::chrono::steady_clock::now();

  failover::cancel_source source;
  source.cancel();
  CHECK_FALSE(sleeper.sleep_for(1h, source.token()));  // would hang the test if it slept

  CHECK(sleeper.sleep_for(duration::zero(), failover::cancel_token{}));
  CHECK(sleeper.sleep_for(-5s, failover::cancel_token{}));
  failover::cancel_source live;
  CHECK(sleeper.sleep_for(duration::zero(), live.token()));
  CHECK(sleeper.sleep_for(-1h, live.token()));

  CHECK(std::chrono::steady_clock::now() - before < 10s);
}

TEST_CASE("thread_sleeper: a cancel from another thread ends a long wait") {
  const failover::thread_sleeper sleeper;
  failover::cancel_source source;
  const auto before = std::chrono::steady_clock::now();
  std::thread canceller([&] { source.cancel(); });
  const bool completed = sleeper.sleep_for(1h, source.token());
  canceller.join();
  CHECK_FALSE(completed);
  CHECK(std::chrono::steady_clock::now() - before < 10s);
}

TEST_CASE("fake_clock: copies share one time line") {
  failover::testing::fake_clock clock;
  const auto start = clock.now();
  CHECK(clock.elapsed() == duration::zero());
  failover::testing::fake_clock copy = clock;
  copy.advance(250ms);
  CHECK(clock.elapsed() == 250ms);
  CHECK(clock.now() - start == 250ms);
  clock.advance(1s);
  CHECK(copy.elapsed() == 1250ms);
  CHECK(copy.now() == clock.now());

  failover::testing::fake_clock separate;
  CHECK(separate.elapsed() == duration::zero());
}

TEST_CASE("fake_clock: wall time advances with the monotonic time") {
  failover::testing::fake_clock clock;
  const auto wall0 = clock.wall_now();
  const auto mono0 = clock.now();
  clock.advance(90s);
  CHECK(clock.wall_now() - wall0 == 90s);
  CHECK(clock.now() - mono0 == 90s);

  const failover::wall_time start = std::chrono::system_clock::time_point(1'700'000'000s);
  failover::testing::fake_clock pinned(start);
  CHECK(pinned.wall_now() == start);
  pinned.advance(2500ms);
  CHECK(pinned.wall_now() == start + 2500ms);
}

TEST_CASE("fake_sleeper: records each wait and advances the clock instead of sleeping") {
  failover::testing::fake_clock clock;
  failover::testing::fake_sleeper sleeper(clock);
  const failover::cancel_token none;
  CHECK(sleeper.sleep_for(1h, none));
  CHECK(sleeper.sleep_for(30s, none));
  const std::vector<duration> expected{1h, 30s};
  CHECK(sleeper.sleeps() == expected);
  CHECK(clock.elapsed() == 1h + 30s);
  CHECK(sleeper.clock().elapsed() == clock.elapsed());

  // Copies share the record.
  failover::testing::fake_sleeper copy = sleeper;
  CHECK(copy.sleep_for(1s, none));
  CHECK(sleeper.sleeps().size() == 3);
}

TEST_CASE("fake_sleeper: cancellation before or during a wait") {
  failover::testing::fake_clock clock;
  failover::testing::fake_sleeper sleeper(clock);

  SECTION("already cancelled: nothing recorded, no time passes") {
    failover::cancel_source source;
    source.cancel();
    CHECK_FALSE(sleeper.sleep_for(5s, source.token()));
    CHECK(sleeper.sleeps().empty());
    CHECK(clock.elapsed() == duration::zero());
  }
  SECTION("cancelled by on_sleep: the wait is recorded but returns false") {
    failover::cancel_source source;
    std::vector<duration> seen;
    sleeper.on_sleep([&](duration d) {
      seen.push_back(d);
      source.cancel();
    });
    CHECK_FALSE(sleeper.sleep_for(5s, source.token()));
    REQUIRE(seen.size() == 1);
    CHECK(seen[0] == 5s);
    CHECK(sleeper.sleeps().size() == 1);
    CHECK(clock.elapsed() == duration::zero());
  }
  SECTION("on_sleep without cancelling: the wait completes") {
    int hooks = 0;
    sleeper.on_sleep([&](duration) { ++hooks; });
    CHECK(sleeper.sleep_for(2s, failover::cancel_token{}));
    CHECK(hooks == 1);
    CHECK(clock.elapsed() == 2s);
  }
}

TEST_CASE("use_fake_time: points a retrier at the shared fake time line") {
  failover::basic_retrier<failover::testing::fake_policies> r("m");
  failover::testing::fake_clock clock;
  auto sleeper = failover::testing::use_fake_time(r, clock);
  clock.advance(3s);
  CHECK(r.clock().elapsed() == 3s);
  CHECK(r.sleeper().sleep_for(1s, failover::cancel_token{}));
  CHECK(clock.elapsed() == 4s);
  CHECK(sleeper.sleeps().size() == 1);  // the returned sleeper shares the record
}

TEST_CASE("fake_clock and fake_sleeper: one moved from still shares the time line") {
  failover::testing::fake_clock clock;
  failover::testing::fake_clock moved_to(std::move(clock));
  moved_to.advance(5ms);
  // NOLINTNEXTLINE(bugprone-use-after-move): what a clock moved from does is the point
  CHECK(clock.elapsed() == 5ms);
  failover::testing::fake_sleeper sleeper(moved_to);
  failover::testing::fake_sleeper sleeper_to(std::move(sleeper));
  // NOLINTNEXTLINE(bugprone-use-after-move)
  CHECK(sleeper.sleep_for(2ms, failover::cancel_token{}));
  CHECK(sleeper_to.sleeps().size() == 1);
  CHECK(moved_to.elapsed() == 7ms);
}

TEST_CASE("cancel_source: one moved from is empty, like std::stop_source") {
  failover::cancel_source source;
  const failover::cancel_token early = source.token();
  failover::cancel_source moved(std::move(source));
  // NOLINTBEGIN(bugprone-use-after-move): what a source moved from does is the point
  CHECK_FALSE(source.cancelled());
  source.cancel();  // nothing to cancel: a no-op
  CHECK_FALSE(source.cancelled());
  CHECK_FALSE(source.token().can_be_cancelled());
  CHECK_FALSE(early.cancelled());  // the state went with the move
  failover::cancel_source assigned;
  assigned = std::move(moved);
  CHECK_FALSE(moved.cancelled());
  CHECK_FALSE(moved.token().can_be_cancelled());
  // NOLINTEND(bugprone-use-after-move)
  assigned.cancel();
  CHECK(early.cancelled());
  CHECK(assigned.cancelled());
}

TEST_CASE("cancel_callback: runs once, at cancel(), and not after it is destroyed") {
  failover::cancel_source source;
  int first = 0;
  int second = 0;
  int gone = 0;
  {
    failover::cancel_callback dropped(source.token(), [&]() noexcept { ++gone; });
  }
  failover::cancel_callback a(source.token(), [&]() noexcept { ++first; });
  failover::cancel_callback b(source.token(), [&]() noexcept { ++second; });
  CHECK(first == 0);
  source.cancel();
  source.cancel();  // a second cancel runs nothing again
  CHECK(first == 1);
  CHECK(second == 1);
  CHECK(gone == 0);
}

TEST_CASE("cancel_callback: a token already cancelled runs the callback at registration") {
  failover::cancel_source source;
  source.cancel();
  int runs = 0;
  failover::cancel_callback c(source.token(), [&]() noexcept { ++runs; });
  CHECK(runs == 1);
}

TEST_CASE("cancel_callback: a token that cannot be cancelled registers nothing") {
  int runs = 0;
  {
    failover::cancel_callback c(failover::cancel_token{}, [&]() noexcept { ++runs; });
  }
  failover::cancel_source moved;
  failover::cancel_source to(std::move(moved));
  failover::cancel_callback c(moved.token(),
                              [&]() noexcept { ++runs; });  // NOLINT(bugprone-use-after-move)
  moved.cancel();                                           // NOLINT(bugprone-use-after-move)
  CHECK(runs == 0);
}
