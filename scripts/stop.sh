#!/usr/bin/env bash
# Stops the server started by scripts/start.sh (SIGTERM: graceful).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f cutor-data/cutor.pid ]] || { echo "not running"; exit 0; }
pid=$(cat cutor-data/cutor.pid)
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
rm -f cutor-data/cutor.pid
echo "stopped"
