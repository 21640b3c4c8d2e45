#!/usr/bin/env bash
# Installs what failover needs on Debian 12, and only what is missing.
# Usage: scripts/setup-debian.sh [demo|all] [extra-package ...]
#   demo: enough to build and run the demo;  all (default): everything the full test run uses.
set -euo pipefail

profile="${1:-all}"
[ $# -gt 0 ] && shift
demo=(cmake ninja-build g++ pkg-config libfmt-dev libcpp-httplib-dev nlohmann-json3-dev)
all=("${demo[@]}" catch2 clang clang-format clang-tidy libclang-rt-14-dev llvm valgrind
     libcurl4-openssl-dev libbenchmark-dev libasio-dev)
case "$profile" in
  demo) packages=("${demo[@]}") ;;
  all) packages=("${all[@]}") ;;
  *) echo "setup-debian.sh: unknown profile '$profile' (use demo or all)" >&2; exit 2 ;;
esac
packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
