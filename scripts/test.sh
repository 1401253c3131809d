#!/usr/bin/env bash
# Installs what is missing, builds and runs the whole test suite on a Debug build
# (warnings as errors): unit tests (GoogleTest), end-to-end tests through the real binary
# over real HTTP (pytest) and the fuzz target's replay, all through ctest. Then the whole
# suite again on a build under AddressSanitizer + UBSan (build type Asan): any report fails
# it (see "Sanitizers" in tests/README.md). The Debug pass runs first: a plain failure shows
# up there sooner and without sanitizer noise. Last, the libFuzzer target over request
# parsing and validation runs for 60 s (scripts/fuzz.sh: clang-19, ASan+UBSan), and the
# unit tests run once more under ThreadSanitizer (build type Tsan; any report fails them).
# Needs root: the sandbox uses namespaces, mounts and cgroups; Nix runs without a daemon.
#   CUTOR_SKIP_ASAN=1 scripts/test.sh            # the Debug pass only (CI runs both)
#   CUTOR_ASAN_UNIT_ONLY=1 scripts/test.sh       # ASan pass without the end-to-end tests
#   CUTOR_SKIP_FUZZ=1 scripts/test.sh            # without the libFuzzer run
#   CUTOR_SKIP_TSAN=1 scripts/test.sh            # without the ThreadSanitizer pass
#   scripts/test.sh -R integration.test_flow     # extra arguments go to ctest
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
  # The end-to-end tests stretch their bounds on cutor's own speed by this factor (the
  # server runs 2-3x slower instrumented); the limits they check stay exact.
  export CUTOR_TEST_SLOWDOWN=${CUTOR_TEST_SLOWDOWN:-3}
  if [[ ${CUTOR_ASAN_UNIT_ONLY:-0} == 1 ]]; then
    run_suite Asan "$root/build/asan" -LE integration "$@"
  else
    run_suite Asan "$root/build/asan" "$@"
  fi
fi
if [[ ${CUTOR_SKIP_FUZZ:-0} != 1 ]]; then
  echo "== libFuzzer run (scripts/fuzz.sh 60)"
  scripts/fuzz.sh 60
fi
if [[ ${CUTOR_SKIP_TSAN:-0} != 1 ]]; then
  echo "== ThreadSanitizer build in build/tsan (unit tests)"
  cmake -S . -B "$root/build/tsan" -G Ninja -DCMAKE_BUILD_TYPE=Tsan >/dev/null
  cmake --build "$root/build/tsan"
  echo "== ThreadSanitizer unit tests"
  # Three tests count the processes of a box or expect a forked test child to die by a
  # signal; TSan's runtime adds a process / exits a fork of a threaded program itself. They
  # test no threading and run in the passes above.
  (cd "$root/build/tsan" &&
    TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:exitcode=66:second_deadlock_stack=1} \
      ctest --output-on-failure --timeout 900 -j "$(nproc)" -L unit \
      -E '(StartBoxGivesTheThreadItsPidNamespaceBack|ProcShowsOnlyTheBox|HeartbeatsKeepALiveLeaseAndAKilledWorkersIsRequeued)$' "$@")
fi
