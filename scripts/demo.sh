#!/usr/bin/env bash
# Builds and runs the demo: failover-chat against its embedded mock provider (real HTTP on
# 127.0.0.1, no key, no network), showing a 429 with Retry-After, a 503, a retry that succeeds and
# a fallback, each with its printed trace. Extra arguments go to failover-chat (e.g. --trace-json).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh demo
build="${BUILD_DIR:-build/demo}"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFAILOVER_BUILD_TESTS=OFF \
  -DFAILOVER_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target failover_chat >/dev/null
"$build/examples/chat/failover-chat" "$@"
