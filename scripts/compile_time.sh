#!/usr/bin/env bash
# Compile time of wrapping one call: what a translation unit that wraps one call costs to compile,
# against the same call unwrapped. Prints the median of N compiles (default 5) per translation unit.
#
# Usage: scripts/compile_time.sh [--runs N] [--clang] [--separate] [--include DIR] [--check SECONDS]
#                                [--keep]
#   --runs N         compiles per translation unit (default 5)
#   --include DIR    the headers to measure (default: this tree's include/); e.g. another commit's,
#                    from `git archive <commit> include | tar -x -C /tmp/old`, for a before/after
#   --clang          also measure with clang++
#   --separate       also measure the front door and the retrier under FAILOVER_SEPARATE_COMPILATION,
#                    and the one unit that includes failover/compiled.hpp (compiled once per program)
#   --check SECONDS  exit 1 when the front door (fallback_chain.hpp) costs more than SECONDS over
#                    the unwrapped call with g++. Not wired into CI on purpose: wall-clock times on a
#                    loaded or shared machine vary by a factor of two, and that must not fail a build.
#   --keep           keep the generated translation units (their directory is printed)
# Environment: CXX (default g++), CLANGXX (default clang++), CXXFLAGS_EXTRA (added to each compile).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

runs=5
with_clang=0
separate=0
check=""
keep=0
include="$root/include"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --clang) with_clang=1; shift ;;
    --separate) separate=1; shift ;;
    --check) check="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --include) include=$(cd "$2" && pwd); shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "compile_time.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
case "$runs" in ''|*[!0-9]*|0) echo "compile_time.sh: --runs must be a positive integer" >&2; exit 2 ;; esac

dir=$(mktemp -d "${TMPDIR:-/tmp}/failover-ctime.XXXXXX")
if [ "$keep" = 1 ]; then echo "translation units kept in $dir"; else trap 'rm -rf "$dir"' EXIT; fi

# The call itself, the same in every translation unit.
call='std::string summarise(const std::string& prompt) { return "summary of " + prompt; }'

cat >"$dir/unwrapped.cpp" <<TU
#include <string>
$call
int main() { return static_cast<int>(summarise("a ticket").size() % 2); }
TU

# One chain, one entry, one call: the least a user writes to wrap a call.
chain_tu() {
  cat <<TU
#include <$1>
#include <string>
$call
int main() {
  failover::fallback_chain<std::string(const std::string&)> chain;
  chain.add("model-a", summarise);
  auto answer = chain.run("a ticket");
  return answer ? 0 : 1;
}
TU
}
chain_tu failover/fallback_chain.hpp >"$dir/front_door.cpp"
chain_tu failover/failover.hpp >"$dir/umbrella.cpp"

# The compiled part of a program built with FAILOVER_SEPARATE_COMPILATION (--separate).
echo '#include <failover/compiled.hpp>' >"$dir/compiled.cpp"

cat >"$dir/retrier.cpp" <<TU
#include <failover/retrier.hpp>
#include <string>
$call
int main() {
  failover::retrier retry("model-a");
  auto answer = retry.run(summarise, std::string("a ticket"));
  return answer ? 0 : 1;
}
TU

# Compiles `tu` `runs` times (to an object file: linking is not the cost) and prints the median
# wall-clock seconds and the median CPU seconds (user + system) of the compiler. Under load the CPU
# figure moves less than the wall-clock one; the goal is on the wall clock.
median() { sort -g | awk '{a[NR] = $1} END {m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f", m}'; }
measure() {  # measure CXX TU [FLAG]: FLAG is -DFAILOVER_SEPARATE_COMPILATION or nothing
  local cxx="$1" tu="$2" flag="${3:-}" i line
  local walls=() cpus=()
  for ((i = 0; i < runs; i++)); do
    # CXXFLAGS_EXTRA is split into words on purpose: it may hold several flags; so is an empty FLAG.
    # shellcheck disable=SC2086
    if ! line=$( { TIMEFORMAT='%R %U %S'; time "$cxx" -O2 -std=c++17 -I"$include" ${CXXFLAGS_EXTRA:-} \
      $flag -c "$dir/$tu.cpp" -o "$dir/$tu.o" 2>"$dir/$tu.err"; } 2>&1); then
      echo "compile_time.sh: $cxx failed on $tu.cpp:" >&2
      cat "$dir/$tu.err" >&2
      exit 1
    fi
    walls+=("$(echo "$line" | awk '{print $1}')")
    cpus+=("$(echo "$line" | awk '{print $2 + $3}')")
  done
  echo "$(printf '%s\n' "${walls[@]}" | median) $(printf '%s\n' "${cpus[@]}" | median)"
}

front_door_diff=""
report() {
  local cxx="$1"
  echo "== $cxx ($("$cxx" --version | head -1)), -O2 -std=c++17, median of $runs, headers $include"
  echo "  load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '  %-44s %8s %10s %8s %10s\n' "translation unit" "wall s" "+ wall s" "CPU s" "+ CPU s"
  local base base_wall base_cpu
  base=$(measure "$cxx" unwrapped)
  base_wall=${base% *}
  base_cpu=${base#* }
  printf '  %-44s %8.2f %10s %8.2f %10s\n' "unwrapped call" "$base_wall" "" "$base_cpu" ""
  local row tu flag label t wall cpu diff rows=(front_door umbrella retrier)
  [ "$separate" = 1 ] && rows+=(front_door:separate retrier:separate compiled:separate)
  for row in "${rows[@]}"; do
    tu=${row%%:*}
    flag=""
    [ "$row" != "$tu" ] && flag=-DFAILOVER_SEPARATE_COMPILATION
    case "$row" in
      front_door) label="failover/fallback_chain.hpp (front door)" ;;
      umbrella) label="failover/failover.hpp (umbrella)" ;;
      retrier) label="failover/retrier.hpp" ;;
      front_door:separate) label="front door, separate compilation" ;;
      retrier:separate) label="retrier, separate compilation" ;;
      compiled:separate) label="failover/compiled.hpp (once per program)" ;;
    esac
    t=$(measure "$cxx" "$tu" "$flag")
    wall=${t% *}
    cpu=${t#* }
    diff=$(echo "$wall - $base_wall" | bc -l)
    printf '  %-44s %8.2f %+10.2f %8.2f %+10.2f\n' "$label" "$wall" "$diff" "$cpu" "$(echo "$cpu - $base_cpu" | bc -l)"
    if [ "$tu" = front_door ] && [ "$cxx" = "${CXX:-g++}" ]; then front_door_diff="$diff"; fi
  done
  echo "  load after: $(cut -d' ' -f1-3 /proc/loadavg)"
}

report "${CXX:-g++}"
if [ "$with_clang" = 1 ]; then report "${CLANGXX:-clang++}"; fi

if [ -n "$check" ]; then
  if [ "$(echo "$front_door_diff > $check" | bc -l)" = 1 ]; then
    echo "compile_time.sh: the front door costs +$front_door_diff s, more than the allowed +$check s" >&2
    exit 1
  fi
  echo "front door within +$check s"
fi
