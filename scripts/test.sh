#!/usr/bin/env bash
# Builds failover with its tests, examples and checks, and runs the whole test suite.
# Installs missing Debian packages first. Build tree: build/test (override with BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh all
build="${BUILD_DIR:-build/test}"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFAILOVER_WERROR=ON
cmake --build "$build" --parallel 2
ctest --test-dir "$build" --output-on-failure --parallel 2
