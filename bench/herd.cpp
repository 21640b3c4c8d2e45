// The thundering herd, in virtual time: the optimistic-concurrency contention model of the 2015
// "Exponential Backoff And Jitter" analysis, with every wait and every retry-or-stop verdict coming
// from failover's own backoff policy and decision core.
//
// One row with a version number. Each client reads the version, then writes with it; a write
// succeeds only if the version still matches, and each client stops after one successful write.
// Every hop takes |N(10 ms, 2 ms)|. After a failed write a client waits one hop plus
// backoff(attempt), attempt counting from 1. Reported per point: the mean makespan (time until the
// last client is done) and the mean number of write calls, over `--trials` trials.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <failover/core/backoff.hpp>
#include <failover/core/classifier.hpp>
#include <failover/core/decision.hpp>

#include "sim_common.hpp"

namespace {

using failover::duration;
using namespace failover_bench;
using ms = std::chrono::milliseconds;

struct strategy {
  std::string name;
  failover::backoff_options backoff;
  candidate formula = candidate::library;
  failover::retry_options retry;
  double factor = 3.0;
  int attempt_shift = 0;  // 1: the original simulator's indexing (first wait 2 * base)
};

failover::backoff_options herd_options(failover::jitter j, double multiplier = 2.0) {
  failover::backoff_options o;
  o.base = ms(5);
  o.cap = ms(2000);
  o.multiplier = multiplier;
  o.jitter = j;
  return o;
}

failover::retry_options until_success() {
  failover::retry_options r;
  r.max_attempts = INT_MAX;
  return r;
}

std::vector<strategy> published_strategies() {
  using failover::jitter;
  std::vector<strategy> s;
  s.push_back({"no backoff", herd_options(jitter::none), candidate::zero, until_success()});
  s.push_back({"exponential", herd_options(jitter::none), candidate::library, until_success()});
  s.push_back({"equal jitter", herd_options(jitter::equal), candidate::library, until_success()});
  s.push_back({"full jitter", herd_options(jitter::full), candidate::library, until_success()});
  s.push_back(
      {"decorrelated", herd_options(jitter::decorrelated), candidate::library, until_success()});
  // The library's default jitter kind at the model's scale (5 ms base, 2 s cap).
  s.push_back({"rising", herd_options(jitter::rising), candidate::library, until_success()});
  // Exactly what a default failover::retrier does: 1 s base, x2, 30 s cap, rising jitter,
  // 5 attempts.
  s.push_back({"library default", failover::backoff_options{}, candidate::library,
               failover::retry_options{}});
  return s;
}

std::vector<strategy> explore_strategies() {
  using failover::jitter;
  std::vector<strategy> s;
  auto add = [&](std::string name, failover::backoff_options o, candidate c, double f = 3.0) {
    s.push_back({std::move(name), o, c, until_success(), f});
  };
  add("full jitter", herd_options(jitter::full), candidate::library);
  add("decorrelated", herd_options(jitter::decorrelated), candidate::library);
  for (double m : {1.5, 1.75, 2.5, 3.0, 4.0}) {
    char name[64];
    std::snprintf(name, sizeof name, "full jitter x%.3g", m);
    add(name, herd_options(jitter::full, m), candidate::library);
  }
  add("full jitter base 20ms", herd_options(jitter::full), candidate::library);
  s.back().backoff.base = ms(20);
  add("U(v/4; v)", herd_options(jitter::full), candidate::floor_quarter);
  for (double f : {2.0, 2.5, 4.0}) {
    char name[64];
    std::snprintf(name, sizeof name, "decorrelated f%.3g", f);
    add(name, herd_options(jitter::decorrelated), candidate::decorr_factor, f);
  }
  add("U(0; 3 prev)", herd_options(jitter::decorrelated), candidate::decorr_full);
  for (double f : {2.0, 3.0}) {
    char name[64];
    std::snprintf(name, sizeof name, "U(0; max(v; %.0f prev))", f);
    add(name, herd_options(jitter::full), candidate::full_or_decorr, f);
    std::snprintf(name, sizeof name, "U(base; max(v; %.0f prev))", f);
    add(name, herd_options(jitter::full), candidate::decorr_env, f);
  }
  for (double f : {1.5, 2.0, 3.0}) {
    char name[64];
    std::snprintf(name, sizeof name, "U(prev; %.2g prev)", f);
    add(name, herd_options(jitter::decorrelated), candidate::decorr_up, f);
  }
  for (double m : {2.0, 3.0, 4.0}) {
    char name[64];
    std::snprintf(name, sizeof name, "U(base; min(v x%.0f; 3 prev))", m);
    add(name, herd_options(jitter::full, m), candidate::decorr_capped, 3.0);
  }
  // First retry full jitter U(0; base), then windows that never shrink.
  add_hybrid_candidates(add, herd_options(jitter::full));
  add("rising (library)", herd_options(jitter::rising), candidate::library);
  add("tiled x2", herd_options(jitter::full), candidate::tiled);
  add("tiled x3", herd_options(jitter::full, 3.0), candidate::tiled);
  return s;
}

struct trial_result {
  double makespan_ms = 0;
  int calls = 0;
  int gave_up = 0;
};

enum kind : int { read_at_server, read_reply, write_at_server, write_reply };

trial_result run_trial(const strategy& st, int n, std::uint64_t seed,
                       const failover::error& conflict) {
  network net(10.0, 2.0, seed);
  struct client {
    sim_backoff prototype;
    retry_state<sim_backoff> state;
    std::uint64_t seen = 0;
    bool ok = false;
  };
  std::vector<client> clients;
  clients.reserve(static_cast<std::size_t>(n));  // no reallocation: prototypes are never copied
  for (int i = 0; i < n; ++i) {
    const std::uint64_t s = trial_seed(seed, 0xc11e47, static_cast<std::uint64_t>(i));
    clients.push_back(client{sim_backoff(st.backoff, st.formula, st.factor, st.attempt_shift, s),
                             {st.retry, nullptr},
                             0,
                             false});
  }
  for (auto& c : clients) c.state = retry_state<sim_backoff>(st.retry, &c.prototype);

  trial_result r;
  event_queue q;
  std::uint64_t version = 0;
  for (int i = 0; i < n; ++i) q.push(net.hop(), i, read_at_server);
  duration now{};
  while (!q.empty()) {
    const event e = q.pop();
    now = e.at;
    client& c = clients[static_cast<std::size_t>(e.client)];
    switch (e.kind) {
      case read_at_server:
        c.seen = version;
        q.push(now + net.hop(), e.client, read_reply);
        break;
      case read_reply:
        q.push(now + net.hop(), e.client, write_at_server);
        break;
      case write_at_server:
        ++r.calls;
        c.ok = c.seen == version;
        if (c.ok) ++version;
        q.push(now + net.hop(), e.client, write_reply);
        break;
      case write_reply: {
        if (c.ok) break;
        const failover::retry_decision d = c.state.after_failure(conflict);
        if (d.retry)
          q.push(now + net.hop() + d.wait, e.client, read_at_server);
        else
          ++r.gave_up;
        break;
      }
      default:
        break;
    }
  }
  r.makespan_ms = to_ms(now);
  return r;
}

int run(int argc, char** argv) {
  options opt(argc, argv);
  const std::vector<int> clients = opt.get_ints(
      "clients", "10,20,30,40,50,60,70,80,90,100,110,120,130,140,150,160,170,180,190,200");
  const auto trials = opt.get_int("trials", 100);
  const auto seed = static_cast<std::uint64_t>(opt.get_int("seed", 2015));
  const bool explore = opt.get_int("explore", 0) != 0;
  const bool published = opt.get_int("published-indexing", 0) != 0;
  const std::string out_path = opt.get("out", "");
  const std::string only = opt.get("strategies", "");
  opt.reject_unknown();
  if (trials < 1) throw std::invalid_argument("--trials must be >= 1");

  std::vector<strategy> strategies = explore ? explore_strategies() : published_strategies();
  if (published)
    for (auto& s : strategies)
      if (s.backoff.jitter != failover::jitter::decorrelated && s.name != "library default")
        s.attempt_shift = 1;

  // A failed write is a version conflict: HTTP 409, made transient here, the way a user maps a
  // status the default table treats as permanent.
  failover::classifier cls;
  cls.on_status(409, failover::error_kind::server_error, true);
  const failover::error conflict =
      cls.classify(failover::failure::http(409, "version_conflict"), failover::wall_time{});
  if (!conflict.transient) throw std::logic_error("409 should classify as transient");

  output_file out(out_path);
  std::FILE* csv = out ? out.get() : stdout;
  std::fprintf(csv,
               "strategy,clients,trials,makespan_ms,makespan_sem_ms,calls,calls_sem,gave_up\n");
  // Strategy by strategy, so each one's rows are contiguous (one line per strategy in a plot).
  for (const auto& st : strategies) {
    if (!selected(only, st.name)) continue;
    for (int n : clients) {
      std::vector<double> spans, calls;
      double gave_up = 0;
      for (long long t = 0; t < trials; ++t) {
        const trial_result r = run_trial(
            st, n, trial_seed(seed, static_cast<std::uint64_t>(n), static_cast<std::uint64_t>(t)),
            conflict);
        spans.push_back(r.makespan_ms);
        calls.push_back(r.calls);
        gave_up += r.gave_up;
      }
      const summary sp = summarize(spans), ca = summarize(calls);
      std::fprintf(csv, "%s,%d,%lld,%.1f,%.1f,%.1f,%.2f,%.2f\n", st.name.c_str(), n, trials,
                   sp.mean, sp.sem, ca.mean, ca.sem, gave_up / static_cast<double>(trials));
      std::fflush(csv);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "failover_herd: %s\n", e.what());
    return 2;
  }
}
