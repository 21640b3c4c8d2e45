// What failover costs when calls succeed, and what its pieces cost: a direct call, a retrier, a
// three-model chain and hand-written retry loops with the same rules, one backoff draw per jitter
// kind, one classification, and the failure path of a 5-attempt retrier that does not sleep.
//
// The retrier and the chain run the blocking driver: a plain loop over the call machine (poll an
// action, carry it out, hand the outcome back), the same rules every driver runs, with no separate
// path for a first attempt that succeeds. The hand loops are what that loop is measured against.
//
// The global operator new is replaced in this binary to count heap allocations; each benchmark
// reports the allocations made inside its timed loop per call (`allocs_per_call`). After the run a
// table gives each time as a ratio to the direct call (`--ratios_out=file.csv` also writes it).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#if __has_include(<unistd.h>)
#include <unistd.h>
#define FAILOVER_BENCH_ISATTY(fd) isatty(fd)
#else
#define FAILOVER_BENCH_ISATTY(fd) 0
#endif

#include <failover/core/backoff.hpp>
#include <failover/core/classifier.hpp>
#include <failover/fallback_chain.hpp>
#include <failover/resilient_policies.hpp>
#include <failover/retrier.hpp>

// ---- allocation counting -------------------------------------------------------------------

namespace {
std::atomic<std::uint64_t> g_allocations{0};

void* counted_alloc(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
void* counted_aligned_alloc(std::size_t n, std::align_val_t a) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  void* p = nullptr;
  const std::size_t align = std::max(static_cast<std::size_t>(a), sizeof(void*));
  return posix_memalign(&p, align, n == 0 ? 1 : n) == 0 ? p : nullptr;
}
// Out of line, so the compiler does not pair an inlined std::free with operator new.
[[gnu::noinline]] void counted_free(void* p) noexcept {
  std::free(p);
}
}  // namespace

void* operator new(std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return counted_alloc(n);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return counted_alloc(n);
}
void* operator new(std::size_t n, std::align_val_t a) {
  if (void* p = counted_aligned_alloc(n, a)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
  if (void* p = counted_aligned_alloc(n, a)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  counted_free(p);
}
void operator delete[](void* p) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  counted_free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  counted_free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  counted_free(p);
}

namespace {

// Counts the allocations of one benchmark's timed loop and reports them per call.
class allocation_meter {
 public:
  explicit allocation_meter(benchmark::State& state)
      : state_(state), start_(g_allocations.load(std::memory_order_relaxed)) {}
  ~allocation_meter() {
    const auto n = g_allocations.load(std::memory_order_relaxed) - start_;
    const auto calls = std::max<benchmark::IterationCount>(state_.iterations(), 1);
    state_.counters["allocs_per_call"] =
        benchmark::Counter(static_cast<double>(n) / static_cast<double>(calls));
  }
  allocation_meter(const allocation_meter&) = delete;
  allocation_meter& operator=(const allocation_meter&) = delete;

 private:
  benchmark::State& state_;
  std::uint64_t start_;
};

// ---- the callable and the loops compared -------------------------------------------------

// The "model call": trivial, but a real call the optimiser cannot fold into the loop.
[[gnu::noinline]] int answer(int x) {
  benchmark::ClobberMemory();
  return x + 1;
}

// A sleeper that returns at once: the failure path without its waits.
struct no_sleep {
  bool sleep_for(failover::duration, const failover::cancel_token& t) const {
    return !t.cancelled();
  }
};
struct no_sleep_policies : failover::default_policies {
  using sleeper = no_sleep;
};

// The loop a careful user writes without the library, with the same rules: each model up to 5
// attempts, transient failures retried after full-jitter backoff or the server's wait plus it,
// permanent ones moving on to the next model. Three levels of what it tells its caller:
//  - bare: the value only;
//  - timed: the value, and it reads the clock where the library does to time each attempt (at
//    the start of the call, which is also the first attempt's start; at each attempt's end; at
//    the start of each later attempt): two reads on the success path;
//  - traced: what the library's result tells its caller, written by hand: the value, which model
//    served, each attempt's model, number, start, duration and wait, and the last error — in a
//    fixed array on the stack, no heap.
enum class loop_kind { bare, timed, traced };

struct hand_record {
  std::uint16_t model;
  std::uint16_t attempt;
  bool ok;
  failover::duration start;
  failover::duration elapsed;
  failover::duration wait;
};
template <std::size_t models>
struct hand_result {
  std::optional<int> value;
  std::array<hand_record, models * 5> attempts;  // only the first `count` are written
  std::size_t count = 0;
  std::optional<failover::error> last_error;
};

template <loop_kind kind, std::size_t models, class F>
hand_result<models> hand_loop(const std::array<F*, models>& fs, int x,
                              const failover::classifier& cls,
                              const failover::exponential_backoff<>& prototype) {
  constexpr bool timed = kind != loop_kind::bare;
  constexpr bool traced = kind == loop_kind::traced;
  hand_result<models> out;
  [[maybe_unused]] failover::time_point start{};
  [[maybe_unused]] failover::time_point begin{};
  if constexpr (timed) begin = start = std::chrono::steady_clock::now();
  bool first = true;
  for (std::size_t m = 0; m < models; ++m) {
    std::optional<failover::exponential_backoff<>> backoff;
    for (int attempt = 1;; ++attempt) {
      if constexpr (timed) {
        if (!first) begin = std::chrono::steady_clock::now();
      }
      first = false;
      failover::outcome<int> o = (*fs[m])(x);
      [[maybe_unused]] hand_record* rec = nullptr;
      if constexpr (timed) {
        const failover::time_point end = std::chrono::steady_clock::now();
        if constexpr (traced) {
          rec = &out.attempts[out.count++];
          *rec = hand_record{static_cast<std::uint16_t>(m),
                             static_cast<std::uint16_t>(attempt),
                             o.has_value(),
                             begin - start,
                             end - begin,
                             {}};
        } else {
          benchmark::DoNotOptimize(end - begin);
          benchmark::DoNotOptimize(begin - start);
        }
      }
      if (o.has_value()) {
        out.value = o.value();
        return out;
      }
      const failover::error e = cls.classify(o.failure(), std::chrono::system_clock::now());
      const bool retry = e.transient && attempt < 5;
      if constexpr (traced) out.last_error = e;
      if (!retry) break;
      if (!backoff) backoff.emplace(prototype);
      const failover::duration wait =
          e.retry_after.value_or(failover::duration::zero()) + backoff->next(attempt);
      if constexpr (traced) rec->wait = wait;
      benchmark::DoNotOptimize(wait);  // a real loop sleeps here
    }
  }
  return out;
}

using model_fn = failover::outcome<int>(int);
failover::outcome<int> model_ok(int x) {
  return answer(x);
}

void direct_call(benchmark::State& state) {
  int x = 0;
  allocation_meter meter(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(x = answer(x));
  }
}

void retrier_success(benchmark::State& state) {
  const failover::retrier retrier("model");
  int x = 0;
  allocation_meter meter(state);
  for (auto _ : state) {
    auto r = retrier.run([](int v) { return answer(v); }, x);
    benchmark::DoNotOptimize(x = *r);
  }
}

void chain3_success(benchmark::State& state) {
  failover::fallback_chain<int(int)> chain;
  chain.add("primary", [](int v) { return answer(v); })
      .add("secondary", [](int v) { return answer(v); })
      .add("tertiary", [](int v) { return answer(v); });
  int x = 0;
  allocation_meter meter(state);
  for (auto _ : state) {
    auto r = chain.run(x);
    benchmark::DoNotOptimize(x = *r);
  }
}

// The same chain with shared health switched on: a circuit breaker and a retry budget. As a
// benchmark with threads, several threads share one chain, one breaker and one budget.
void chain3_success_shared_health(benchmark::State& state) {
  using chain_type = failover::basic_fallback_chain<int(int), failover::resilient_policies>;
  static chain_type* const shared = [] {
    auto* chain = new chain_type();  // lives for the whole run: threads share it
    chain->add("primary", [](int v) { return answer(v); })
        .add("secondary", [](int v) { return answer(v); })
        .add("tertiary", [](int v) { return answer(v); });
    chain->set_breaker(failover::circuit_breaker{});
    return chain;
  }();
  int x = 0;
  allocation_meter meter(state);
  for (auto _ : state) {
    auto r = shared->run(x);
    benchmark::DoNotOptimize(x = *r);
  }
}

template <loop_kind kind, std::size_t models>
void hand_loop_success(benchmark::State& state) {
  const failover::classifier cls;
  const failover::exponential_backoff<> prototype;
  std::array<model_fn*, models> fs{};
  fs.fill(&model_ok);
  int x = 0;
  allocation_meter meter(state);
  for (auto _ : state) {
    auto r = hand_loop<kind, models>(fs, x, cls, prototype);
    benchmark::DoNotOptimize(r);
    x = *r.value;
  }
}

void backoff_next(benchmark::State& state, failover::jitter kind) {
  failover::backoff_options o;
  o.jitter = kind;
  failover::exponential_backoff<> b(o, 42);
  int attempt = 1;
  allocation_meter meter(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(b.next(attempt));
    attempt = attempt % 5 + 1;
  }
}

void classify_429(benchmark::State& state) {
  const failover::classifier cls;
  const failover::failure f =
      failover::failure::http(429, "rate_limit_exceeded").header("retry-after-ms", "250");
  const failover::wall_time now = std::chrono::system_clock::now();
  allocation_meter meter(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(cls.classify(f, now));
  }
}

void classify_503(benchmark::State& state) {
  const failover::classifier cls;
  const failover::failure f = failover::failure::http(503);
  const failover::wall_time now = std::chrono::system_clock::now();
  allocation_meter meter(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(cls.classify(f, now));
  }
}

void retrier_failure_5_attempts(benchmark::State& state) {
  const failover::basic_retrier<no_sleep_policies> retrier("model");
  int x = 0;
  allocation_meter meter(state);
  for (auto _ : state) {
    auto r = retrier.run(
        [](int v) -> failover::outcome<int> {
          benchmark::DoNotOptimize(answer(v));
          return failover::failure::http(503);
        },
        x);
    benchmark::DoNotOptimize(r.trace().size());
  }
}

// The pieces of the success path, to see where its time goes.
void piece_clock_read(benchmark::State& state) {
  allocation_meter meter(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(std::chrono::steady_clock::now());
  }
}

void piece_std_function_call(benchmark::State& state) {
  const std::function<failover::outcome<int>(const failover::attempt_context&, int)> f =
      [](const failover::attempt_context&, int v) -> failover::outcome<int> { return answer(v); };
  const failover::attempt_context ctx{"model", 1, 1, std::nullopt, nullptr};
  int x = 0;
  allocation_meter meter(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(x = f(ctx, x).value());
  }
}

void piece_result_and_record(benchmark::State& state) {
  const failover::trace::names_ptr names =
      failover::detail::intern_names(std::vector<std::string>(1, "model"));
  int x = 0;
  allocation_meter meter(state);
  for (auto _ : state) {
    failover::result<int> r(names);
    failover::attempt_record& rec = r.mutable_trace().add();
    rec.ok = true;
    r.set_value(int{x});
    benchmark::DoNotOptimize(x = *r);
  }
}

BENCHMARK(direct_call);
BENCHMARK(retrier_success);
BENCHMARK(chain3_success);
BENCHMARK(chain3_success_shared_health);
BENCHMARK(chain3_success_shared_health)->Threads(2)->Name("chain3_success_shared_health/2_threads");
BENCHMARK(hand_loop_success<loop_kind::bare, 1>)->Name("hand_loop_1_model");
// The retrier's comparison: one model, the clock read where the library reads it.
BENCHMARK(hand_loop_success<loop_kind::timed, 1>)->Name("hand_loop_1_model_timed");
BENCHMARK(hand_loop_success<loop_kind::bare, 3>)->Name("hand_loop_3_models");
BENCHMARK(hand_loop_success<loop_kind::timed, 3>)->Name("hand_loop_3_models_timed");
BENCHMARK(hand_loop_success<loop_kind::traced, 3>)->Name("hand_loop_3_models_traced");
BENCHMARK_CAPTURE(backoff_next, none, failover::jitter::none);
BENCHMARK_CAPTURE(backoff_next, full, failover::jitter::full);
BENCHMARK_CAPTURE(backoff_next, equal, failover::jitter::equal);
BENCHMARK_CAPTURE(backoff_next, decorrelated, failover::jitter::decorrelated);
BENCHMARK_CAPTURE(backoff_next, rising, failover::jitter::rising);
BENCHMARK(classify_429);
BENCHMARK(classify_503);
BENCHMARK(retrier_failure_5_attempts);
BENCHMARK(piece_clock_read);
BENCHMARK(piece_std_function_call);
BENCHMARK(piece_result_and_record);

// ---- the ratio table ----------------------------------------------------------------------

struct row {
  double ns = 0;
  double allocs = 0;
};

// Prints as the console reporter does, and keeps one CPU time per benchmark: the median when
// repetitions were asked for, else the single run.
class collecting_reporter : public benchmark::ConsoleReporter {
 public:
  explicit collecting_reporter(OutputOptions o) : ConsoleReporter(o) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
      if (r.run_type == Run::RT_Aggregate && !median) continue;
      const std::string name = r.run_name.str();
      const bool known = rows_.count(name) != 0;
      if (known && !median) continue;  // later repetitions: the median will come
      row& out = rows_[name];
      out.ns = r.GetAdjustedCPUTime() * to_ns(r.time_unit);
      const auto c = r.counters.find("allocs_per_call");
      out.allocs = c == r.counters.end() ? 0.0 : static_cast<double>(c->second);
      if (!known) order_.push_back(name);
    }
  }
  const std::map<std::string, row>& rows() const { return rows_; }
  const std::vector<std::string>& order() const { return order_; }

 private:
  static double to_ns(benchmark::TimeUnit u) {
    switch (u) {
      case benchmark::kNanosecond:
        return 1;
      case benchmark::kMicrosecond:
        return 1e3;
      case benchmark::kMillisecond:
        return 1e6;
      case benchmark::kSecond:
        return 1e9;
    }
    return 1;
  }
  std::map<std::string, row> rows_;
  std::vector<std::string> order_;
};

constexpr const char* registered[] = {"direct_call",
                                      "retrier_success",
                                      "chain3_success",
                                      "hand_loop_1_model",
                                      "hand_loop_1_model_timed",
                                      "hand_loop_3_models",
                                      "hand_loop_3_models_timed",
                                      "hand_loop_3_models_traced",
                                      "backoff_next/none",
                                      "backoff_next/full",
                                      "backoff_next/equal",
                                      "backoff_next/decorrelated",
                                      "backoff_next/rising",
                                      "classify_429",
                                      "classify_503",
                                      "retrier_failure_5_attempts",
                                      "piece_clock_read",
                                      "piece_std_function_call",
                                      "piece_result_and_record"};

void print_ratios(const collecting_reporter& rep, const std::string& csv_path) {
  const auto& rows = rep.rows();
  const auto direct = rows.find("direct_call");
  if (direct == rows.end() || direct->second.ns <= 0) return;
  std::FILE* csv = csv_path.empty() ? nullptr : std::fopen(csv_path.c_str(), "w");
  if (!csv_path.empty() && !csv) std::fprintf(stderr, "cannot write %s\n", csv_path.c_str());
  if (csv) std::fprintf(csv, "benchmark,cpu_ns,ratio_to_direct,allocs_per_call\n");
  std::printf(
      "\n| benchmark | CPU ns | x direct call | allocations per call |\n|---|---:|---:|---:|\n");
  // Registration order, whatever order the interleaved runs came in.
  std::vector<std::string> order;
  for (const char* name : registered)
    if (rows.count(name)) order.push_back(name);
  for (const std::string& name : rep.order())
    if (std::find(order.begin(), order.end(), name) == order.end()) order.push_back(name);
  for (const std::string& name : order) {
    const row& r = rows.at(name);
    const double ratio = r.ns / direct->second.ns;
    std::printf("| %s | %.1f | %.2f | %.2f |\n", name.c_str(), r.ns, ratio, r.allocs);
    if (csv) std::fprintf(csv, "%s,%.2f,%.3f,%.3f\n", name.c_str(), r.ns, ratio, r.allocs);
  }
  // The success path against the loop with the same clock reads: the chain, the retrier (against
  // the one-model loop) and the chain with shared health (breaker and budget) switched on.
  const auto ratio = [&](const char* lib, const char* loop) {
    const auto a = rows.find(lib);
    const auto b = rows.find(loop);
    return a != rows.end() && b != rows.end() && b->second.ns > 0 ? a->second.ns / b->second.ns
                                                                  : 0.0;
  };
  const double bare = ratio("chain3_success", "hand_loop_3_models");
  const double chain = ratio("chain3_success", "hand_loop_3_models_timed");
  if (bare > 0 && chain > 0)
    std::printf("\nchain / hand loop: %.2fx; chain / hand loop with the same clock reads: %.2fx\n",
                bare, chain);
  if (const double r = ratio("retrier_success", "hand_loop_1_model_timed"); r > 0)
    std::printf("retrier / one-model hand loop with the same clock reads: %.2fx\n", r);
  if (const double r = ratio("chain3_success_shared_health", "hand_loop_3_models_timed"); r > 0)
    std::printf("chain with shared health / hand loop with the same clock reads: %.2fx\n", r);
  if (csv) std::fclose(csv);
}

}  // namespace

int main(int argc, char** argv) {
  std::string csv_path;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a(argv[i]);
    if (a.substr(0, 13) == "--ratios_out=") {
      csv_path = std::string(a.substr(13));
    } else {
      args.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  // Colours only on a terminal, so a saved log stays readable.
  collecting_reporter reporter(FAILOVER_BENCH_ISATTY(1) ? benchmark::ConsoleReporter::OO_Defaults
                                                        : benchmark::ConsoleReporter::OO_Tabular);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  print_ratios(reporter, csv_path);
  return 0;
}
