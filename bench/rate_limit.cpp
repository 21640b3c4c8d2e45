// Rate-limit capacity, in virtual time: N clients all call an LLM provider at t = 0 (the burst
// after an outage); the provider admits requests through a token bucket (rate R per second, burst
// B) and answers 429 when it is empty, with or without a server wait saying when a token will be
// free.
//
// The library's default is exactly what a default failover::retrier does: each 429 goes through
// failover::classifier (status, code, retry-after headers) and failover::decide_retry, with the
// backoff copied from the prototype at the first retry, as detail/driver.hpp does. A self-check
// at start-up runs a real failover::retrier on fake time and compares its waits with this path.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <failover/core/backoff.hpp>
#include <failover/core/classifier.hpp>
#include <failover/core/decision.hpp>
#include <failover/retrier.hpp>
#include <failover/testing.hpp>

#include "sim_common.hpp"

namespace {

using failover::duration;
using namespace failover_bench;
using std::chrono::milliseconds;
using std::chrono::seconds;

// How the provider tells a client when to come back.
enum class server_hint { none, ms, s };

const char* to_string(server_hint h) {
  switch (h) {
    case server_hint::none:
      return "none";
    case server_hint::ms:
      return "retry-after-ms";
    case server_hint::s:
      return "retry-after";
  }
  return "none";
}

server_hint parse_hint(const std::string& s) {
  if (s == "none") return server_hint::none;
  if (s == "ms") return server_hint::ms;
  if (s == "s") return server_hint::s;
  throw std::invalid_argument("--servers must list none, ms or s, got '" + s + "'");
}

// The provider's token bucket: starts full, refills continuously at `rate` per second up to
// `burst`. A request takes one token or is refused with the time until the next token.
class token_bucket {
 public:
  token_bucket(double rate, double burst) : rate_(rate), burst_(burst), tokens_(burst) {}

  // Admitted: nullopt. Refused: the wait until one whole token is available.
  std::optional<duration> take(duration now) {
    tokens_ = std::min(burst_, tokens_ + rate_ * to_s(now - last_));
    last_ = now;
    if (tokens_ >= 1.0) {
      tokens_ -= 1.0;
      return std::nullopt;
    }
    return duration(static_cast<std::int64_t>(std::ceil((1.0 - tokens_) / rate_ * 1e9)));
  }

 private:
  double rate_;
  double burst_;
  double tokens_;
  duration last_{};
};

// The 429 as a client sees it, with the server's wait in the form the scenario uses.
failover::failure rate_limited(server_hint hint, duration wait) {
  failover::failure f = failover::failure::http(429, "rate_limit_exceeded");
  char value[32];
  if (hint == server_hint::ms) {
    std::snprintf(value, sizeof value, "%.3f", to_ms(wait));
    f.header("retry-after-ms", value);
  } else if (hint == server_hint::s) {
    // Retry-After carries whole seconds: round up, so the client never comes back too early.
    std::snprintf(value, sizeof value, "%lld", static_cast<long long>(std::ceil(to_s(wait))));
    f.header("Retry-After", value);
  }
  return f;
}

// The strategies compared. The library's go through decide_retry; the others are written after
// the rules their clients document.
enum class rule {
  library,       // failover::decide_retry: server wait + jittered backoff, else the backoff
  replace,       // server wait (0 < S <= 60 s) when given, else the backoff
  replace_plus,  // server wait (0 < S <= 60 s) plus the additive jitter, else the backoff
  floor,         // max(server wait, backoff)
};

enum class formula {
  library,   // failover::exponential_backoff with the options' jitter kind
  scaled,    // exponential_delay * U(0.75, 1)
  additive,  // exponential_delay + U(0, 0.75 s)
};

struct strategy {
  std::string name;
  failover::backoff_options backoff;
  formula shape = formula::library;
  rule server_rule = rule::library;
  candidate draw = candidate::library;  // a formula tried in --explore (library rule only)
  double factor = 3.0;
};

failover::backoff_options make_options(duration base, duration cap, failover::jitter j) {
  failover::backoff_options o;
  o.base = base;
  o.cap = cap;
  o.jitter = j;
  return o;
}

std::vector<strategy> default_strategies() {
  using failover::jitter;
  std::vector<strategy> s;
  s.push_back({"library default", failover::backoff_options{}, formula::library, rule::library});
  s.push_back({"no jitter 1s x2", make_options(seconds(1), seconds(30), jitter::none),
               formula::library, rule::replace});
  s.push_back({"SDK style", make_options(milliseconds(500), seconds(8), jitter::none),
               formula::scaled, rule::replace});
  s.push_back({"LiteLLM style", make_options(milliseconds(500), seconds(8), jitter::none),
               formula::additive, rule::replace_plus});
  s.push_back({"full jitter", make_options(seconds(1), seconds(30), jitter::full), formula::library,
               rule::replace});
  s.push_back({"decorrelated", make_options(seconds(1), seconds(30), jitter::decorrelated),
               formula::library, rule::replace});
  // The library's rule with its other jitter kinds: full jitter (the default before rising) and
  // decorrelated.
  s.push_back({"library full jitter", make_options(seconds(1), seconds(30), jitter::full),
               formula::library, rule::library});
  s.push_back({"library decorrelated", make_options(seconds(1), seconds(30), jitter::decorrelated),
               formula::library, rule::library});
  return s;
}

// Library configurations tried against the default (--explore): other jitter kinds and growth,
// all through decide_retry (server wait + jittered backoff).
std::vector<strategy> explore_strategies() {
  using failover::jitter;
  std::vector<strategy> s;
  auto add = [&](std::string name, failover::backoff_options o, candidate c = candidate::library,
                 double f = 3.0) {
    s.push_back({std::move(name), o, formula::library, rule::library, c, f});
  };
  const auto lib = [](failover::jitter j, double base_s = 1, double m = 2) {
    failover::backoff_options o = make_options(from_ms(base_s * 1000), seconds(30), j);
    o.multiplier = m;
    return o;
  };
  add("library default", failover::backoff_options{});
  add("library full jitter", lib(jitter::full));
  s.push_back({"full jitter max(S; backoff)", lib(jitter::full), formula::library, rule::floor});
  s.push_back({"full jitter S or backoff", lib(jitter::full), formula::library, rule::replace});
  add("decorrelated", lib(jitter::decorrelated));
  add("equal", lib(jitter::equal));
  add("full x3", lib(jitter::full, 1, 3));
  add("full x1.5", lib(jitter::full, 1, 1.5));
  add("full base 2s", lib(jitter::full, 2));
  add("full base 0.5s", lib(jitter::full, 0.5));
  add("full cap 10s", make_options(seconds(1), seconds(10), jitter::full));
  add("equal base 0.5s", lib(jitter::equal, 0.5));
  add("U(v/4; v)", lib(jitter::full), candidate::floor_quarter);
  add("decorrelated f2", lib(jitter::decorrelated), candidate::decorr_factor, 2);
  add("decorrelated base 0.5s", lib(jitter::decorrelated, 0.5));
  for (double b : {0.5, 1.0}) {
    for (double f : {1.5, 2.0, 3.0}) {
      char name[64];
      std::snprintf(name, sizeof name, "U(prev; %.2g prev) base %.2gs", f, b);
      add(name, lib(jitter::decorrelated, b), candidate::decorr_up, f);
    }
  }
  add("U(base; min(v; 3 prev))", lib(jitter::full), candidate::decorr_capped, 3);
  add("U(0; max(v; 3 prev))", lib(jitter::full), candidate::full_or_decorr, 3);
  // First retry the default's U(0; base), then windows that never shrink.
  add_hybrid_candidates(add, lib(jitter::full));
  add("tiled x2", lib(jitter::full), candidate::tiled);
  add("tiled x3", lib(jitter::full, 1, 3), candidate::tiled);
  return s;
}

// One client's retry logic for a non-library strategy: its own formula and server-wait rule,
// stopping after `max_attempts` attempts (0 = never).
class foreign_client {
 public:
  foreign_client(const strategy& s, int max_attempts, std::uint64_t seed)
      : s_(&s), max_attempts_(max_attempts), backoff_(s.backoff, seed), rng_(seed ^ 0x5eed) {}

  // The wait before the next attempt, or nullopt to give up.
  std::optional<duration> after_failure(std::optional<duration> server_wait) {
    ++attempts_;
    if (max_attempts_ > 0 && attempts_ >= max_attempts_) return std::nullopt;
    const bool honour =
        server_wait && *server_wait > duration::zero() && *server_wait <= seconds(60);
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    if (honour && s_->server_rule == rule::replace) return *server_wait;
    if (honour && s_->server_rule == rule::replace_plus) return *server_wait + from_ms(750 * u);
    if (s_->server_rule == rule::floor) {
      const duration b = backoff_.next(attempts_);
      return server_wait ? std::max(*server_wait, b) : b;
    }
    const duration v = failover::exponential_delay(s_->backoff, attempts_);
    switch (s_->shape) {
      case formula::scaled:
        return from_ms(to_ms(v) * (1.0 - 0.25 * u));
      case formula::additive:
        return v + from_ms(750 * u);
      case formula::library:
        break;
    }
    return backoff_.next(attempts_);
  }

 private:
  const strategy* s_;
  int max_attempts_;
  int attempts_ = 0;
  failover::exponential_backoff<> backoff_;
  std::mt19937_64 rng_;
};

struct trial_result {
  int calls = 0;
  int rejected = 0;
  int served = 0;
  double makespan_s = 0;
  std::vector<double> completions;  // seconds, served clients only
};

enum kind : int { at_server, reply };

struct sim_config {
  double rate = 100;
  double burst = 100;
  double hop_ms = 50;
  double hop_sd_ms = 10;
  int max_attempts = 5;  // 0: until served
  server_hint hint = server_hint::ms;
};

trial_result run_trial(const strategy& st, const sim_config& cfg, int n, std::uint64_t seed,
                       const failover::classifier& cls) {
  network net(cfg.hop_ms, cfg.hop_sd_ms, seed);
  token_bucket bucket(cfg.rate, cfg.burst);
  failover::retry_options retry;
  retry.max_attempts = cfg.max_attempts > 0 ? cfg.max_attempts : INT_MAX;

  struct client {
    std::optional<sim_backoff> prototype;
    std::optional<retry_state<sim_backoff>> library;
    std::optional<foreign_client> foreign;
    std::optional<duration> refused;  // the server's wait when the last call was refused
    bool admitted = false;
  };
  std::vector<client> clients(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    client& c = clients[static_cast<std::size_t>(i)];
    const std::uint64_t s = trial_seed(seed, 0xc11e47, static_cast<std::uint64_t>(i));
    if (st.server_rule == rule::library) {
      c.prototype.emplace(st.backoff, st.draw, st.factor, 0, s);
      c.library.emplace(retry, &*c.prototype);
    } else {
      c.foreign.emplace(st, cfg.max_attempts, s);
    }
  }

  trial_result r;
  event_queue q;
  for (int i = 0; i < n; ++i) q.push(net.hop(), i, at_server);
  duration now{};
  while (!q.empty()) {
    const event e = q.pop();
    now = e.at;
    client& c = clients[static_cast<std::size_t>(e.client)];
    if (e.kind == at_server) {
      ++r.calls;
      c.refused = bucket.take(now);
      c.admitted = !c.refused;
      if (c.refused) ++r.rejected;
      q.push(now + net.hop(), e.client, reply);
      continue;
    }
    if (c.admitted) {
      ++r.served;
      r.completions.push_back(to_s(now));
      continue;
    }
    std::optional<duration> wait;
    if (c.library) {
      const failover::error err = cls.classify(rate_limited(cfg.hint, *c.refused), {});
      const failover::retry_decision d = c.library->after_failure(err);
      if (d.retry) wait = d.wait;
    } else {
      std::optional<duration> hinted;
      if (cfg.hint == server_hint::ms) hinted = from_ms(std::ceil(to_ms(*c.refused) * 1e3) / 1e3);
      if (cfg.hint == server_hint::s)
        hinted = seconds(static_cast<long long>(std::ceil(to_s(*c.refused))));
      wait = c.foreign->after_failure(hinted);
    }
    if (wait) q.push(now + *wait + net.hop(), e.client, at_server);
  }
  r.makespan_s = to_s(now);
  return r;
}

// A Backoff whose draws depend only on the retry number, so that a copy made anywhere inside the
// retrier gives the same waits as the simulation's copy.
struct scripted_backoff {
  failover::backoff_options options;
  duration previous{};
  duration next(int attempt) {
    const double u = std::fmod(0.618033988749895 * attempt, 1.0);
    previous = failover::jittered_delay(options, attempt, previous, u);
    return previous;
  }
};

struct scripted_policies : failover::testing::fake_policies {
  using backoff = scripted_backoff;
};

// The simulation's retry path must wait exactly as a default-configured retrier does.
void self_check() {
  const std::vector<failover::failure> script = {
      rate_limited(server_hint::ms, milliseconds(12) + std::chrono::microseconds(500)),
      rate_limited(server_hint::none, {}),
      rate_limited(server_hint::s, milliseconds(200)),
      failover::failure::http(503),
      rate_limited(server_hint::ms, milliseconds(3)),
      rate_limited(server_hint::ms, milliseconds(3)),
  };
  for (failover::jitter j : {failover::jitter::full, failover::jitter::decorrelated}) {
    failover::backoff_options o;
    o.jitter = j;
    failover::basic_retrier<scripted_policies> retrier("model", {}, scripted_backoff{o, {}});
    const failover::testing::fake_sleeper sleeper =
        failover::testing::use_fake_time(retrier, failover::testing::fake_clock{});
    std::size_t call = 0;
    const auto res = retrier.run([&]() -> failover::outcome<int> { return script.at(call++); });
    const std::vector<duration> real = sleeper.sleeps();

    const scripted_backoff prototype{o, {}};
    retry_state<scripted_backoff> sim(failover::retry_options{}, &prototype);
    std::vector<duration> simulated;
    std::size_t attempts = 0;
    for (const auto& f : script) {
      ++attempts;
      const failover::retry_decision d = sim.after_failure(retrier.classifier().classify(f, {}));
      if (!d.retry) break;
      simulated.push_back(d.wait);
    }
    if (res.has_value() || real != simulated || attempts != call)
      throw std::logic_error("self-check: the simulated retry path differs from failover::retrier");
  }
}

int run(int argc, char** argv) {
  options opt(argc, argv);
  const std::vector<int> clients =
      opt.get_ints("clients", "10,50,100,150,200,300,400,500,600,700,800,900,1000");
  const auto trials = opt.get_int("trials", 50);
  const auto seed = static_cast<std::uint64_t>(opt.get_int("seed", 429));
  sim_config cfg;
  cfg.rate = opt.get_double("rate", 100);
  cfg.burst = opt.get_double("burst", 100);
  cfg.hop_ms = opt.get_double("hop-ms", 50);
  cfg.hop_sd_ms = opt.get_double("hop-sd-ms", 10);
  const auto attempts = opt.get_int("attempts", 5);
  const std::string servers = opt.get("servers", "none,ms");
  const std::string out_path = opt.get("out", "");
  const std::string only = opt.get("strategies", "");
  const bool explore = opt.get_int("explore", 0) != 0;
  opt.reject_unknown();
  if (trials < 1) throw std::invalid_argument("--trials must be >= 1");
  if (attempts < 0 || attempts > 1000) throw std::invalid_argument("--attempts must be 0..1000");
  if (!(cfg.rate > 0)) throw std::invalid_argument("--rate must be > 0");
  if (!(cfg.burst >= 1)) throw std::invalid_argument("--burst must be >= 1");
  cfg.max_attempts = static_cast<int>(attempts);

  std::vector<server_hint> hints;
  for (std::size_t from = 0; from <= servers.size();) {
    const auto comma = std::min(servers.find(',', from), servers.size());
    hints.push_back(parse_hint(servers.substr(from, comma - from)));
    from = comma + 1;
  }

  self_check();
  const failover::classifier cls;
  const std::vector<strategy> strategies = explore ? explore_strategies() : default_strategies();
  output_file out(out_path);
  std::FILE* csv = out ? out.get() : stdout;
  std::fprintf(csv,
               "server,attempts,strategy,clients,trials,served_pct,calls,rejected,makespan_s,"
               "p50_s,p99_s\n");
  for (server_hint hint : hints) {
    cfg.hint = hint;
    // Strategy by strategy, so each one's rows are contiguous (one line per strategy in a plot).
    for (const auto& st : strategies) {
      if (!selected(only, st.name)) continue;
      for (int n : clients) {
        std::vector<double> completions, spans;
        double calls = 0, rejected = 0, served = 0;
        for (long long t = 0; t < trials; ++t) {
          trial_result r = run_trial(
              st, cfg, n,
              trial_seed(seed, static_cast<std::uint64_t>(n), static_cast<std::uint64_t>(t)), cls);
          calls += r.calls;
          rejected += r.rejected;
          served += r.served;
          spans.push_back(r.makespan_s);
          completions.insert(completions.end(), r.completions.begin(), r.completions.end());
        }
        const double k = static_cast<double>(trials);
        const double p50 = percentile(completions, 50), p99 = percentile(completions, 99);
        std::fprintf(csv, "%s,%d,%s,%d,%lld,%.2f,%.1f,%.1f,%.3f,%.3f,%.3f\n", to_string(hint),
                     cfg.max_attempts, st.name.c_str(), n, trials, 100.0 * served / (k * n),
                     calls / k, rejected / k, summarize(spans).mean, p50, p99);
        std::fflush(csv);
      }
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "failover_rate_limit: %s\n", e.what());
    return 2;
  }
}
