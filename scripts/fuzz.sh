#!/usr/bin/env bash
# Builds the libFuzzer target over request parsing and validation (tests/fuzz, issue 6)
# with clang-19 under ASan+UBSan in build/fuzz, and runs it for SECONDS (default 60) over
# a fresh copy of tests/fuzz/corpus with tests/fuzz/request.dict. Fails (exit 1) on any
# crash, broken property (abort), leak, sanitizer report, timeout or out-of-memory.
# Installs clang-19 and libclang-rt-19-dev when missing (as root, with apt-get); the rest
# of the toolchain comes from scripts/setup.sh.
#
#   scripts/fuzz.sh                  # CI: 60 s
#   scripts/fuzz.sh 600              # the documented 10-minute run
#   scripts/fuzz.sh 600 -seed=7      # extra arguments go to libFuzzer
#
# Everything it writes stays in build/fuzz: the binary (tests/fuzz/fuzz_request), the
# working corpus (corpus/, replaced on each run), crash/leak/timeout/oom inputs
# (artifacts/) and the full log (fuzz.log). Replay one input:
#   build/fuzz/tests/fuzz/fuzz_request build/fuzz/artifacts/crash-<sha1>
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TO_RUN=${1:-60}
shift $(($# > 0 ? 1 : 0))
if ! [[ $SECONDS_TO_RUN =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz: SECONDS must be a positive integer, not '$SECONDS_TO_RUN'" >&2
  exit 2
fi

PACKAGES=(clang-19 libclang-rt-19-dev)
scripts/install-packages.sh fuzz "${PACKAGES[@]}"

BUILD_DIR=build/fuzz
# -O1 keeps the fuzzer fast while Debug keeps assertions (Boost's included) on.
echo "fuzz: configuring $BUILD_DIR (clang-19, -fsanitize=fuzzer,address,undefined)"
CC=clang-19 CXX=clang++-19 cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" -DCUTOR_LIBFUZZER=ON >/dev/null
cmake --build "$BUILD_DIR" --target fuzz_request

FUZZER=$BUILD_DIR/tests/fuzz/fuzz_request
CORPUS=$BUILD_DIR/corpus
ARTIFACTS=$BUILD_DIR/artifacts
LOG=$BUILD_DIR/fuzz.log
# A fresh copy each run: new inputs land in the build dir, never in tests/fuzz/corpus.
rm -rf "$CORPUS"
mkdir -p "$CORPUS" "$ARTIFACTS"
cp tests/fuzz/corpus/* "$CORPUS"/

# -max_len: the server's 16 KiB header limit plus a body, so header overflows are
# reachable; the largest corpus input is 10 KB. -timeout: one input taking 10 s is a hang.
# halt_on_error: the first sanitizer report ends the run with an artifact.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Sanitizer stacks name functions and lines only with an llvm-symbolizer, which the
# runtime does not find on its own here; any version will do (Debian has llvm-14's).
if [[ -z ${ASAN_SYMBOLIZER_PATH:-} ]]; then
  for s in llvm-symbolizer-19 llvm-symbolizer; do
    if command -v "$s" >/dev/null; then
      ASAN_SYMBOLIZER_PATH=$(command -v "$s")
      export ASAN_SYMBOLIZER_PATH
      break
    fi
  done
fi
echo "fuzz: running $FUZZER for ${SECONDS_TO_RUN}s (full log: $LOG)"
status=0
# The outer timeout only backs up -max_total_time should the fuzzer wedge outside an input.
timeout --signal=KILL $((SECONDS_TO_RUN + 120)) "$FUZZER" \
  -max_total_time="$SECONDS_TO_RUN" -max_len=20480 -timeout=10 -rss_limit_mb=2048 \
  -dict=tests/fuzz/request.dict -artifact_prefix="$ARTIFACTS/" -print_final_stats=1 \
  "$@" "$CORPUS" >"$LOG" 2>&1 || status=$?
grep -E "INFO: Seed:|INITED|DONE|stat::number_of_executed_units|stat::peak_rss_mb" "$LOG" || true

# libFuzzer exits non-zero on every finding; the grep also catches a report that did
# not end the process (e.g. if someone passes halt_on_error=0).
if ((status != 0)) ||
  grep -qE "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY: " "$LOG"; then
  echo "fuzz: FAILED (fuzzer exit status $status); the report:" >&2
  grep -n -m1 -E "==[0-9]+==ERROR|runtime error:|property broken|ALARM|out-of-memory" "$LOG" \
    | sed 's/^/  /' >&2 || true
  tail -n 60 "$LOG" >&2
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$LOG" | tail -n 1)
  if [[ -n $artifact ]]; then
    echo "fuzz: the failing input: $artifact; replay it with: $FUZZER $artifact" >&2
  else
    echo "fuzz: no input was written (a failure outside one input?); see $LOG" >&2
  fi
  exit 1
fi
echo "fuzz: OK: no crash, leak or sanitizer report in ${SECONDS_TO_RUN}s"
