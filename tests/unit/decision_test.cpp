// The pure decision core: decide_retry's stop rules and waits, option validation, and the chain
// walk (next_entry / first_entry / accepts).
#include "catch.hpp"

#include <array>
#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <failover/core/decision.hpp>

namespace {

using namespace std::chrono_literals;
using failover::chain_options;
using failover::duration;
using failover::error;
using failover::error_kind;
using failover::retry_counters;
using failover::retry_decision;
using failover::retry_options;
using failover::role;
using failover::stop_reason;
using failover::wait_reason;

std::string name(stop_reason r) {
  return std::string(failover::to_string(r));
}
std::string name(wait_reason r) {
  return std::string(failover::to_string(r));
}
std::string name(error_kind k) {
  return std::string(failover::to_string(k));
}

error err(error_kind kind, bool transient, std::optional<duration> retry_after = std::nullopt) {
  error e;
  e.kind = kind;
  e.transient = transient;
  e.retry_after = retry_after;
  return e;
}

retry_counters counters(int attempts, int read_timeouts, int total_attempts) {
  retry_counters c;
  c.attempts = attempts;
  c.read_timeouts = read_timeouts;
  c.total_attempts = total_attempts;
  return c;
}

template <class Options>
std::string what_of(const Options& o) {
  try {
    o.validate();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("decide_retry: each stop rule, in order", "[decision]") {
  const retry_options o;  // 5 attempts, 1 read-timeout retry, 60s max server wait
  const int total_cap = 10;
  const duration backoff = 1s;
  struct row {
    const char* what;
    error e;
    retry_counters c;
    stop_reason stop;
  };
  const row rows[] = {
      // cancelled and deadline kinds stop first, whatever else holds.
      {"cancelled", err(error_kind::cancelled, false), counters(1, 0, 1), stop_reason::cancelled},
      {"cancelled, even marked transient and exhausted", err(error_kind::cancelled, true),
       counters(9, 0, 99), stop_reason::cancelled},
      {"deadline_exceeded", err(error_kind::deadline_exceeded, false), counters(1, 0, 1),
       stop_reason::deadline},
      {"deadline_exceeded marked transient", err(error_kind::deadline_exceeded, true),
       counters(9, 0, 99), stop_reason::deadline},
      // permanent before any counter.
      {"permanent", err(error_kind::bad_request, false), counters(1, 0, 1),
       stop_reason::permanent_error},
      {"permanent with counters exhausted", err(error_kind::server_error, false),
       counters(9, 0, 99), stop_reason::permanent_error},
      {"permanent read timeout", err(error_kind::read_timeout, false), counters(1, 5, 1),
       stop_reason::permanent_error},
      // total attempts before per-model attempts.
      {"total attempts reached", err(error_kind::server_error, true), counters(1, 0, 10),
       stop_reason::total_attempts_exhausted},
      {"total attempts beyond", err(error_kind::server_error, true), counters(1, 0, 11),
       stop_reason::total_attempts_exhausted},
      {"total and per-model both reached", err(error_kind::server_error, true), counters(5, 0, 10),
       stop_reason::total_attempts_exhausted},
      // per-model attempts before the read-timeout bound and the server wait.
      {"per-model attempts reached", err(error_kind::rate_limited, true), counters(5, 0, 5),
       stop_reason::attempts_exhausted},
      {"per-model attempts before read timeouts", err(error_kind::read_timeout, true),
       counters(5, 5, 5), stop_reason::attempts_exhausted},
      {"per-model attempts before server wait", err(error_kind::rate_limited, true, 1h),
       counters(5, 0, 5), stop_reason::attempts_exhausted},
      // read timeouts: the first retries, the second stops (default bound 1).
      {"second read timeout", err(error_kind::read_timeout, true), counters(2, 2, 2),
       stop_reason::read_timeouts_exhausted},
      {"read timeouts before server wait", err(error_kind::read_timeout, true, 1h),
       counters(2, 2, 2), stop_reason::read_timeouts_exhausted},
      // server wait too long.
      {"server wait above max", err(error_kind::rate_limited, true, 61s), counters(1, 0, 1),
       stop_reason::server_wait_too_long},
      {"server wait just above max", err(error_kind::overloaded, true, 60s + 1ns),
       counters(1, 0, 1), stop_reason::server_wait_too_long},
  };
  for (const row& r : rows) {
    INFO(r.what << ": kind " << name(r.e.kind) << ", expected stop " << name(r.stop));
    const retry_decision d = failover::decide_retry(o, total_cap, r.e, r.c, backoff, std::nullopt);
    CHECK_FALSE(d.retry);
    CHECK(name(d.stop) == name(r.stop));
    CHECK(d.wait == duration::zero());
    CHECK(name(d.reason) == name(wait_reason::none));
  }
}

TEST_CASE("decide_retry: read timeouts are bounded separately", "[decision]") {
  const error rt = err(error_kind::read_timeout, true);
  SECTION("default: the first read timeout retries, the second stops") {
    const retry_options o;
    REQUIRE(o.max_read_timeout_retries == 1);
    const retry_decision first = failover::decide_retry(o, 10, rt, counters(1, 1, 1), 1s, {});
    CHECK(first.retry);
    CHECK(name(first.stop) == name(stop_reason::none));
    const retry_decision second = failover::decide_retry(o, 10, rt, counters(2, 2, 2), 1s, {});
    CHECK_FALSE(second.retry);
    CHECK(name(second.stop) == name(stop_reason::read_timeouts_exhausted));
  }
  SECTION("zero read-timeout retries: the first read timeout stops") {
    retry_options o;
    o.max_read_timeout_retries = 0;
    const retry_decision d = failover::decide_retry(o, 10, rt, counters(1, 1, 1), 1s, {});
    CHECK_FALSE(d.retry);
    CHECK(name(d.stop) == name(stop_reason::read_timeouts_exhausted));
    // Other kinds are not affected by the read-timeout bound.
    const retry_decision other = failover::decide_retry(
        o, 10, err(error_kind::connect_timeout, true), counters(1, 1, 1), 1s, {});
    CHECK(other.retry);
  }
  SECTION("three read-timeout retries allowed") {
    retry_options o;
    o.max_read_timeout_retries = 3;
    for (int n = 1; n <= 3; ++n) {
      CAPTURE(n);
      CHECK(failover::decide_retry(o, 10, rt, counters(n, n, n), 1s, {}).retry);
    }
    const retry_decision d = failover::decide_retry(o, 10, rt, counters(4, 4, 4), 1s, {});
    CHECK_FALSE(d.retry);
    CHECK(name(d.stop) == name(stop_reason::read_timeouts_exhausted));
  }
}

TEST_CASE("decide_retry: counters just below the caps still retry", "[decision]") {
  const retry_options o;
  const error e = err(error_kind::server_error, true);
  const retry_decision last_model_retry =
      failover::decide_retry(o, 10, e, counters(4, 0, 4), 1s, {});
  CHECK(last_model_retry.retry);
  const retry_decision last_total_retry =
      failover::decide_retry(o, 10, e, counters(1, 0, 9), 1s, {});
  CHECK(last_total_retry.retry);
  // A server wait equal to max_server_wait is still honoured.
  const retry_decision at_max = failover::decide_retry(
      o, 10, err(error_kind::rate_limited, true, 60s), counters(1, 0, 1), 250ms, {});
  CHECK(at_max.retry);
  CHECK(at_max.wait == duration(60s) + duration(250ms));
}

TEST_CASE("decide_retry: the wait", "[decision]") {
  const retry_options o;
  const retry_counters c = counters(1, 0, 1);
  SECTION("no server wait: the backoff") {
    const retry_decision d =
        failover::decide_retry(o, 10, err(error_kind::server_error, true), c, 1500ms, {});
    CHECK(d.retry);
    CHECK(d.wait == duration(1500ms));
    CHECK(name(d.reason) == name(wait_reason::backoff));
    CHECK(name(d.stop) == name(stop_reason::none));
  }
  SECTION("a zero backoff is a zero wait, still a backoff") {
    const retry_decision d =
        failover::decide_retry(o, 10, err(error_kind::server_error, true), c, 0s, {});
    CHECK(d.retry);
    CHECK(d.wait == duration::zero());
    CHECK(name(d.reason) == name(wait_reason::backoff));
  }
  SECTION("server wait: server + backoff, never less than the server's value") {
    const retry_decision d =
        failover::decide_retry(o, 10, err(error_kind::rate_limited, true, 7s), c, 300ms, {});
    CHECK(d.retry);
    CHECK(d.wait == duration(7300ms));
    CHECK(name(d.reason) == name(wait_reason::server));
    for (duration backoff : {duration(0s), duration(1ns), duration(-5s), duration(30s)}) {
      CAPTURE(backoff.count());
      const retry_decision s =
          failover::decide_retry(o, 10, err(error_kind::overloaded, true, 7s), c, backoff, {});
      CHECK(s.retry);
      CHECK(s.wait >= duration(7s));
      CHECK(name(s.reason) == name(wait_reason::server));
    }
  }
  SECTION("a server wait of zero is still the server's word") {
    const retry_decision d =
        failover::decide_retry(o, 10, err(error_kind::rate_limited, true, 0s), c, 200ms, {});
    CHECK(d.retry);
    CHECK(d.wait == duration(200ms));
    CHECK(name(d.reason) == name(wait_reason::server));
  }
  SECTION("a negative backoff counts as zero") {
    const retry_decision d =
        failover::decide_retry(o, 10, err(error_kind::server_error, true), c, -3s, {});
    CHECK(d.retry);
    CHECK(d.wait == duration::zero());
    const retry_decision s =
        failover::decide_retry(o, 10, err(error_kind::rate_limited, true, 2s), c, -3s, {});
    CHECK(s.retry);
    CHECK(s.wait == duration(2s));
    const retry_decision m = failover::decide_retry(o, 10, err(error_kind::rate_limited, true, 2s),
                                                    c, duration::min(), {});
    CHECK(m.wait == duration(2s));
  }
  SECTION("max_server_wait can be raised or set to zero") {
    retry_options big;
    big.max_server_wait = 10min;
    CHECK(failover::decide_retry(big, 10, err(error_kind::rate_limited, true, 5min), c, 0s, {})
              .retry);
    retry_options none;
    none.max_server_wait = duration::zero();
    const retry_decision d =
        failover::decide_retry(none, 10, err(error_kind::rate_limited, true, 1ms), c, 0s, {});
    CHECK_FALSE(d.retry);
    CHECK(name(d.stop) == name(stop_reason::server_wait_too_long));
    // No server wait at all is unaffected.
    CHECK(failover::decide_retry(none, 10, err(error_kind::rate_limited, true), c, 1s, {}).retry);
  }
}

TEST_CASE("decide_retry: the deadline", "[decision]") {
  const retry_options o;
  const retry_counters c = counters(1, 0, 1);
  const error plain = err(error_kind::server_error, true);
  const error server = err(error_kind::rate_limited, true, 5s);
  SECTION("a wait shorter than the time left retries") {
    const retry_decision d = failover::decide_retry(o, 10, plain, c, 2s, duration(3s));
    CHECK(d.retry);
    CHECK(d.wait == duration(2s));
    const retry_decision s = failover::decide_retry(o, 10, server, c, 1s, duration(6s) + 1ns);
    CHECK(s.retry);
    CHECK(s.wait == duration(6s));
  }
  SECTION("a wait that reaches or crosses the deadline ends this model's retries, not the call") {
    for (duration remaining : {duration(2s), duration(1s), duration(0s), duration(-1s)}) {
      CAPTURE(remaining.count());
      const retry_decision d = failover::decide_retry(o, 10, plain, c, 2s, remaining);
      CHECK_FALSE(d.retry);
      CHECK(name(d.stop) == name(stop_reason::wait_past_deadline));
      CHECK(d.wait == duration::zero());
      CHECK(name(d.reason) == name(wait_reason::none));
    }
    // The server's wait plus backoff counts: 5s + 1s >= 6s.
    const retry_decision s = failover::decide_retry(o, 10, server, c, 1s, duration(6s));
    CHECK_FALSE(s.retry);
    CHECK(name(s.stop) == name(stop_reason::wait_past_deadline));
    // ... and next_entry walks on from it: only the call's own deadline ends the call.
    const failover::role roles[] = {failover::role::standard, failover::role::standard};
    const failover::chain_options co;
    const auto w = failover::next_entry(roles, 0, server.kind, s.stop, 1, co);
    REQUIRE(w.next.has_value());
    CHECK(*w.next == 1);
  }
  SECTION("no deadline: any wait is fine") {
    const retry_decision d = failover::decide_retry(o, 10, server, c, 50s, std::nullopt);
    CHECK(d.retry);
    CHECK(d.wait == duration(55s));
  }
  SECTION("other stop rules come before the deadline") {
    const retry_decision d =
        failover::decide_retry(o, 10, err(error_kind::bad_request, false), c, 2s, duration(1s));
    CHECK(name(d.stop) == name(stop_reason::permanent_error));
    const retry_decision w =
        failover::decide_retry(o, 10, err(error_kind::rate_limited, true, 2h), c, 2s, duration(1s));
    CHECK(name(w.stop) == name(stop_reason::server_wait_too_long));
  }
}

TEST_CASE("retry_options / chain_options validate and name the parameter", "[decision]") {
  SECTION("retry_options") {
    struct row {
      const char* what;
      retry_options o;
      const char* parameter;
    };
    retry_options zero_attempts;
    zero_attempts.max_attempts = 0;
    retry_options negative_attempts;
    negative_attempts.max_attempts = -3;
    retry_options negative_rt;
    negative_rt.max_read_timeout_retries = -1;
    retry_options negative_wait;
    negative_wait.max_server_wait = -1ns;
    const row rows[] = {
        {"max_attempts 0", zero_attempts, "max_attempts"},
        {"max_attempts negative", negative_attempts, "max_attempts"},
        {"negative read-timeout retries", negative_rt, "max_read_timeout_retries"},
        {"negative max_server_wait", negative_wait, "max_server_wait"},
    };
    for (const row& r : rows) {
      INFO(r.what);
      REQUIRE_THROWS_AS(r.o.validate(), std::invalid_argument);
      const std::string message = what_of(r.o);
      CAPTURE(message);
      CHECK(message.find(r.parameter) != std::string::npos);
    }
    retry_options edge;
    edge.max_attempts = 1;
    edge.max_read_timeout_retries = 0;
    edge.max_server_wait = duration::zero();
    CHECK(what_of(edge).empty());
    CHECK(what_of(retry_options{}).empty());
  }
  SECTION("chain_options") {
    struct row {
      const char* what;
      chain_options o;
      const char* parameter;
    };
    chain_options zero_hops;
    zero_hops.max_hops = 0;
    chain_options zero_total;
    zero_total.max_total_attempts = 0;
    chain_options zero_deadline;
    zero_deadline.deadline = duration::zero();
    chain_options negative_deadline;
    negative_deadline.deadline = -5s;
    const row rows[] = {
        {"max_hops 0", zero_hops, "max_hops"},
        {"max_total_attempts 0", zero_total, "max_total_attempts"},
        {"deadline 0", zero_deadline, "deadline"},
        {"deadline negative", negative_deadline, "deadline"},
    };
    for (const row& r : rows) {
      INFO(r.what);
      REQUIRE_THROWS_AS(r.o.validate(), std::invalid_argument);
      const std::string message = what_of(r.o);
      CAPTURE(message);
      CHECK(message.find(r.parameter) != std::string::npos);
    }
    chain_options edge;
    edge.max_hops = 1;
    edge.max_total_attempts = 1;
    edge.deadline = 1ns;
    CHECK(what_of(edge).empty());
    CHECK(what_of(chain_options{}).empty());
  }
}

TEST_CASE("accepts: which roles take over after which kinds", "[decision]") {
  const chain_options o;
  chain_options strict;
  strict.context_window_to_standard = false;
  const error_kind ordinary[] = {
      error_kind::rate_limited,     error_kind::server_error,    error_kind::overloaded,
      error_kind::request_timeout,  error_kind::connect_timeout, error_kind::read_timeout,
      error_kind::connection_error, error_kind::bad_request,     error_kind::unauthorized,
      error_kind::forbidden,        error_kind::not_found,       error_kind::invalid_response,
      error_kind::unknown,
  };
  for (error_kind k : ordinary) {
    INFO("kind " << name(k));
    CHECK(failover::accepts(role::standard, k, o));
    CHECK_FALSE(failover::accepts(role::context_window, k, o));
    CHECK_FALSE(failover::accepts(role::content_policy, k, o));
  }
  CHECK(failover::accepts(role::content_policy, error_kind::content_policy, o));
  CHECK_FALSE(failover::accepts(role::standard, error_kind::content_policy, o));
  CHECK_FALSE(failover::accepts(role::context_window, error_kind::content_policy, o));
  CHECK(failover::accepts(role::context_window, error_kind::context_window, o));
  CHECK(failover::accepts(role::standard, error_kind::context_window, o));
  CHECK_FALSE(failover::accepts(role::content_policy, error_kind::context_window, o));
  CHECK(failover::accepts(role::context_window, error_kind::context_window, strict));
  CHECK_FALSE(failover::accepts(role::standard, error_kind::context_window, strict));
}

TEST_CASE("next_entry: standard failures go to the next standard entry", "[decision]") {
  const chain_options o;
  const std::vector<role> roles = {role::standard, role::context_window, role::content_policy,
                                   role::standard, role::standard};
  const error_kind kinds[] = {error_kind::server_error, error_kind::rate_limited,
                              error_kind::read_timeout, error_kind::unauthorized,
                              error_kind::forbidden,    error_kind::not_found,
                              error_kind::unknown,      error_kind::invalid_response};
  for (error_kind k : kinds) {
    INFO("kind " << name(k));
    const auto w =
        failover::next_entry(roles, 0, err(k, false), stop_reason::permanent_error, 1, o);
    REQUIRE(w.next.has_value());
    CHECK(*w.next == 3);  // skips the context-window and content-policy entries
    CHECK(name(w.stop) == name(stop_reason::none));
    const auto w2 =
        failover::next_entry(roles, 3, err(k, true), stop_reason::attempts_exhausted, 2, o);
    REQUIRE(w2.next.has_value());
    CHECK(*w2.next == 4);
    // The last entry has nowhere to go.
    const auto w3 =
        failover::next_entry(roles, 4, err(k, true), stop_reason::attempts_exhausted, 3, o);
    CHECK_FALSE(w3.next.has_value());
    CHECK(name(w3.stop) == name(stop_reason::no_fallback));
  }
  SECTION("only special entries left: no fallback") {
    const std::vector<role> special = {role::standard, role::context_window, role::content_policy};
    const auto w = failover::next_entry(special, 0, err(error_kind::server_error, true),
                                        stop_reason::attempts_exhausted, 1, o);
    CHECK_FALSE(w.next.has_value());
    CHECK(name(w.stop) == name(stop_reason::no_fallback));
  }
}

TEST_CASE("next_entry: content-policy refusals go only to a content-policy entry", "[decision]") {
  const chain_options o;
  const error refused = err(error_kind::content_policy, false);
  SECTION("a later content-policy entry, skipping standard and context-window ones") {
    const std::vector<role> roles = {role::standard, role::standard, role::context_window,
                                     role::content_policy};
    const auto w = failover::next_entry(roles, 0, refused, stop_reason::permanent_error, 1, o);
    REQUIRE(w.next.has_value());
    CHECK(*w.next == 3);
  }
  SECTION("no content-policy entry: stop, never a standard one") {
    const std::vector<role> roles = {role::standard, role::standard, role::context_window};
    const auto w = failover::next_entry(roles, 0, refused, stop_reason::permanent_error, 1, o);
    CHECK_FALSE(w.next.has_value());
    CHECK(name(w.stop) == name(stop_reason::no_fallback));
  }
  SECTION("a content-policy entry before the current one does not count") {
    const std::vector<role> roles = {role::content_policy, role::standard, role::standard};
    const auto w = failover::next_entry(roles, 1, refused, stop_reason::permanent_error, 1, o);
    CHECK_FALSE(w.next.has_value());
    CHECK(name(w.stop) == name(stop_reason::no_fallback));
  }
  SECTION("a failure of the content-policy entry itself goes to the next standard entry") {
    const std::vector<role> roles = {role::standard, role::content_policy, role::standard};
    const auto w = failover::next_entry(roles, 1, err(error_kind::server_error, true),
                                        stop_reason::attempts_exhausted, 2, o);
    REQUIRE(w.next.has_value());
    CHECK(*w.next == 2);
  }
}

TEST_CASE("next_entry: context-window failures prefer a context-window entry", "[decision]") {
  const chain_options o;
  const error too_long = err(error_kind::context_window, false);
  SECTION("a later context-window entry wins over an earlier standard one") {
    const std::vector<role> roles = {role::standard, role::standard, role::content_policy,
                                     role::context_window, role::standard};
    const auto w = failover::next_entry(roles, 0, too_long, stop_reason::permanent_error, 1, o);
    REQUIRE(w.next.has_value());
    CHECK(*w.next == 3);
  }
  SECTION("no context-window entry left: the next standard one") {
    const std::vector<role> roles = {role::context_window, role::standard, role::content_policy,
                                     role::standard};
    const auto w = failover::next_entry(roles, 1, too_long, stop_reason::permanent_error, 1, o);
    REQUIRE(w.next.has_value());
    CHECK(*w.next == 3);  // not 0 (behind), not 2 (content policy)
  }
  SECTION("context_window_to_standard = false: no fallback to standard entries") {
    chain_options strict;
    strict.context_window_to_standard = false;
    const std::vector<role> roles = {role::standard, role::standard, role::standard};
    const auto w =
        failover::next_entry(roles, 0, too_long, stop_reason::permanent_error, 1, strict);
    CHECK_FALSE(w.next.has_value());
    CHECK(name(w.stop) == name(stop_reason::no_fallback));
    // A context-window entry is still used.
    const std::vector<role> with_cw = {role::standard, role::standard, role::context_window};
    const auto w2 =
        failover::next_entry(with_cw, 0, too_long, stop_reason::permanent_error, 1, strict);
    REQUIRE(w2.next.has_value());
    CHECK(*w2.next == 2);
  }
}

TEST_CASE("next_entry: bad requests end the chain unless opted in", "[decision]") {
  const std::vector<role> roles = {role::standard, role::standard};
  const error bad = err(error_kind::bad_request, false);
  const auto stop =
      failover::next_entry(roles, 0, bad, stop_reason::permanent_error, 1, chain_options{});
  CHECK_FALSE(stop.next.has_value());
  CHECK(name(stop.stop) == name(stop_reason::bad_request));

  chain_options opt_in;
  opt_in.fallback_on_bad_request = true;
  const auto go = failover::next_entry(roles, 0, bad, stop_reason::permanent_error, 1, opt_in);
  REQUIRE(go.next.has_value());
  CHECK(*go.next == 1);
  // Opted in but nowhere to go: no fallback, not bad_request.
  const auto end = failover::next_entry(roles, 1, bad, stop_reason::permanent_error, 2, opt_in);
  CHECK_FALSE(end.next.has_value());
  CHECK(name(end.stop) == name(stop_reason::no_fallback));
}

TEST_CASE("next_entry: cancelled, deadline and total-attempts stops end the walk", "[decision]") {
  const chain_options o;
  const std::vector<role> roles = {role::standard, role::standard, role::standard};
  const stop_reason final_reasons[] = {stop_reason::cancelled, stop_reason::deadline,
                                       stop_reason::total_attempts_exhausted};
  for (stop_reason why : final_reasons) {
    INFO("why " << name(why));
    const auto w = failover::next_entry(roles, 0, err(error_kind::server_error, true), why, 1, o);
    CHECK_FALSE(w.next.has_value());
    CHECK(name(w.stop) == name(why));
  }
  // The model-local reasons do not end the walk.
  const stop_reason local_reasons[] = {
      stop_reason::permanent_error, stop_reason::attempts_exhausted,
      stop_reason::read_timeouts_exhausted, stop_reason::server_wait_too_long};
  for (stop_reason why : local_reasons) {
    INFO("why " << name(why));
    const auto w = failover::next_entry(roles, 0, err(error_kind::server_error, true), why, 1, o);
    REQUIRE(w.next.has_value());
    CHECK(*w.next == 1);
  }
}

TEST_CASE("next_entry: the hop limit", "[decision]") {
  chain_options o;
  o.max_hops = 2;
  const std::vector<role> roles = {role::standard, role::standard, role::standard};
  const error e = err(error_kind::server_error, true);
  const auto first = failover::next_entry(roles, 0, e, stop_reason::attempts_exhausted, 1, o);
  REQUIRE(first.next.has_value());
  CHECK(*first.next == 1);
  const auto at_limit = failover::next_entry(roles, 1, e, stop_reason::attempts_exhausted, 2, o);
  CHECK_FALSE(at_limit.next.has_value());
  CHECK(name(at_limit.stop) == name(stop_reason::hop_limit));
  const auto beyond = failover::next_entry(roles, 0, e, stop_reason::attempts_exhausted, 3, o);
  CHECK_FALSE(beyond.next.has_value());
  CHECK(name(beyond.stop) == name(stop_reason::hop_limit));
  chain_options one;
  one.max_hops = 1;
  const auto single = failover::next_entry(roles, 0, e, stop_reason::attempts_exhausted, 1, one);
  CHECK_FALSE(single.next.has_value());
  CHECK(name(single.stop) == name(stop_reason::hop_limit));
}

TEST_CASE("next_entry: the walk never goes backwards", "[decision]") {
  const chain_options o;
  const std::vector<role> roles = {role::standard, role::context_window, role::content_policy,
                                   role::standard};
  const error kinds[] = {err(error_kind::server_error, true),
                         err(error_kind::context_window, false),
                         err(error_kind::content_policy, false)};
  for (const error& e : kinds) {
    INFO("kind " << name(e.kind));
    for (std::size_t current = 0; current < roles.size(); ++current) {
      CAPTURE(current);
      const auto w = failover::next_entry(roles, current, e, stop_reason::permanent_error, 1, o);
      if (w.next) {
        CHECK(*w.next > current);
        CHECK(*w.next < roles.size());
        CHECK(failover::accepts(roles[*w.next], e.kind, o));
      } else {
        CHECK(name(w.stop) == name(stop_reason::no_fallback));
      }
    }
    // From the last entry there is nowhere to go.
    CHECK_FALSE(failover::next_entry(roles, 3, e, stop_reason::permanent_error, 1, o).next);
  }
  SECTION("a current index past the end is harmless") {
    const auto w = failover::next_entry(roles, 10, err(error_kind::server_error, true),
                                        stop_reason::permanent_error, 1, o);
    CHECK_FALSE(w.next.has_value());
    CHECK(name(w.stop) == name(stop_reason::no_fallback));
  }
}

TEST_CASE("next_entry / first_entry work with std::array, std::vector and C arrays", "[decision]") {
  const chain_options o;
  const std::array<role, 3> arr = {role::context_window, role::standard, role::standard};
  const role c_arr[] = {role::context_window, role::standard, role::standard};
  const std::vector<role> vec(arr.begin(), arr.end());
  const error e = err(error_kind::server_error, true);
  CHECK(failover::first_entry(arr) == std::optional<std::size_t>(1));
  CHECK(failover::first_entry(c_arr) == std::optional<std::size_t>(1));
  CHECK(failover::first_entry(vec) == std::optional<std::size_t>(1));
  CHECK(failover::next_entry(arr, 1, e, stop_reason::attempts_exhausted, 1, o).next ==
        std::optional<std::size_t>(2));
  CHECK(failover::next_entry(c_arr, 1, e, stop_reason::attempts_exhausted, 1, o).next ==
        std::optional<std::size_t>(2));
  CHECK(failover::next_entry(vec, 1, e, stop_reason::attempts_exhausted, 1, o).next ==
        std::optional<std::size_t>(2));
  // Usable in constant expressions: the core is pure.
  constexpr std::array<role, 2> ce = {role::content_policy, role::standard};
  static_assert(failover::first_entry(ce) == std::optional<std::size_t>(1));
  static_assert(
      failover::accepts(role::context_window, error_kind::context_window, chain_options{}));
}

TEST_CASE("first_entry: the first standard entry", "[decision]") {
  CHECK(failover::first_entry(std::vector<role>{role::standard, role::standard}) ==
        std::optional<std::size_t>(0));
  CHECK(failover::first_entry(std::vector<role>{role::content_policy, role::context_window,
                                                role::standard}) == std::optional<std::size_t>(2));
  CHECK(failover::first_entry(std::vector<role>{role::context_window, role::content_policy}) ==
        std::nullopt);
  CHECK(failover::first_entry(std::vector<role>{}) == std::nullopt);
}

TEST_CASE("fallback_exists: no later entry can answer once the attempt cap is reached",
          "[decision]") {
  chain_options o;
  o.max_total_attempts = 3;
  const std::vector<role> roles = {role::standard, role::standard};
  CHECK(failover::fallback_exists(roles, 0, error_kind::server_error, 1, o));
  CHECK(failover::fallback_exists(roles, 0, error_kind::server_error, 1, o, 2));
  CHECK_FALSE(failover::fallback_exists(roles, 0, error_kind::server_error, 1, o, 3));
  CHECK_FALSE(failover::fallback_exists(roles, 1, error_kind::server_error, 2, o));  // none left
}
