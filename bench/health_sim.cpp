// Shared health under an outage, in virtual time: many concurrent requests through one real
// fallback chain (its call_machine, breaker, budget, backoff and classifier), against a primary
// model that is down for a while and a fallback that is always up. Prints one CSV row per
// configuration (summary) and, with --series, calls per second to the primary over time.
//
//   failover_health_sim [--rate=100] [--duration=240] [--outage-start=30] [--outage=60]
//                       [--seed=1] [--series=FILE]
#include <failover/failover.hpp>
#include <failover/testing.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <variant>
#include <vector>

namespace {

using namespace std::chrono_literals;
using failover::duration;

struct options {
  double rate = 100.0;        // offered requests per second (Poisson arrivals)
  double duration_s = 240.0;  // arrivals stop after this
  double outage_start_s = 30.0;
  double outage_s = 60.0;
  std::uint64_t seed = 1;
  std::string series;  // CSV of per-second calls to the primary, per configuration
};

// The four configurations differ only in their policy types.
template <class Breaker, class Budget>
struct sim_policies : failover::testing::fake_policies {
  using breaker = Breaker;
  using budget = Budget;
};

template <class Machine>
struct request {
  double arrival = 0;
  failover::call_options call;
  std::unique_ptr<Machine> machine;  // held by pointer: the attempt's context points into it
  int entry = -1;                    // the entry of the attempt in flight (-1: a wait is in flight)
  failover::attempt_id id = 0;       // that attempt's id
  bool answer_ok = false;            // what that attempt will answer, fixed when it was sent
};

struct event {
  double at;
  std::size_t request;
  bool arrival;  // else: the action in flight (attempt or wait) completes
  bool operator>(const event& o) const { return at > o.at; }
};

struct summary {
  std::uint64_t offered_in_outage = 0;
  std::uint64_t primary_calls_in_outage = 0;
  std::uint64_t all_calls_in_outage = 0;
  double wasted_s = 0;  // time requests arriving in the outage spent before leaving the primary
  std::uint64_t failed = 0;
  double recovery_s = -1;  // from the end of the outage until requests are served by the primary
  std::map<long, std::uint64_t> primary_per_second;
};

double seconds(duration d) {
  return std::chrono::duration<double>(d).count();
}

template <class Breaker, class Budget>
summary run(const options& o) {
  using chain_type = failover::basic_fallback_chain<int(), sim_policies<Breaker, Budget>>;
  using machine_type = decltype(std::declval<const chain_type&>().begin_call(
      std::declval<const failover::call_options&>()));
  failover::testing::fake_clock clock;
  auto now_s = [&] { return seconds(clock.elapsed()); };
  auto set_time = [&](double t) {
    const auto target = std::chrono::duration_cast<duration>(std::chrono::duration<double>(t));
    if (target > clock.elapsed()) clock.advance(target - clock.elapsed());
  };

  chain_type chain;
  failover::testing::use_fake_time(chain, clock);
  // Seeded backoff: the same command prints the same table.
  const failover::exponential_backoff<> backoff(failover::backoff_options{}, o.seed);
  chain.add(
      "primary", [] { return 0; }, failover::role::standard, {}, backoff);
  chain.add(
      "fallback", [] { return 0; }, failover::role::standard, {}, backoff);

  const double outage_end = o.outage_start_s + o.outage_s;
  auto primary_up = [&](double t) { return t < o.outage_start_s || t >= outage_end; };

  std::mt19937_64 rng(o.seed);
  std::exponential_distribution<double> gap(o.rate);
  std::vector<request<machine_type>> requests;
  std::priority_queue<event, std::vector<event>, std::greater<event>> queue;
  for (double t = gap(rng); t < o.duration_s; t += gap(rng)) {
    requests.push_back(request<machine_type>{t, {}, nullptr, -1, false});
    queue.push(event{t, requests.size() - 1, true});
  }

  summary s;
  std::vector<double> left_primary(requests.size(), -1);
  std::vector<bool> served_by_primary(requests.size(), false);

  // Carries out what the machine asks next (one action at a time: this sim never hedges).
  auto handle = [&](std::size_t id) {
    request<machine_type>& r = requests[id];
    const auto a = r.machine->poll();
    if (!a) return;
    if (const auto* start = std::get_if<failover::actions::start_attempt>(&*a)) {
      r.entry = static_cast<int>(start->entry);
      r.id = start->id;
      const double t = now_s();
      const bool in_outage = t >= o.outage_start_s && t < outage_end;
      if (in_outage) ++s.all_calls_in_outage;
      if (r.entry == 0) {
        s.primary_per_second[static_cast<long>(t)]++;
        if (in_outage) ++s.primary_calls_in_outage;
      }
      // A dead primary answers 503 fast; a working model takes its time.
      r.answer_ok = r.entry != 0 || primary_up(t);
      const double latency = r.answer_ok ? 0.4 : 0.05;
      queue.push(event{t + latency, id, false});
    } else if (const auto* w = std::get_if<failover::actions::sleep_until>(&*a)) {
      queue.push(event{now_s() + seconds(w->wait), id, false});
    } else {
      const failover::result<int> res = std::move(*r.machine).take();
      r.machine.reset();
      if (!res) ++s.failed;
      served_by_primary[id] = res && res.trace().attempts().back().entry == 0;
      double left = r.arrival;
      for (const auto& rec : res.trace().attempts())
        if (rec.entry == 0) left = r.arrival + seconds(rec.start + rec.elapsed + rec.wait);
      left_primary[id] = left;
    }
  };

  while (!queue.empty()) {
    const event e = queue.top();
    queue.pop();
    set_time(e.at);
    request<machine_type>& r = requests[e.request];
    if (e.arrival) {
      r.machine.reset(new auto(chain.begin_call(r.call)));
      handle(e.request);
      continue;
    }
    // The action in flight completes: an attempt's answer or a wait's end.
    if (r.entry >= 0) {
      r.machine->handle_answer(r.id,
                               r.answer_ok ? failover::outcome<int>(1)
                                           : failover::outcome<int>(failover::failure::http(503)),
                               clock.now());
      r.entry = -1;
    } else {
      r.machine->handle(failover::events::timer_fired{}, clock.now());
    }
    handle(e.request);
  }

  for (std::size_t i = 0; i < requests.size(); ++i) {
    const double t = requests[i].arrival;
    if (t >= o.outage_start_s && t < outage_end) {
      ++s.offered_in_outage;
      s.wasted_s += left_primary[i] - t;
    }
  }
  // Recovery: the first second after the outage from which every later arrival that second
  // onwards is served by the primary.
  std::optional<double> last_not_primary;
  for (std::size_t i = 0; i < requests.size(); ++i)
    if (requests[i].arrival >= outage_end && !served_by_primary[i])
      last_not_primary = requests[i].arrival;
  s.recovery_s = last_not_primary ? *last_not_primary - outage_end : 0.0;
  return s;
}

bool flag(const char* arg, const char* name, std::string& value) {
  const std::size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  value = arg + n + 1;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (flag(argv[i], "--rate", v))
      o.rate = std::atof(v.c_str());
    else if (flag(argv[i], "--duration", v))
      o.duration_s = std::atof(v.c_str());
    else if (flag(argv[i], "--outage-start", v))
      o.outage_start_s = std::atof(v.c_str());
    else if (flag(argv[i], "--outage", v))
      o.outage_s = std::atof(v.c_str());
    else if (flag(argv[i], "--seed", v))
      o.seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (flag(argv[i], "--series", v))
      o.series = v;
    else {
      std::fprintf(stderr, "failover_health_sim: unknown argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (!(o.rate > 0) || !(o.duration_s > 0) || o.outage_s < 0 || o.outage_start_s < 0) {
    std::fprintf(stderr, "failover_health_sim: --rate and --duration must be > 0\n");
    return 2;
  }

  const char* names[] = {"retries only", "budget", "breaker", "breaker+budget"};
  using namespace failover;
  const summary runs[] = {run<no_breaker, no_budget>(o), run<no_breaker, retry_budget>(o),
                          run<circuit_breaker, no_budget>(o),
                          run<circuit_breaker, retry_budget>(o)};
  std::printf(
      "config,offered_in_outage,primary_calls_per_offered,all_calls_per_offered,"
      "wasted_s_per_request,failed,recovery_s\n");
  for (std::size_t i = 0; i < 4; ++i) {
    const summary& s = runs[i];
    const double offered = static_cast<double>(std::max<std::uint64_t>(1, s.offered_in_outage));
    std::printf("%s,%llu,%.3f,%.3f,%.3f,%llu,%.1f\n", names[i],
                static_cast<unsigned long long>(s.offered_in_outage),
                static_cast<double>(s.primary_calls_in_outage) / offered,
                static_cast<double>(s.all_calls_in_outage) / offered, s.wasted_s / offered,
                static_cast<unsigned long long>(s.failed), s.recovery_s);
  }
  if (!o.series.empty()) {
    std::FILE* f = std::fopen(o.series.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "failover_health_sim: cannot write %s\n", o.series.c_str());
      return 1;
    }
    std::fprintf(f, "second");
    for (const char* name : names) std::fprintf(f, ",%s", name);
    std::fprintf(f, "\n");
    for (long t = 0; t < static_cast<long>(o.duration_s) + 60; ++t) {
      std::fprintf(f, "%ld", t);
      for (const summary& s : runs) {
        const auto it = s.primary_per_second.find(t);
        std::fprintf(
            f, ",%llu",
            static_cast<unsigned long long>(it == s.primary_per_second.end() ? 0 : it->second));
      }
      std::fprintf(f, "\n");
    }
    std::fclose(f);
  }
  return 0;
}
