#!/usr/bin/env bash
# Stops the xregion processes that scripts/up.sh started (SIGTERM: they
# flush Kafka and confirm their slot position before exiting); with --stack,
# also stops PostgreSQL and Kafka (data kept).  Idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${XR_STATE_DIR:-$ROOT/.stack}"

case ${1:-} in
  -h|--help) echo "Usage: scripts/down.sh [--stack]"; exit 0 ;;
esac

for pidf in "$STATE"/xregion/*.pid; do
  [[ -f $pidf ]] || continue
  r=$(basename "$pidf" .pid)
  pid=$(cat "$pidf")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "[down] region $r: xregion (pid $pid) did not stop in 60 s" >&2
      exit 1
    fi
    echo "[down] region $r: xregion stopped"
  fi
  rm -f "$pidf"
done
if [[ ${1:-} == --stack ]]; then
  "$ROOT/scripts/stack.sh" down
fi
