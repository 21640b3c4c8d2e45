#!/usr/bin/env bash
# The timing-dependent tests on a loaded machine: the integration tests (real HTTP on 127.0.0.1,
# failover-chat end to end) and the concurrency tests, N times under every sanitizer preset while
# a CPU hog runs on every core. Every run must pass; a user's first test run is often on a busy
# machine.
#
# Usage: scripts/soak.sh [N]     N runs per preset (default 5)
#   SOAK_PRESETS="asan-ubsan tsan"   the presets (default: every sanitizer preset)
#   SOAK_HOGS=K                      busy processes during the runs (default: one per core)
# Builds first (without the hog), then runs; the log is build/soak.log. Build trees: build/<preset>.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-5}"
case "$runs" in
  '' | *[!0-9]* | 0) echo "soak.sh: N must be a positive whole number, not '$runs'" >&2; exit 2 ;;
esac
read -r -a presets <<<"${SOAK_PRESETS:-asan-ubsan tsan}"
hogs="${SOAK_HOGS:-$(nproc)}"
jobs=2
tests='^(adapters:|integration:|failover_concurrency_tests:)'  # catch_discover_tests drops the prefix's trailing space
log=build/soak.log

scripts/setup-debian.sh all
mkdir -p build
: >"$log"

for p in "${presets[@]}"; do
  printf '== build %s\n' "$p"
  cmake --preset "$p" >/dev/null
  targets=$(ninja -C "build/$p" -t targets all |
    grep -o -E '^(failover_concurrency_tests|failover_adapter_tests|failover_integration_tests|failover_integration_cli_tests|failover_transport_tests|failover_process_tests):' |
    tr -d : | sort -u)
  # shellcheck disable=SC2086  # one word per target
  cmake --build --preset "$p" --parallel "$jobs" --target $targets
done

hog_pids=()
stop_hogs() {
  local pid
  for pid in "${hog_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  hog_pids=()
}
trap stop_hogs EXIT
for _ in $(seq "$hogs"); do
  yes >/dev/null &
  hog_pids+=($!)
done

start=$SECONDS
passed=0
failed=()
for run in $(seq "$runs"); do
  for p in "${presets[@]}"; do
    printf '== run %d/%d, %s, %d hogs\n' "$run" "$runs" "$p" "$hogs" | tee -a "$log"
    if ctest --preset "$p" -R "$tests" --parallel "$jobs" >>"$log" 2>&1; then
      passed=$((passed + 1))
      tail -n 3 "$log" | grep -E 'tests passed' || true
    else
      failed+=("run $run $p")
      grep -E '^\s+[0-9]+ - ' "$log" | tail -n 20 >&2 || true
    fi
  done
done
stop_hogs

total=$((runs * ${#presets[@]}))
summary="soak: $passed of $total runs passed ($runs per preset: ${presets[*]}; $hogs CPU hogs on $(nproc) cores; $((SECONDS - start)) s)"
echo "$summary" | tee -a "$log"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'failed: %s\n' "${failed[@]}" | tee -a "$log" >&2
  echo "the failing tests' output is in $log" >&2
  exit 1
fi
