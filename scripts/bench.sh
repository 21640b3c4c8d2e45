#!/usr/bin/env bash
# Reproduces every figure and plot in docs/benchmarks.md: builds the benchmark and the two
# simulations (Release, -O2), runs them in full, and writes the CSV data, the generated tables
# (docs/bench/tables.md) and the PNG plots into docs/bench/. Build tree: build-bench (override
# with BUILD_DIR). Takes about two minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh all gnuplot-nox
build="${BUILD_DIR:-build-bench}"
out=docs/bench
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
  -DFAILOVER_WERROR=ON
cmake --build "$build" --parallel 2 --target failover_overhead failover_herd failover_rate_limit \
  failover_health_sim failover_scale
mkdir -p "$out"
bin="$build/bench"

echo "== overhead (Google Benchmark; medians of 5 interleaved repetitions)" >&2
"$bin/failover_overhead" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
  --benchmark_enable_random_interleaving=true --benchmark_min_time=0.2 \
  --ratios_out="$out/overhead.csv" 2>&1 | tee "$out/overhead.txt"

echo "== thundering herd" >&2
"$bin/failover_herd" --out="$out/herd.csv"
"$bin/failover_herd" --published-indexing --out="$out/herd_published_indexing.csv"
"$bin/failover_herd" --explore --clients=10,30,50,100,150,200 --out="$out/herd_explore.csv"

echo "== rate-limit capacity" >&2
"$bin/failover_rate_limit" --servers=none,ms,s --out="$out/rate_limit.csv"
"$bin/failover_rate_limit" --servers=none,ms,s --attempts=0 --out="$out/rate_limit_until_served.csv"
"$bin/failover_rate_limit" --explore --servers=none,ms,s --clients=150,200,300,500,700,1000 \
  --out="$out/rate_limit_explore.csv"
"$bin/failover_rate_limit" --explore --servers=none --attempts=0 --clients=150,200,300,500,700,1000 \
  --out="$out/rate_limit_explore_until_served.csv"

echo "== shared health under an outage" >&2
"$bin/failover_health_sim" --series="$out/health_series.csv" | tee "$out/health.csv"
"$bin/failover_health_sim" --outage=600 --duration=900 | tee "$out/health_long_outage.csv"
"$bin/failover_health_sim" --rate=10 | tee "$out/health_low_rate.csv"

echo "== scale: 10,000 calls in flight (needs ulimit -Hn >= 10256)" >&2
if "$bin/failover_scale" > "$out/scale.txt"; then
  cat "$out/scale.txt"
  grep '^{' "$out/scale.txt" > "$out/scale.jsonl"
else
  echo "bench: failover_scale did not run (its message is above); the other figures go on" >&2
fi

echo "== plots" >&2
gnuplot -e "dir='$out'" bench/plots/health.gp
gnuplot -e "dir='$out'" bench/plots/herd.gp
for server in none retry-after-ms retry-after; do
  short="${server/retry-after-ms/ms}"
  short="${short/retry-after/s}"
  gnuplot -e "dir='$out'; server='$server'; out='rate_limit_$short.png'" bench/plots/rate_limit.gp
  gnuplot -e "dir='$out'; file='rate_limit_until_served.csv'; server='$server';
              out='rate_limit_${short}_until_served.png'; subtitle='retried until served'" \
    bench/plots/rate_limit.gp
done

echo "== tables" >&2
bash bench/tables.sh "$out" > "$out/tables.md"
echo "bench: wrote $out/*.csv, $out/*.png and $out/tables.md" >&2
