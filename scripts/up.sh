#!/usr/bin/env bash
# Command 1 of the README: installs what is missing, builds xregion, brings
# up the local three-region stack (PostgreSQL 15 per region, Kafka 4.x in
# KRaft mode), creates the sample schema in every region, runs
# `xregion setup` and starts xregion in every region.  Idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${XR_STATE_DIR:-$ROOT/.stack}"
BUILD="${XR_BUILD_DIR:-$ROOT/build}"
REGIONS=(us eu apac)
PORTS=(15432 15433 15434)

usage() {
  cat <<USAGE
Usage: scripts/up.sh [--no-install] [--no-start]

  1. scripts/install-deps.sh (apt packages, Kafka jars, test venv)
  2. cmake configure + build into $BUILD
  3. scripts/stack.sh up (PostgreSQL us/eu/apac on 15432-15434, Kafka 19092)
  4. scripts/sample-schema.sql in every region's "app" database
  5. xregion setup -c config/<region>.yaml for every region
  6. starts 'xregion run' (producer + consumer) for every region in the background
     (logs: $STATE/xregion/<region>.log, pids: $STATE/xregion/<region>.pid)

Options:
  --no-install  skip step 1
  --no-start    stop after step 5
Stop the replicators with scripts/down.sh, or the whole stack with
scripts/down.sh --stack.
USAGE
}

install=1 start=1
for a in "$@"; do
  case $a in
    -h|--help) usage; exit 0 ;;
    --no-install) install=0 ;;
    --no-start) start=0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

say() { printf '[up] %s\n' "$*"; }

if ((install)); then "$ROOT/scripts/install-deps.sh"; fi

say "building xregion in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
XREGION="$BUILD/xregion"

"$ROOT/scripts/stack.sh" up

for i in "${!REGIONS[@]}"; do
  r=${REGIONS[$i]}
  say "region $r: sample schema"
  psql -q -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PORTS[$i]}" -U postgres -d app \
       -f "$ROOT/scripts/sample-schema.sql" >/dev/null
  say "region $r: xregion setup"
  "$XREGION" setup -c "$ROOT/config/$r.yaml" 2>&1 | sed "s/^/    /"
done

((start)) || exit 0

mkdir -p "$STATE/xregion"
i=-1
for r in "${REGIONS[@]}"; do
  i=$((i + 1))
  pidf="$STATE/xregion/$r.pid"
  if [[ -f $pidf ]] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
    say "region $r: xregion already running (pid $(cat "$pidf"))"
    continue
  fi
  # /metrics and /status (xregion status) on 9187, 9188, 9189, ...
  XREGION_METRICS_LISTEN="127.0.0.1:$((9187 + i))" \
  nohup "$XREGION" run -c "$ROOT/config/$r.yaml" \
        >>"$STATE/xregion/$r.log" 2>&1 </dev/null &
  echo $! >"$pidf"
  say "region $r: xregion run started (pid $!, log $STATE/xregion/$r.log)"
done

# Started is not the same as streaming: wait for each to say so.
for r in "${REGIONS[@]}"; do
  for _ in $(seq 1 300); do
    grep -q "streaming slot" "$STATE/xregion/$r.log" 2>/dev/null && break
    kill -0 "$(cat "$STATE/xregion/$r.pid")" 2>/dev/null || {
      say "region $r: xregion exited; last lines of its log:"
      tail -n 20 "$STATE/xregion/$r.log"
      exit 1
    }
    sleep 0.1
  done
  grep -q "streaming slot" "$STATE/xregion/$r.log" ||
    { say "region $r: xregion did not start streaming in 30 s"; exit 1; }
  say "region $r: streaming"
done
say "up: three regions replicating through Kafka at 127.0.0.1:19092; try:"
say "  psql -h 127.0.0.1 -p 15432 -U postgres app -c \"INSERT INTO products VALUES (1, 'sku-1', 'Mug', 9.50)\""
say "  psql -h 127.0.0.1 -p 15433 -U postgres app -c 'SELECT * FROM products'   # in eu"
