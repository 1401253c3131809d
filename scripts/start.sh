#!/usr/bin/env bash
# Installs what is missing, builds Release, and starts `cutor serve` on 127.0.0.1:8080
# with the SQLite store under ./cutor-data. Logs: ./cutor-data/cutor.log. Stop: scripts/stop.sh
# Environment: NIX_PATH (nixpkgs for cutor.nix; default: tests/nixpkgs, offline),
# CUTOR_SUBSTITUTERS (Nix substituters; default: none without NIX_PATH, Nix's own with it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh Release build/release
mkdir -p cutor-data
if [[ -f cutor-data/cutor.pid ]] && kill -0 "$(cat cutor-data/cutor.pid)" 2>/dev/null; then
  echo "cutor is already running (pid $(cat cutor-data/cutor.pid))"; exit 0
fi
# cutor.nix is evaluated against $NIX_PATH (production: a pinned nixpkgs). Without one,
# the offline test channel, and no substituters (no binary cache to wait on): docs/nix.md.
nix_args=()
if [[ -z ${NIX_PATH:-} ]]; then
  nix_args=(--nix-path "nixpkgs=$PWD/tests/nixpkgs" --substituters "${CUTOR_SUBSTITUTERS-}")
  echo "start: NIX_PATH is not set: cutor.nix uses the offline test channel tests/nixpkgs"
elif [[ -n ${CUTOR_SUBSTITUTERS+set} ]]; then
  nix_args=(--substituters "$CUTOR_SUBSTITUTERS")
fi
nohup build/release/src/cli/cutor serve --listen 127.0.0.1:8080 --data ./cutor-data \
  "${nix_args[@]}" >>cutor-data/cutor.log 2>&1 &
echo $! > cutor-data/cutor.pid
for _ in $(seq 100); do
  if curl -fsS http://127.0.0.1:8080/api/v1/health >/dev/null 2>&1; then
    echo "cutor is serving on http://127.0.0.1:8080 (pid $(cat cutor-data/cutor.pid), log cutor-data/cutor.log)"
    exit 0
  fi
  kill -0 "$(cat cutor-data/cutor.pid)" 2>/dev/null || break
  sleep 0.1
done
echo "cutor did not start; last lines of cutor-data/cutor.log:" >&2
tail -20 cutor-data/cutor.log >&2
exit 1
