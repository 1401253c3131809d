#!/usr/bin/env bash
# Installs what is missing, builds and runs the whole test suite on a Debug build
# (warnings as errors): unit tests (GoogleTest), end-to-end tests through the real binary
# over real HTTP (pytest) and the fuzz target's replay, all through ctest. Then a build
# under AddressSanitizer + UBSan (build type Asan) runs the unit and fuzz tests again.
# The end-to-end suite under ASan (CUTOR_ASAN_INTEGRATION=1) is not part of CI yet: under
# load, about one run in three sees a stage hang until its wall limit (see tests/README.md).
# Needs root: the sandbox uses namespaces, mounts and cgroups; Nix runs without a daemon.
#   CUTOR_SKIP_ASAN=1 scripts/test.sh      # the Debug pass only (CI runs both)
#   CUTOR_ASAN_INTEGRATION=1 scripts/test.sh   # the end-to-end suite under ASan too
#   scripts/test.sh -R integration.test_flow   # extra arguments go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

run_suite() {  # BUILD_TYPE BUILD_DIR [ctest args...]
  local type=$1 dir=$2
  shift 2
  echo "== $type build in $dir"
  scripts/setup.sh "$type" "$dir"
  echo "== $type tests"
  (cd "$dir" && ctest --output-on-failure --timeout 900 -j "$(nproc)" "$@")
}

run_suite Debug "$root/build/debug" "$@"
if [[ ${CUTOR_SKIP_ASAN:-0} != 1 ]]; then
  # Sanitizer reports fail the run: the tests check every server's stderr for them, and
  # halt_on_error makes a unit test that trips one exit non-zero.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  if [[ ${CUTOR_ASAN_INTEGRATION:-0} == 1 ]]; then
    run_suite Asan "$root/build/asan" "$@"
  else
    run_suite Asan "$root/build/asan" -LE integration "$@"
  fi
fi
