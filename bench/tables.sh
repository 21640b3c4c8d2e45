#!/usr/bin/env bash
# Prints the Markdown tables of docs/bench/tables.md from the CSV files in directory $1
# (scripts/bench.sh runs it after the simulations).
set -euo pipefail
dir="${1:-docs/bench}"

echo "# Generated tables"
echo
echo "Written by \`scripts/bench.sh\` from the CSV files next to this one; do not edit by hand."

echo
echo "## Overhead (CPU time per call, median of 5 repetitions; ratios within one run)"
echo
awk -F, 'NR == 1 { print "| benchmark | CPU ns | x direct call | heap allocations per call |"; print "|---|---:|---:|---:|"; next }
         { printf "| %s | %.1f | %.2f | %.2f |\n", $1, $2, $3, $4 }' "$dir/overhead.csv"

# herd_table FILE: makespan (s) and write calls at 10, 50, 100, 200 clients, and clients that gave
# up at 200.
herd_table() {
  awk -F, '
    NR == 1 { next }
    { key = $1 SUBSEP $2; span[key] = $4 / 1000; calls[key] = $6; gave[key] = $8
      if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
    END {
      print "| strategy | makespan 10 | 50 | 100 | 200 clients | calls 10 | 50 | 100 | 200 clients | gave up (200) |"
      print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
      split("10 50 100 200", ns, " ")
      for (i = 1; i <= n; i++) {
        s = order[i]; line = "| " s
        for (j = 1; j <= 4; j++) line = line sprintf(" | %.2f s", span[s, ns[j]])
        for (j = 1; j <= 4; j++) line = line sprintf(" | %.0f", calls[s, ns[j]])
        print line sprintf(" | %.1f |", gave[s, 200])
      }
    }' "$1"
}

echo
echo "## Thundering herd (mean of 100 trials per point)"
echo
herd_table "$dir/herd.csv"
echo
echo "### The same with the original simulator's indexing (first wait 2 x base, except decorrelated)"
echo
herd_table "$dir/herd_published_indexing.csv"

echo
echo "## Thundering herd: candidates against the anchor"
echo
echo "A candidate meets the anchor at N clients when it makes fewer write calls than full jitter"
echo "and its makespan is no longer than decorrelated's, both at N."
echo
awk -F, '
  NR == 1 { next }
  { key = $1 SUBSEP $2; span[key] = $4 / 1000; calls[key] = $6
    if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
    if (!($2 in nseen)) { nseen[$2] = 1; ns[++m] = $2 } }
  END {
    print "| candidate | makespan / calls at 50 | at 100 | at 200 | anchor met at |"
    print "|---|---:|---:|---:|---|"
    for (i = 1; i <= n; i++) {
      s = order[i]; line = "| " s
      for (j = 1; j <= m; j++) if (ns[j] == 50 || ns[j] == 100 || ns[j] == 200)
        line = line sprintf(" | %.2f s / %.0f", span[s, ns[j]], calls[s, ns[j]])
      met = ""
      for (j = 1; j <= m; j++) {
        k = ns[j]
        if (calls[s, k] < calls["full jitter", k] && span[s, k] <= span["decorrelated", k])
          met = met (met == "" ? "" : ", ") k
      }
      print line " | " (met == "" ? "none" : met) " |"
    }
  }' "$dir/herd_explore.csv"

# rate_table FILE SERVER: one row per strategy and client count (200, 500, 1000).
rate_table() {
  awk -F, -v server="$2" '
    NR == 1 { next }
    $1 == server && ($4 == 200 || $4 == 500 || $4 == 1000) {
      printf "| %s | %d | %.1f%% | %.0f | %.0f | %.1f s | %.2f s | %.2f s |\n", $3, $4, $6, $7, $8, $9, $10, $11
    }' "$1" | sort -t'|' -k3,3n -s
}

for server in none retry-after-ms retry-after; do
  for mode in "rate_limit.csv:5 attempts per request (the library default)" \
              "rate_limit_until_served.csv:retried until served"; do
    file="${mode%%:*}"
    echo
    echo "## Rate limit, server wait: $server; ${mode#*:} (50 trials per point)"
    echo
    echo "| strategy | clients | served | calls | 429s | makespan | p50 | p99 |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    rate_table "$dir/$file" "$server"
  done
done

echo
echo "## Rate limit: library configurations tried against the default (5 attempts)"
for server in none retry-after-ms retry-after; do
  echo
  echo "### Server wait: $server"
  echo
  echo "| configuration | clients | served | calls | 429s | makespan | p50 | p99 |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  awk -F, -v server="$server" '
    NR == 1 { next }
    $1 == server && ($4 == 200 || $4 == 500 || $4 == 1000) {
      printf "| %s | %d | %.1f%% | %.0f | %.0f | %.1f s | %.2f s | %.2f s |\n", $3, $4, $6, $7, $8, $9, $10, $11
    }' "$dir/rate_limit_explore.csv" | sort -t'|' -k3,3n -s
done

echo
echo "## Rate limit: library configurations retried until served, no server wait"
echo
echo "| configuration | clients | served | calls | 429s | makespan | p50 | p99 |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
awk -F, '
  NR == 1 { next }
  $4 == 200 || $4 == 500 || $4 == 1000 {
    printf "| %s | %d | %.1f%% | %.0f | %.0f | %.1f s | %.2f s | %.2f s |\n", $3, $4, $6, $7, $8, $9, $10, $11
  }' "$dir/rate_limit_explore_until_served.csv" | sort -t'|' -k3,3n -s
