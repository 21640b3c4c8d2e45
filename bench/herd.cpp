// The thundering herd, in virtual time: the optimistic-concurrency contention model of the 2015
// "Exponential Backoff And Jitter" analysis. Each client is a failover::basic_retrier whose call
// runs on the virtual-time driver (drivers/sim.hpp), so every wait and every retry-or-stop verdict
// comes from the library's own machine, backoff policy and classifier.
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
#include <failover/drivers/sim.hpp>
#include <failover/retrier.hpp>
#include <failover/testing.hpp>

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

// A client: one retrier with its own seeded backoff, classifying the 409 of a failed write as
// transient (as the user's classifier would).
struct herd_policies : failover::testing::fake_policies {
  using backoff = sim_backoff;
};
using herd_retrier = failover::basic_retrier<herd_policies>;
using herd_machine = decltype(std::declval<const herd_retrier&>().begin_call<std::uint64_t>(
    std::declval<const failover::call_options&>(), std::declval<failover::time_point>()));
using herd_driver = failover::sim_driver<herd_machine, failover::testing::fake_clock>;

trial_result run_trial(const strategy& st, int n, std::uint64_t seed,
                       const failover::classifier& cls) {
  network net(10.0, 2.0, seed);
  struct client {
    herd_retrier retrier;
    failover::attempt_id attempt = 0;
    std::uint64_t seen = 0;
    std::optional<duration> next_hop;  // drawn when a write fails, as the model's client does
  };
  std::vector<client> clients;
  clients.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const std::uint64_t s = trial_seed(seed, 0xc11e47, static_cast<std::uint64_t>(i));
    // The prototype is a copy of the policy as made (a copy draws a stream of its own), as the
    // harness kept it before it ran on the machine: each client draws the waits it drew then.
    const sim_backoff made(st.backoff, st.formula, st.factor, st.attempt_shift, s);
    sim_backoff prototype = made;
    clients.push_back(
        client{herd_retrier("row", st.retry, std::move(prototype)), 0, 0, std::nullopt});
    clients.back().retrier.classifier() = cls;
  }

  trial_result r;
  std::uint64_t version = 0;
  failover::testing::fake_clock clock;
  herd_driver* sim = nullptr;
  // An attempt: read the version (a hop there, a hop back), then write with it (the same); the
  // write succeeds only if nobody wrote in between.
  auto on_start = [&](herd_driver::call_id c, const failover::actions::start_attempt& a) {
    client& cl = clients[c];
    cl.attempt = a.id;
    const duration first = cl.next_hop ? *cl.next_hop : net.hop();
    cl.next_hop.reset();
    sim->at(clock.now() + first, [&, c] {  // at the server: read
      clients[c].seen = version;
      sim->at(clock.now() + net.hop(), [&, c] {    // the reply is back: write
        sim->at(clock.now() + net.hop(), [&, c] {  // at the server: write
          ++r.calls;
          const bool ok = clients[c].seen == version;
          if (ok) ++version;
          sim->at(clock.now() + net.hop(), [&, c, ok, written = version] {  // the reply
            client& back = clients[c];
            if (ok) return sim->answer(c, back.attempt, written);
            back.next_hop = net.hop();
            sim->answer(c, back.attempt, failover::failure::http(409, "version_conflict"));
          });
        });
      });
    });
  };
  auto on_done = [&](herd_driver::call_id, const failover::result<std::uint64_t>& res) {
    if (!res) ++r.gave_up;
  };
  herd_driver driver(clock, on_start, on_done);
  sim = &driver;
  for (int i = 0; i < n; ++i)
    driver.add(clients[static_cast<std::size_t>(i)].retrier.begin_call<std::uint64_t>(
        failover::call_options{}, clock.now()));
  driver.run();
  r.makespan_ms = to_ms(clock.elapsed());
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
  if (!cls.classify(failover::failure::http(409, "version_conflict"), failover::wall_time{})
           .transient)
    throw std::logic_error("409 should classify as transient");

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
            cls);
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
