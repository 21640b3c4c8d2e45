#!/usr/bin/env bash
# Builds and runs the demo: a simulated flaky provider, in process and without network, showing
# retries with backoff, a server-requested wait, fallbacks and the printed trace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh demo
build="${BUILD_DIR:-build/demo}"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFAILOVER_BUILD_TESTS=OFF \
  -DFAILOVER_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target failover_demo >/dev/null
"$build/examples/failover-demo"
