#!/usr/bin/env bash
# cutor's benchmark: builds Release, starts the server on a free loopback port with a
# temporary data directory, measures everything bench/README.md describes, prints one
# table, stops the server and removes what it made.
#
# Usage: bench/run.sh [--quick] [--build-dir DIR] [--no-build] [--no-isolation]
#   --quick         about 2 minutes: fewer samples, shorter load phases, smaller stores
#   --build-dir D   where Release is built (default: build/release)
#   --no-build      use the binaries already in the build dir
#   --no-isolation  run the server with --no-isolation (default: isolated when the
#                   sandbox works on this host, else --no-isolation, labelled in the table)
# The table is also written to <build dir>/bench/last-table.txt.
# Only 127.0.0.1 is contacted. Every phase is bounded in count and time.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

QUICK=0
BUILD=1
BUILD_DIR=$ROOT/build/release
ISOLATION=auto
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --build-dir) BUILD_DIR=$(realpath -m "$2"); shift ;;
    --no-isolation) ISOLATION=off ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "bench: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

if ((QUICK)); then
  SEQ_N=50 LOAD_SECS=2 SB_N=100 HIT_N=30 STORE_SMALL=10000 STORE_BIG=50000 GET_N=2000
  CLIENT_COUNTS=(1 4 16 64)
else
  SEQ_N=200 LOAD_SECS=10 SB_N=500 HIT_N=200 STORE_SMALL=100000 STORE_BIG=1000000 GET_N=10000
  CLIENT_COUNTS=(1 4 16 64)
fi
WAITERS=1000
NPROC=$(nproc)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- build -------------------------------------------------------------------------------
# GCC 12 at -O3 reports false positives (-Wrestrict, -Wmaybe-uninitialized) that -Werror
# turns into errors; when the normal build fails, the targets the bench needs are built
# again with those two downgraded to warnings (said on stderr).
RELAXED_FLAGS="-Wno-error=restrict -Wno-error=maybe-uninitialized"
NEEDED_TARGETS=(cutor cutor_sandbox cutor_store cutor_model)
if ((BUILD)); then
  log "building Release into $BUILD_DIR"
  mkdir -p "$(dirname "$BUILD_DIR")"
  built=0
  if [[ -x scripts/setup.sh ]]; then
    scripts/setup.sh Release "$BUILD_DIR" >"$BUILD_DIR.bench-build.log" 2>&1 && built=1 ||
      log "scripts/setup.sh failed (log: $BUILD_DIR.bench-build.log); building only the bench's targets"
  fi
  if ((!built)); then
    cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >>"$BUILD_DIR.bench-build.log" 2>&1
    if ! cmake --build "$BUILD_DIR" --target "${NEEDED_TARGETS[@]}" >>"$BUILD_DIR.bench-build.log" 2>&1; then
      log "build failed; retrying with CMAKE_CXX_FLAGS='$RELAXED_FLAGS' (GCC 12 false positives)"
      cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_CXX_FLAGS="$RELAXED_FLAGS" >>"$BUILD_DIR.bench-build.log" 2>&1
      cmake --build "$BUILD_DIR" --target "${NEEDED_TARGETS[@]}" >>"$BUILD_DIR.bench-build.log" 2>&1 || {
        tail -30 "$BUILD_DIR.bench-build.log" >&2; exit 1; }
    fi
  fi
fi
CUTOR=$BUILD_DIR/src/cli/cutor
[[ -x $CUTOR ]] || { echo "bench: $CUTOR is missing (build first or drop --no-build)" >&2; exit 1; }

# The helper programs, rebuilt when their source, the libraries or src/'s headers are newer
# (a stale helper against a changed class layout would crash).
BIN=$BUILD_DIR/bench
mkdir -p "$BIN"
CXX=(g++ -std=c++23 -O2 -Wall -Wextra -Werror -I"$ROOT/src")
build_helper() {  # name, then what to link
  local name=$1; shift
  local src=$ROOT/bench/$name.cpp out=$BIN/$name newer=0 dep
  [[ -x $out ]] || newer=1
  for dep in "$src" "$@" "$ROOT"/src/{model,sandbox,store}/*.h; do
    [[ -f $dep && $dep -nt $out ]] && newer=1
  done
  if ((newer)); then
    log "compiling bench/$name.cpp"
    "${CXX[@]}" "$src" "$@" -lsqlite3 -lseccomp -lcrypto -pthread -o "$out"
  fi
}
build_helper loadgen
build_helper sandbox_bench "$BUILD_DIR/src/sandbox/libcutor_sandbox.a" "$BUILD_DIR/src/model/libcutor_model.a"
build_helper store_fill "$BUILD_DIR/src/store/libcutor_store.a" "$BUILD_DIR/src/model/libcutor_model.a"

# --- scratch space, server control and cleanup -------------------------------------------
WORK=$(mktemp -d /tmp/cutor-bench.XXXXXX)
SERVER_PID=
PORT=
DATA=
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
BUSY_PIDS=()
stop_busy_loops() {
  ((${#BUSY_PIDS[@]})) || return 0
  kill "${BUSY_PIDS[@]}" 2>/dev/null || true
  wait "${BUSY_PIDS[@]}" 2>/dev/null || true  # 143: killed, as meant
  BUSY_PIDS=()
}
cleanup() {
  set +e  # a failing step here must not skip the rest
  stop_busy_loops
  stop_server
  if [[ -n ${SERVER_PID_DISK:-} ]]; then SERVER_PID=$SERVER_PID_DISK; stop_server; fi
  # Workspaces may be tmpfs mounts if the server died mid-stage: detach before removing.
  awk -v w="$WORK" -v s="${SHM:-/nonexistent}" 'index($2, w) == 1 || index($2, s) == 1 {print $2}' \
    /proc/self/mounts | sort -r |
    while read -r m; do umount -l "$m"; done
  rm -rf "$WORK"
  [[ -z ${SHM:-} ]] || rm -rf "$SHM"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# start_server DATA_DIR: starts cutor serve on a fresh port and waits for /health.
start_server() {
  DATA=$1
  mkdir -p "$DATA"
  PORT=$(free_port)
  local iso=()
  [[ $MODE == isolated ]] || iso=(--no-isolation)
  "$CUTOR" serve --listen "127.0.0.1:$PORT" --data "$DATA" --workers "$NPROC" \
    --max-queue 1000000 --max-wait-ms 120000 \
    --nix-path "nixpkgs=$ROOT/tests/nixpkgs" --substituters '' --log-level warn "${iso[@]}" \
    >>"$DATA.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 300); do
    curl -fsS -m 2 "http://127.0.0.1:$PORT/api/v1/health" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench: the server did not start; last lines of $DATA.log:" >&2
  tail -20 "$DATA.log" >&2
  exit 1
}
rss_mb() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER_PID/status"; }
api() { curl -sS -m 130 -H 'Content-Type: application/json' "$@"; }

# --- the table ---------------------------------------------------------------------------
ROWS=()
# measure CMD...: its key=value line; a helper that fails says so in the row instead of
# ending the whole run (its stderr goes to the run's errors.log).
measure() {
  local out rc=0
  out=$("$@" 2>>"$WORK/errors.log") || rc=$?
  if ((rc)); then echo "errors=failed(exit-$rc)"; else echo "$out"; fi
}
row() { ROWS+=("$1|$2|$3|$4"); }  # section | measurement | figure | target
kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }  # kv KEY "k=v k=v"
fmt_lat() { echo "p50 $(kv p50_ms "$1") / p95 $(kv p95_ms "$1") / p99 $(kv p99_ms "$1") ms$(errs "$1")"; }
errs() { local e; e=$(kv errors "$1"); [[ -z $e || $e == 0 ]] || echo " ($e errors)"; }

# --- request bodies ----------------------------------------------------------------------
json_body() {  # json_body OUT then name=content pairs (content may hold newlines and quotes)
  local out=$1; shift
  /usr/bin/python3 - "$@" >"$out" <<'EOF'
import json, sys
files = []
for pair in sys.argv[1:]:
    name, _, content = pair.partition("=")
    files.append({"name": name, "content": content})
print(json.dumps({"files": files}))
EOF
}
C_HELLO='#include <stdio.h>
int main(void) { puts("hello"); return 0; }'
json_body "$WORK/echo.json" "run.sh=echo hi"
json_body "$WORK/python.json" "run.sh=python3 -c 'print(1)'"
json_body "$WORK/c.json" "main.c=$C_HELLO" "compile.sh=gcc -O0 -o hello main.c" "run.sh=./hello"
json_body "$WORK/sleep.json" "run.sh=sleep 8"
EXPECT_OK=(--expect '"result":"OK"')

# --- 1. sandbox overhead and bare baselines ----------------------------------------------
MODE=isolated
if [[ $ISOLATION == off ]]; then
  MODE=no-isolation
else
  probe=$(measure "$BIN/sandbox_bench" sandbox 3 -- /bin/true)
  if [[ $(kv errors "$probe") != 0 ]]; then
    log "the isolated sandbox does not work here ($probe; $(tail -c 300 "$WORK/errors.log" 2>/dev/null)); using --no-isolation"
    MODE=no-isolation
  fi
fi
log "mode: $MODE; sandbox overhead ($SB_N runs each)"
fork_true=$(measure "$BIN/sandbox_bench" fork "$SB_N" -- /bin/true)
row "1 sandbox" "/bin/true bare fork+exec" "$(fmt_lat "$fork_true")" ""
if [[ $MODE == isolated ]]; then
  sb=$(measure "$BIN/sandbox_bench" sandbox "$SB_N" -- /bin/true)
  row "1 sandbox" "/bin/true in cutor's isolated sandbox" "$(fmt_lat "$sb")" ""
  over=$(awk -v a="$(kv p50_ms "$sb")" -v b="$(kv p50_ms "$fork_true")" 'BEGIN{printf "%.2f", a-b}')
  row "1 sandbox" "isolated sandbox overhead (p50 - bare p50)" "$over ms" "<= 1 ms"
  od=$(measure "$BIN/sandbox_bench" sandbox-ondemand "$SB_N" -- /bin/true)
  row "1 sandbox" "/bin/true, box built on demand (no prepared box: Nix stages, first after idle)" \
    "$(fmt_lat "$od")" ""
fi
plain=$(measure "$BIN/sandbox_bench" plain "$SB_N" -- /bin/true)
row "1 sandbox" "/bin/true in cutor's plain (--no-isolation) runner" "$(fmt_lat "$plain")" ""
if command -v bwrap >/dev/null; then
  bw=$(measure "$BIN/sandbox_bench" bwrap "$SB_N" -- /bin/true)
  row "1 sandbox" "/bin/true via bwrap --unshare-all, same mounts" "$(fmt_lat "$bw")" ""
else
  row "1 sandbox" "bwrap" "not available" ""
fi
# Docker, only where an engine already runs: the bench does not start one, because on a
# host whose cgroup controllers are v1 (this VM) every container would get cgroups made at
# the roots of the pids, cpu, cpuacct, blkio, devices and freezer hierarchies. The image is
# a static busybox imported from a tar (no registry needed), made once and kept.
DOCKER_IMAGE=cutor-bench-busybox:1
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  if ! docker image inspect "$DOCKER_IMAGE" >/dev/null 2>&1 && [[ -x /bin/busybox ]]; then
    mkdir -p "$WORK/rootfs/bin"
    cp /bin/busybox "$WORK/rootfs/bin/busybox"
    ln -s busybox "$WORK/rootfs/bin/true"
    tar -C "$WORK/rootfs" -c . | docker import - "$DOCKER_IMAGE" >/dev/null 2>>"$WORK/errors.log" || true
  fi
  if docker image inspect "$DOCKER_IMAGE" >/dev/null 2>&1; then
    DOCKER_N=$(( QUICK ? 10 : 40 ))
    times=()
    for _ in $(seq "$DOCKER_N"); do
      t0=$(date +%s%N)
      docker run --rm --network none "$DOCKER_IMAGE" /bin/true >/dev/null 2>>"$WORK/errors.log" || break
      times+=($(( $(date +%s%N) - t0 )))
    done
    if (( ${#times[@]} == DOCKER_N )); then
      row "1 sandbox" "/bin/true via docker run --rm --network none (static busybox image, n=$DOCKER_N)" \
        "$(printf '%s\n' "${times[@]}" | sort -n | awk '{v[NR]=$1} END {
          printf "p50 %.3f / p95 %.3f ms", v[int((NR+1)/2)]/1e6, v[int(NR*0.95+0.5)]/1e6}')" ""
    else
      row "1 sandbox" "docker run --rm --network none" "failed (docker run exited non-zero)" ""
    fi
  else
    row "1 sandbox" "docker run --rm --network none" "no image (needs /bin/busybox: busybox-static)" ""
  fi
else
  row "1 sandbox" "docker run --rm --network none" \
    "not run: no Docker engine running (the bench starts none; bench/README.md says why)" ""
fi

log "bare baselines"
b_sh=$(measure "$BIN/sandbox_bench" fork "$SEQ_N" -- /bin/sh -c 'echo hi')
row "5 baseline" "sh -c 'echo hi', bare fork+exec" "$(fmt_lat "$b_sh")" ""
b_py=$(measure "$BIN/sandbox_bench" fork "$SEQ_N" -- /usr/bin/python3 -c 'print(1)')
row "5 baseline" "python3 -c 'print(1)', bare" "$(fmt_lat "$b_py")" ""
mkdir -p "$WORK/cbare"
printf '%s\n' "$C_HELLO" >"$WORK/cbare/main.c"
b_c=$(measure "$BIN/sandbox_bench" fork "$((SEQ_N / 4))" -- /bin/sh -c \
  "cd $WORK/cbare && gcc -O0 -o hello main.c && ./hello")
row "5 baseline" "gcc hello.c && ./hello, bare" "$(fmt_lat "$b_c")" ""

# --- 2. end to end over HTTP -------------------------------------------------------------
start_server "$WORK/data-e2e"
sleep 0.5
row "4 memory" "server RSS idle, fresh start" "$(rss_mb) MB" "<= 20 MB"
# The first request pays one-off costs (page faults, prepared statements); not counted.
"$BIN/loadgen" post --port "$PORT" --body "$WORK/echo.json" --count 3 "${EXPECT_OK[@]}" >/dev/null 2>>"$WORK/errors.log" || true
LG=("$BIN/loadgen")
for w in echo python c; do
  case $w in
    echo) label="run.sh echo hi"; expect=(--expect '"stdout":"hi\n"'); target_seq="p50 <= 3 ms"; target_tp=">= 500/s" ;;
    python) label="python3 -c 'print(1)'"; expect=(--expect '"stdout":"1\n"')
      target_seq="p50 <= bare + 2 ms ($(awk -v b="$(kv p50_ms "$b_py")" 'BEGIN{printf "%.1f", b+2}') ms)"; target_tp="" ;;
    c) label="C hello (gcc + run)"; expect=(--expect '"stdout":"hello\n"'); target_seq=""; target_tp="" ;;
  esac
  n=$SEQ_N
  [[ $w == c ]] && n=$((SEQ_N < 200 ? SEQ_N : 200))
  log "e2e $label: $n sequential"
  r=$(measure "${LG[@]}" post --port "$PORT" --body "$WORK/$w.json" --clients 1 --count "$n" "${EXPECT_OK[@]}" "${expect[@]}")
  row "2 http" "$label, sequential POST ?wait=true (n=$(kv ops "$r"))" "$(fmt_lat "$r")" "$target_seq"
  for c in "${CLIENT_COUNTS[@]}"; do
    log "e2e $label: $c clients for ${LOAD_SECS}s"
    r=$(measure "${LG[@]}" post --port "$PORT" --body "$WORK/$w.json" --clients "$c" --seconds "$LOAD_SECS" "${EXPECT_OK[@]}" "${expect[@]}")
    row "2 http" "$label, $c clients x ${LOAD_SECS}s" "$(kv rps "$r")/s, $(fmt_lat "$r")" "$([[ $c == 64 ]] && echo "$target_tp")"
  done
done
log "e2e async pattern"
r=$(measure "${LG[@]}" post --async --port "$PORT" --body "$WORK/echo.json" --clients 1 --count "$SEQ_N" "${EXPECT_OK[@]}")
row "2 http" "echo hi async: POST then GET ?wait=true, sequential" "$(fmt_lat "$r")" ""
r=$(measure "${LG[@]}" post --async --port "$PORT" --body "$WORK/echo.json" --clients 16 --seconds "$LOAD_SECS" "${EXPECT_OK[@]}")
row "2 http" "echo hi async, 16 clients x ${LOAD_SECS}s" "$(kv rps "$r")/s, $(fmt_lat "$r")" ""

# The same echo hi with the data directory on tmpfs, where fsync costs nothing: the gap to
# the first row is what the store's durable commits cost per submission.
SHM=$(mktemp -d /dev/shm/cutor-bench.XXXXXX)
SERVER_PID_DISK=$SERVER_PID PORT_DISK=$PORT DATA_DISK=$DATA
SERVER_PID=
start_server "$SHM/data"
log "e2e echo hi with the data dir on tmpfs"
"${LG[@]}" post --port "$PORT" --body "$WORK/echo.json" --count 3 >/dev/null 2>>"$WORK/errors.log" || true
r=$(measure "${LG[@]}" post --port "$PORT" --body "$WORK/echo.json" --clients 1 --count "$SEQ_N" "${EXPECT_OK[@]}")
r2=$(measure "${LG[@]}" post --port "$PORT" --body "$WORK/echo.json" --clients 1 --count "$SEQ_N" "${EXPECT_OK[@]}")
stop_server
SERVER_PID=$SERVER_PID_DISK PORT=$PORT_DISK DATA=$DATA_DISK
SERVER_PID_DISK=
r3=$(measure "${LG[@]}" post --port "$PORT" --body "$WORK/echo.json" --clients 1 --count "$SEQ_N" "${EXPECT_OK[@]}")
row "2 http" "echo hi sequential, data dir on tmpfs (no fsync cost), twice" "$(fmt_lat "$r"); again p50 $(kv p50_ms "$r2") ms" ""
row "2 http" "echo hi sequential, data dir on disk, right after" "$(fmt_lat "$r3")" ""

# A busy host: one busy loop per cpu at nice 0 (what other submissions' cpu-bound programs
# are to a stage), and bare fork+exec under the same loops beside it.
log "e2e echo hi on a busy host ($(nproc) busy loops)"
for _ in $(seq "$(nproc)"); do
  /bin/sh -c 'while :; do :; done' &
  BUSY_PIDS+=($!)
done
sleep 0.3
b_busy=$(measure "$BIN/sandbox_bench" fork "$SEQ_N" -- /bin/sh -c 'echo hi')
r=$(measure "${LG[@]}" post --port "$PORT" --body "$WORK/echo.json" --clients 1 --count "$SEQ_N" "${EXPECT_OK[@]}")
stop_busy_loops
row "2 http" "busy host: echo hi sequential, $(nproc) busy loops running" "$(fmt_lat "$r"), max $(kv max_ms "$r") ms" ""
row "5 baseline" "busy host: sh -c 'echo hi', bare fork+exec, same loops" "$(fmt_lat "$b_busy")" ""

# --- 3. environment cache ----------------------------------------------------------------
nix_body() {  # nix_body OUT TAG: a cutor.nix unique to TAG, with bash on PATH, running echo hi
  local nix="{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ pkgs.bash ]; } # $2"
  json_body "$1" "cutor.nix=$nix" "run.sh=echo hi"
}
tag="bench-$(date +%s%N)"
nix_body "$WORK/nix-hit.json" "$tag-a"
log "env cache: cold build"
r=$(measure "${LG[@]}" post --port "$PORT" --body "$WORK/nix-hit.json" --count 1 "${EXPECT_OK[@]}")
if [[ $(kv ops "$r") == 1 ]]; then
  row "3 env cache" "cold build of a new cutor.nix, one submission end to end" "$(kv p50_ms "$r") ms" ""
  log "env cache: $HIT_N hits, and as many without cutor.nix right before for comparison"
  plain_echo=$(measure "${LG[@]}" post --port "$PORT" --body "$WORK/echo.json" --count "$HIT_N" "${EXPECT_OK[@]}")
  r=$(measure "${LG[@]}" post --port "$PORT" --body "$WORK/nix-hit.json" --count "$HIT_N" "${EXPECT_OK[@]}")
  row "3 env cache" "echo hi with a cached cutor.nix, sequential (n=$(kv ops "$r"))" "$(fmt_lat "$r")" ""
  row "3 env cache" "cache hit end to end: p50 minus echo hi without cutor.nix just before" \
    "$(awk -v a="$(kv p50_ms "$r")" -v b="$(kv p50_ms "$plain_echo")" 'BEGIN{printf "%.2f", a-b}') ms" ""
  # The environment stage's own time, as the server reports it.
  env_ms=$(/usr/bin/python3 - "$PORT" "$WORK/nix-hit.json" <<'EOF'
import json, statistics, sys, urllib.request
port, body = sys.argv[1], open(sys.argv[2], "rb").read()
times = []
for _ in range(20):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/submissions?wait=true", body,
                                 {"Content-Type": "application/json"})
    sub = json.load(urllib.request.urlopen(req, timeout=120))
    times.append(sub["environment"]["time"] * 1000)
print(f"{statistics.median(times):.3f}")
EOF
  )
  row "3 env cache" "cache hit: environment stage time (server-measured, median of 20)" "$env_ms ms" "<= 0.5 ms"
  nix_body "$WORK/nix-cold20.json" "$tag-b"
  log "env cache: 20 concurrent identical cold submissions"
  r=$(measure "${LG[@]}" post --port "$PORT" --body "$WORK/nix-cold20.json" --clients 20 --count 20 \
    --watch-cmdline print-dev-env "${EXPECT_OK[@]}")
  uses=$(api "http://127.0.0.1:$PORT/api/v1/dependencies" | /usr/bin/python3 -c '
import json, sys
deps = json.load(sys.stdin)["dependencies"]
uses = ", ".join(str(d.get("use_count")) for d in deps)
print(f"{len(deps)} entries, use_count: {uses}")')
  row "3 env cache" "20 concurrent identical cold submissions" \
    "$(kv ops "$r") OK, slowest $(kv max_ms "$r") ms, nix print-dev-env processes seen: $(kv watched "$r")$(errs "$r")" "1 build"
  row "3 env cache" "GET /dependencies after the cache runs" "$uses" ""
else
  row "3 env cache" "cold build" "failed (see the notes below the table)" ""
fi

# --- 4. memory: idle after load and 1,000 long-poll waiters ------------------------------
sleep 1
row "4 memory" "server RSS idle, after the load above" "$(rss_mb) MB" ""
sleep_id=$(api -X POST --data-binary @"$WORK/sleep.json" "http://127.0.0.1:$PORT/api/v1/submissions" |
  /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
log "memory: $WAITERS long-poll waiters on $sleep_id"
r=$(measure "${LG[@]}" waiters --port "$PORT" --id "$sleep_id" --clients "$WAITERS" --pid "$SERVER_PID" --settle-ms 2000)
row "4 memory" "server RSS with $(kv waiters "$r") GET ?wait=true waiters (early answers: $(kv answered_early "$r"), failed: $(kv connect_failed "$r"))" \
  "$(awk -v k="$(kv rss_with_kb "$r")" 'BEGIN{printf "%.1f", k/1024}') MB" "<= 100 MB"
api -X DELETE "http://127.0.0.1:$PORT/api/v1/submissions/$sleep_id" >/dev/null || true
stop_server

# --- 4. store size: 100,000 and 1,000,000 stored submissions -----------------------------
STORE=$WORK/data-store
mkdir -p "$STORE"
log "store: filling $STORE_SMALL submissions through the store library"
fill=$(measure "$BIN/store_fill" "$STORE/cutor.db" "$STORE_SMALL" "$WORK/ids-small")
start_server "$STORE"
"${LG[@]}" get --port "$PORT" --ids "$WORK/ids-small" --count 2000 >/dev/null 2>>"$WORK/errors.log" || true
r=$(measure "${LG[@]}" get --port "$PORT" --ids "$WORK/ids-small" --clients 1 --count "$GET_N")
row "4 store" "GET /submissions/{id}, $STORE_SMALL stored, sequential" "$(fmt_lat "$r")" ""
row "4 memory" "server RSS after 2,000+$GET_N GETs with $STORE_SMALL stored" "$(rss_mb) MB" ""
stop_server
more=$((STORE_BIG - STORE_SMALL))
log "store: adding $more submissions (fill rate: $(kv rows_per_s "$fill") rows/s)"
"$BIN/store_fill" "$STORE/cutor.db" "$more" "$WORK/ids-big" >/dev/null 2>>"$WORK/errors.log" || true
cat "$WORK/ids-small" >>"$WORK/ids-big"
start_server "$STORE"
"${LG[@]}" get --port "$PORT" --ids "$WORK/ids-big" --count 2000 >/dev/null 2>>"$WORK/errors.log" || true
r=$(measure "${LG[@]}" get --port "$PORT" --ids "$WORK/ids-big" --clients 1 --count "$GET_N")
row "4 store" "GET /submissions/{id}, $STORE_BIG stored, sequential (n=$(kv ops "$r"))" "$(fmt_lat "$r")" "p99 <= 2 ms"
r=$(measure "${LG[@]}" get --port "$PORT" --ids "$WORK/ids-big" --clients 16 --seconds "$LOAD_SECS")
row "4 store" "GET /submissions/{id}, $STORE_BIG stored, 16 clients" "$(kv rps "$r")/s, $(fmt_lat "$r")" ""
row "4 memory" "server RSS with $STORE_BIG stored, after the GETs" "$(rss_mb) MB" ""
row "4 store" "store_fill rate (synchronous_full=false)" "$(kv rows_per_s "$fill") submissions/s" ""
stop_server

# --- print -------------------------------------------------------------------------------
TABLE=$BIN/last-table.txt
{
  echo "cutor bench, $(date -u '+%Y-%m-%d %H:%M UTC'), mode: $MODE$( ((QUICK)) && echo ', --quick')"
  echo "machine: $NPROC cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), kernel $(uname -r), workers $NPROC"
  echo "load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the host skews every figure)"
  echo
  printf '| %s | %s | %s | %s |\n' section measurement result target
  printf '| --- | --- | --- | --- |\n'
  for r in "${ROWS[@]}"; do
    IFS='|' read -r a b c d <<<"$r"
    printf '| %s | %s | %s | %s |\n' "$a" "$b" "$c" "$d"
  done
  if [[ -s $WORK/errors.log ]]; then
    echo
    echo "notes (stderr of the helpers; the first error of each failing phase):"
    sed 's/^/    /' "$WORK/errors.log" | cut -c1-400
  fi
} | tee "$TABLE"
