#!/usr/bin/env bash
# Installs what is missing, builds Release, and starts `cutor serve` on 127.0.0.1:8080
# with the SQLite store under ./cutor-data. Logs: ./cutor-data/cutor.log. Stop: scripts/stop.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh Release build/release
mkdir -p cutor-data
if [[ -f cutor-data/cutor.pid ]] && kill -0 "$(cat cutor-data/cutor.pid)" 2>/dev/null; then
  echo "cutor is already running (pid $(cat cutor-data/cutor.pid))"; exit 0
fi
nohup build/release/src/cli/cutor serve --listen 127.0.0.1:8080 --data ./cutor-data \
  >>cutor-data/cutor.log 2>&1 &
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
