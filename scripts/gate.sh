#!/usr/bin/env bash
# failover's quality gates (docs/quality.md says what each one checks). Each runs alone, or all of
# them run in sequence as CI does; any failing gate fails the run.
#
# Usage: scripts/gate.sh GATE...
#   format        clang-format --dry-run -Werror over every C++ source
#   tidy          clang-tidy (.clang-tidy) over every public header, through its header-check TU
#   warnings      g++ and clang++, C++17 and C++20, strict warnings as errors; all tests in each
#   headers       every public header compiles on its own (g++ and clang++, C++17 and C++20), and
#                 each room includes only the rooms it may (check_arrows)
#   compile-fail  misuse is rejected by the intended static_assert (g++ and clang++)
#   asan          the whole suite and the examples under AddressSanitizer + UBSan
#   tsan          the whole suite (its concurrency tests included) under ThreadSanitizer
#   consumers     add_subdirectory, FetchContent and find_package-after-install projects
#   fuzz          each libFuzzer target for FUZZ_SECONDS (60), or FUZZ_RUNS executions if set
#   valgrind      the examples under valgrind memcheck: no error, no leak
#   all           every gate above, in that order
# Build trees live in build/<preset> (see CMakePresets.json); nothing outside build/ is written.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

gates=(format tidy warnings headers compile-fail asan tsan consumers fuzz valgrind)
matrix=(gcc-cxx17 gcc-cxx20 clang-cxx17 clang-cxx20)
jobs=2

say() { printf '\n== %s\n' "$*"; }

configure() { cmake --preset "$1" >/dev/null; }

workflow() {  # configure, build and run every test of one preset
  say "preset $1"
  configure "$1"
  cmake --build --preset "$1" --parallel "$jobs"
  ctest --preset "$1" --parallel "$jobs"
}

sources() {  # every C++ source of ours, tracked or new (not ignored)
  git ls-files --cached --others --exclude-standard -- '*.hpp' '*.cpp' '*.h' | sort -u |
    while read -r f; do [ -f "$f" ] && printf '%s\n' "$f"; done
}

gate_format() {
  local bad=()
  while read -r f; do
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done < <(sources)
  if [ ${#bad[@]} -gt 0 ]; then
    printf 'not clang-format clean (fix: clang-format -i FILE...):\n' >&2
    printf '  %s\n' "${bad[@]}" >&2
    return 1
  fi
  echo "format: $(sources | wc -l) files clean"
}

gate_tidy() {
  local log=build/clang-tidy.log status=0
  configure clang-cxx17  # writes compile_commands.json, with one TU per public header
  run-clang-tidy -quiet -p build/clang-cxx17 -j "$jobs" '/header_check/' >"$log" 2>&1 ||
    status=$?
  grep -v -E '^([0-9]+ warnings generated|Suppressed [0-9]+ warnings|Use -header-filter)' "$log" ||
    true
  return "$status"
}

gate_warnings() {
  local p
  for p in "${matrix[@]}"; do workflow "$p"; done
}

# Which room may include which (docs/architecture.md, "The rooms"): the core never reaches into
# the machine, the gates, the drivers or the adapters; the machine sees the gates' verdict shape
# only; the adapters never see the machine or a driver (adapters/asio.hpp is a forwarding name for
# drivers/asio.hpp).
check_arrows() {
  local bad=0 f inc room
  local front='^(fallback_chain|retrier|policies|resilient_policies|failover|format|compiled)\.hpp$'
  while read -r f; do
    room=${f#include/failover/}
    case "$room" in testing.hpp) room=testing ;; */*) room=${room%%/*} ;; *) room=top ;; esac
    while read -r inc; do
      local ok=1
      case "$room" in
        testing) ;;  # test support may use every room
        top)  # a front door, or a 0.1 path that forwards to its new home and includes nothing else
          if [[ "$(basename "$f")" =~ $front ]]; then
            [[ "$inc" =~ ^adapters/ ]] && ok=0
          elif [ "$(grep -c '^#include' "$f")" -ne 1 ] || [[ ! "$inc" =~ ^(core|machine|gates)/ ]]; then
            ok=0
          fi ;;
        core) [[ "$inc" =~ ^(core|detail)/ ]] || ok=0 ;;
        detail) [[ "$inc" =~ ^(machine|drivers|adapters|gates)/ || "$inc" =~ $front ]] && ok=0 ;;
        gates) [[ "$inc" =~ ^(machine|drivers|adapters)/ || "$inc" =~ $front ]] && ok=0 ;;
        machine) [[ "$inc" =~ ^(drivers|adapters)/ || "$inc" =~ $front ||
                    ("$inc" =~ ^gates/ && "$inc" != gates/gate.hpp) ]] && ok=0 ;;
        drivers) [[ "$inc" =~ ^adapters/ || "$inc" =~ ^(failover|format)\.hpp$ ]] && ok=0 ;;
        adapters) [[ ("$inc" =~ ^(machine|drivers)/ && "$f" != include/failover/adapters/asio.hpp) ||
                     "$inc" =~ $front ]] && ok=0 ;;
      esac
      if [ "$ok" -eq 0 ]; then
        printf '%s includes failover/%s: the %s room may not\n' "$f" "$inc" "$room" >&2
        bad=1
      fi
    done < <(grep -o '#include [<"]failover/[^>"]*' "$f" | sed 's/.*failover\///')
  done < <(git ls-files --cached --others --exclude-standard -- 'include/failover/*.hpp' | sort -u)
  [ "$bad" -eq 0 ] && echo "include arrows: every room includes only what it may"
  return "$bad"
}

gate_headers() {
  local p targets
  check_arrows
  for p in "${matrix[@]}"; do
    configure "$p"
    # failover_header_check, and one failover_header_check_* per adapter (with its library).
    targets=$(ninja -C "build/$p" -t targets all | grep -o '^failover_header_check[a-z_]*' | sort -u)
    say "preset $p: $(echo $targets)"
    # shellcheck disable=SC2086  # one word per target
    cmake --build --preset "$p" --parallel "$jobs" --target $targets
  done
}

gate_compile_fail() {
  local p
  # The warnings gate runs every test, these among them, in the same build trees: when it passed
  # earlier in this run, they passed in both, and running them again would prove nothing new.
  if [[ " ${FAILOVER_GATES_PASSED:-} " == *" warnings "* ]]; then
    echo "compile-fail: its tests passed in gcc-cxx17 and clang-cxx17 within the warnings gate"
    return 0
  fi
  for p in gcc-cxx17 clang-cxx17; do
    say "preset $p: compile-fail tests"
    configure "$p"
    ctest --preset "$p" -L compile_fail
  done
}

gate_asan() { workflow asan-ubsan; }
gate_tsan() { workflow tsan; }

gate_consumers() {
  local out="$root/build/consumers" kind
  rm -rf "$out"
  mkdir -p "$out"
  for kind in add_subdirectory fetch_content; do
    say "consumer: $kind"
    cmake -S "tests/consumers/$kind" -B "$out/$kind" -G Ninja -DFAILOVER_SOURCE_DIR="$root" >/dev/null
    cmake --build "$out/$kind" --parallel "$jobs"
    "$out/$kind/consumer"
  done
  say "consumer: find_package after cmake --install"
  cmake -S . -B "$out/library" -G Ninja -DFAILOVER_BUILD_TESTS=OFF -DFAILOVER_BUILD_EXAMPLES=OFF \
    -DFAILOVER_BUILD_BENCH=OFF -DFAILOVER_INSTALL=ON >/dev/null
  cmake --install "$out/library" --prefix "$out/prefix" >/dev/null
  cmake -S tests/consumers/find_package -B "$out/find_package" -G Ninja \
    -DCMAKE_PREFIX_PATH="$out/prefix" -DFAILOVER_PREFIX="$out/prefix" >/dev/null
  cmake --build "$out/find_package" --parallel "$jobs"
  "$out/find_package/consumer"
  "$out/find_package/consumer_separate"  # FAILOVER_SEPARATE_COMPILATION, failover/compiled.hpp
}

gate_fuzz() {
  local seconds="${FUZZ_SECONDS:-60}" runs="${FUZZ_RUNS:-}" dir=build/fuzz/fuzz name limit
  say "preset fuzz"
  configure fuzz
  cmake --build --preset fuzz --parallel "$jobs"
  # Every seed, and every input that once found a bug, first: a regression check.
  ctest --test-dir build/fuzz --output-on-failure
  if [ -n "$runs" ]; then limit="-runs=$runs"; else limit="-max_total_time=$seconds"; fi
  mkdir -p build/fuzz/artifacts
  # Each target is one process on one core: $jobs of them run at once, each for the whole time.
  local names=(retry_after classifier error_body) pids=() i i_pid status=0
  local -A failed=()
  for ((i = 0; i < ${#names[@]}; i += jobs)); do
    pids=()
    for name in "${names[@]:i:jobs}"; do
      say "fuzz $name ($limit)"
      mkdir -p "build/fuzz/corpus/$name"
      # New inputs go to build/fuzz/corpus (kept between local runs); the seeds are read only.
      "$dir/${name}_fuzzer" "$limit" -max_len=512 -print_final_stats=1 \
        -dict="fuzz/$name.dict" -artifact_prefix="build/fuzz/artifacts/$name-" \
        "build/fuzz/corpus/$name" "fuzz/corpus/$name" >"build/fuzz/$name.log" 2>&1 &
      pids+=("$!:$name")
    done
    for i_pid in "${pids[@]}"; do wait "${i_pid%%:*}" || failed[${i_pid#*:}]=1; done
  done
  for name in "${names[@]}"; do
    if [ -n "${failed[$name]:-}" ]; then
      tail -n 40 "build/fuzz/$name.log" >&2
      echo "fuzz $name failed: the input is in build/fuzz/artifacts/; reproduce with" \
        "$dir/${name}_fuzzer build/fuzz/artifacts/$name-..., then add it to fuzz/corpus/$name/" >&2
      status=1
      continue
    fi
    echo "fuzz $name:"
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
      "build/fuzz/$name.log"
  done
  return "$status"
}

gate_valgrind() {
  local example
  configure gcc-cxx17
  cmake --build --preset gcc-cxx17 --target failover_minimal failover_demo --parallel "$jobs"
  for example in failover_minimal failover-demo; do
    say "valgrind: $example"
    valgrind --tool=memcheck --error-exitcode=1 --leak-check=full --show-leak-kinds=all \
      --errors-for-leak-kinds=all --track-origins=yes --quiet \
      "build/gcc-cxx17/examples/$example" >/dev/null
    echo "$example: no errors, no leaks"
  done
}

run_gate() {
  case "$1" in
    format | tidy | warnings | headers | compile-fail | asan | tsan | consumers | fuzz | valgrind)
      "gate_${1//-/_}" ;;
    *) echo "gate.sh: unknown gate '$1' (see the usage at the top of scripts/gate.sh)" >&2; return 2 ;;
  esac
}

[ $# -gt 0 ] || { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2; }
# One gate in a process of its own, so that `set -e` stops it at its first failing step (inside an
# `if`, bash would ignore it).
if [ "$1" = --one ]; then
  run_gate "$2"
  exit
fi
[ "$*" = all ] && set -- "${gates[@]}"
scripts/setup-debian.sh all

passed=0
failed=()
export FAILOVER_GATES_PASSED=""  # the gates passed so far in this run (gate_compile_fail reads it)
for gate in "$@"; do
  start=$SECONDS
  printf '\n######## gate: %s\n' "$gate"
  if bash "$0" --one "$gate"; then
    passed=$((passed + 1))
    export FAILOVER_GATES_PASSED="${FAILOVER_GATES_PASSED:-} $gate"
    printf '######## gate %s: passed (%ds)\n' "$gate" $((SECONDS - start))
  else
    failed+=("$gate")
    printf '######## gate %s: FAILED (%ds)\n' "$gate" $((SECONDS - start))
  fi
done
echo
[ ${#failed[@]} -eq 0 ] || echo "failed gates: ${failed[*]}"
echo "gates: $passed passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
