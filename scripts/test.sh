#!/usr/bin/env bash
# Installs what is missing, builds (Debug, warnings as errors) and runs the whole test
# suite: unit tests and the end-to-end tests through the real binary over real HTTP.
# Needs root (the sandbox uses namespaces, mounts and cgroups; Nix runs without a daemon).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${CUTOR_TEST_BUILD_DIR:-build/debug}
scripts/setup.sh Debug "$BUILD_DIR"
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 900 -j "$(nproc)" "$@"
