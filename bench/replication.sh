#!/usr/bin/env bash
# Replication benchmark: xregion (us -> Kafka -> eu) against PostgreSQL's
# native logical replication (publication/subscription) on the same machine.
# See --help.  Measurement lives in bench/replication.py; this script makes
# and removes the deployments.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
HELPER="$BENCH/replication.py"
PY="${XR_VENV:-$ROOT/.stack/venv}/bin/python"
PGBIN="${XR_PG_BIN:-/usr/lib/postgresql/15/bin}"
XREGION_BIN="${XREGION_BIN:-$ROOT/build/xregion}"
BROKERS="${XR_KAFKA_BROKERS:-127.0.0.1:19092}"
US_PORT=15432
EU_PORT=15433
NATIVE_PORT=15452          # src; dst is NATIVE_PORT+1
ROWS=1000000
OLTP_SECONDS=15
CLIENTS=4
TIMEOUT=3600
ONLY=""
MODES="atomic rows"
CASES="insert update oltp latency stages"
RATES="200 1000 5000"
LATENCY_SECONDS=10

usage() {
  cat <<USAGE
Usage: bench/replication.sh [OPTIONS]

Times the same workloads through xregion and through PostgreSQL 15's native
logical replication, on this machine, and prints a table with the ratio
native_time / xregion_time (>= 1.0 means xregion is at least as fast).

xregion path: fresh databases bench_us (us cluster, 127.0.0.1:$US_PORT) and
  bench_eu (eu cluster, 127.0.0.1:$EU_PORT) of the running local stack, table
  items (id bigint PRIMARY KEY, a int, b text, c timestamptz), configs for
  regions [us, eu] with a fresh topic prefix and slots, 'xregion setup' and
  'xregion run' for both; changes are made on us and awaited on eu.
native path: two fresh PostgreSQL 15 clusters src/dst made with
  scripts/stack.sh (ports $NATIVE_PORT/$((NATIVE_PORT + 1)), no Kafka), the same table,
  CREATE PUBLICATION on src, CREATE SUBSCRIPTION ... WITH (copy_data = false)
  on dst.

Cases, each timed from just before the statement until the destination has
every change (polled every 0.2 s):
  insert  INSERT of --rows rows in one transaction (dest count(*) = rows)
  update  UPDATE items SET a = a + 1, b = b || 'x' WHERE id % 2 = 0, i.e.
          rows/2 rows in one transaction (dest sum(a), sum(length(b)) = source's)
  oltp    pgbench, --clients clients for --oltp-seconds s of
          'UPDATE items SET a = a + 1 WHERE id = random(1, rows)': source TPS,
          and seconds from the end of the load until dest sum(a) = source's
  stages  each stage alone, over a backlog made while nothing reads it (an
          INSERT of --rows rows into table stage, then an UPDATE of half of
          them): capture, from starting xregion on the source until Kafka
          has every event, against pg_recvlogical reading the same backlog
          from a pgoutput slot of its own until its end LSN (xregion's
          slot is moved to the WAL's end before each load, past a
          checkpoint, so that it does not decode the previous backlog
          again: a slot that streams moves its restart point within 15 s);
          apply, from
          starting xregion on the destination (the events in Kafka) until
          it has every row, against native replication catching up the
          same backlog (its subscription enabled after the load); CPU
          seconds and peak RSS of each process in each stage
  debezium with stages (not alone): Debezium 3.6.1.Final's PostgreSQL
          connector (pgoutput) in the embedded engine, each change event
          sent with a KafkaProducer (acks=all, idempotent) to a topic of its
          own on the same broker (3 partitions, as xregion's), reads each
          backlog from a pgoutput slot of its own too, after pg_recvlogical
          and before xregion's capture: events/s from the JVM's start until
          Kafka acknowledged every event, CPU seconds and peak RSS, next to
          xregion's capture (xregion/Debezium ratios).  Not in the default
          cases: bench/debezium/build.sh builds it with Maven (downloads
          from Maven Central the first time; JAVA_HOME picks the JDK,
          \$XR_DEBEZIUM_JAVA_OPTS adds JVM options).  It runs in the first
          of --apply-modes only (capture does not depend on the mode).
  latency pgbench -R at each of --rates transactions/s for --latency-seconds s
          of single-row updates that stamp c = clock_timestamp(); a trigger
          on the destination (ENABLE ALWAYS) stamps each arrival: p50, p90,
          p99 of arrival - c, the first second left out
A warm-up row goes through each path first. Besides the table, the run reports
per stage: source commit, first and all events in Kafka (xregion), first and
all rows at the destination, and the CPU seconds of each process taking part.

Results: bench/results/<UTC date-time>.json, and the processes' logs in
bench/results/<UTC date-time>-logs/.  Everything the run makes (databases,
slots, origins, publication/subscription, the src/dst clusters, the Kafka
topics and consumer groups of its prefix) is removed at exit, also on failure
or Ctrl-C.

Options:
  --rows N           rows inserted (default $ROWS); the update touches N/2
  --oltp-seconds S   pgbench duration (default $OLTP_SECONDS)
  --clients N        pgbench clients (default $CLIENTS)
  --timeout S        give up waiting for a destination after S s (default $TIMEOUT)
  --only PATH        run only 'xregion' or 'native'
  --cases LIST       the cases to run (default "$CASES"; warm-up always;
                     "debezium" only on request, with stages)
  --rates LIST       latency: transactions/s (default "$RATES")
  --latency-seconds S  latency: seconds per rate (default $LATENCY_SECONDS)
  --apply-modes M    the consumer's apply modes to time, of 'atomic' (each
                     source transaction whole, the default) and 'rows'
                     (event by event); default "$MODES": the xregion path
                     runs once per mode, in fresh databases and topics
  --native-port P    first port of the src/dst clusters (default $NATIVE_PORT)
  -h, --help         this help

Quick smoke run:  bench/replication.sh --rows 20000 --oltp-seconds 3

Profiling: with XR_BENCH_PERF=<dir>, each process a stage starts (not
pg_recvlogical) runs under 'perf record --call-graph dwarf' for the stage,
into <dir>/<key>.perf.data (perf report -i ...), sampling at
\$XR_BENCH_PERF_HZ per second (default 99); its CPU figures are then a
little higher (the sampling's own cost).

Needs the local stack (scripts/stack.sh up), build/xregion (or \$XREGION_BIN),
the test venv (\$XR_VENV, default .stack/venv) and pgbench in \$XR_PG_BIN.
USAGE
}

die() { echo "replication.sh: $*" >&2; exit 2; }
num() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got '$2'"; }

while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --rows) num "$1" "${2-}"; ROWS=$2; shift 2 ;;
    --oltp-seconds) num "$1" "${2-}"; OLTP_SECONDS=$2; shift 2 ;;
    --clients) num "$1" "${2-}"; CLIENTS=$2; shift 2 ;;
    --timeout) num "$1" "${2-}"; TIMEOUT=$2; shift 2 ;;
    --native-port) num "$1" "${2-}"; NATIVE_PORT=$2; shift 2 ;;
    --apply-modes)
      for m in ${2-}; do [[ $m == atomic || $m == rows ]] ||
        die "--apply-modes takes atomic and/or rows, got '$m'"; done
      [[ -n ${2-} ]] || die "--apply-modes needs a value"
      MODES=$2; shift 2 ;;
    --cases) for c in ${2-}; do [[ $c =~ ^(insert|update|oltp|latency|stages|debezium)$ ]] ||
                die "--cases takes insert, update, oltp, latency, stages, debezium; got '$c'"; done
             CASES=${2-}; shift 2 ;;
    --rates) for c in ${2-}; do num "$1" "$c"; done; RATES=${2-}; shift 2 ;;
    --latency-seconds) num "$1" "${2-}"; LATENCY_SECONDS=$2; shift 2 ;;
    --only) [[ ${2-} == xregion || ${2-} == native ]] ||
              die "--only takes xregion or native"; ONLY=$2; shift 2 ;;
    *) usage >&2; exit 2 ;;
  esac
done
((ROWS >= 2)) || die "--rows must be at least 2"
run_debezium=0
if [[ " $CASES " == *" debezium "* ]]; then
  [[ " $CASES " == *" stages "* ]] || die "--cases debezium needs stages too"
  run_debezium=1
fi
run_xregion=1 run_native=1
[[ $ONLY == native ]] && run_xregion=0
[[ $ONLY == xregion ]] && run_native=0

say() { printf '[bench] %s\n' "$*"; }

[[ -x $PY ]] || die "no Python venv at $PY (scripts/install-deps.sh)"
[[ -x $PGBIN/pgbench ]] || die "no pgbench in $PGBIN"
if ((run_debezium && !run_xregion)); then  # it reads the xregion path's backlogs
  say "debezium: not run with --only native"; run_debezium=0
fi
if ((run_debezium)); then
  # built before anything is made: the first build downloads from Maven Central
  DBZ_CMD="$(bash "$BENCH/debezium/build.sh")" ||
    die "could not build bench/debezium (bench/debezium/build.sh)"
  say "debezium: $DBZ_CMD"
fi
if ((run_xregion)); then
  [[ -x $XREGION_BIN ]] || die "no xregion binary at $XREGION_BIN (cmake --build build)"
  for p in $US_PORT $EU_PORT; do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$p" ||
      die "PostgreSQL on 127.0.0.1:$p does not answer (scripts/stack.sh up)"
  done
fi

STAMP="$(date -u +%Y-%m-%dT%H%M%SZ)"
RESULTS_DIR="$BENCH/results"
OUT="$RESULTS_DIR/$STAMP.json"
LOGS="$RESULTS_DIR/$STAMP-logs"
mkdir -p "$RESULTS_DIR" "$LOGS"
WORK="$(mktemp -d /tmp/xrbench.XXXXXX)"
RES="$WORK/results.json"
SUFFIX="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
PREFIX="xrbench$SUFFIX"
XPREFIX=$PREFIX            # the topic prefix of the xregion run at hand
ORIGINS_LIKE="xrbench\\_${SUFFIX}\\_%"
NATIVE_ENV=(XR_STATE_DIR="$WORK/native" XR_REGIONS="src dst"
            XR_PG_BASE_PORT="$NATIVE_PORT" XR_KAFKA=0)
SRC_PORT=$NATIVE_PORT
DST_PORT=$((NATIVE_PORT + 1))
declare -A XR_PID=()
native_up=0 xregion_made=0 reported=0

helper() { "$PY" "$HELPER" "$@"; }
put() { helper set --results "$RES" "$1" "$2"; }

# ------------------------------------------------------------------ cleanup

stop_xregion() {
  local r pid
  for r in "${!XR_PID[@]}"; do
    pid=${XR_PID[$r]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "xregion $r (pid $pid) did not stop in 30 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    unset "XR_PID[$r]"
  done
}

drop_xregion() {
  ((xregion_made)) || return 0
  helper dropdb --port $US_PORT --db bench_us --origins-like "$ORIGINS_LIKE" || true
  helper dropdb --port $EU_PORT --db bench_eu --origins-like "$ORIGINS_LIKE" || true
  helper topics-drop --brokers "$BROKERS" --prefix "$XPREFIX" || true
  xregion_made=0
}

drop_native() {
  ((native_up)) || return 0
  psql -X -q -h 127.0.0.1 -p $DST_PORT -U postgres -d app \
       -c "DROP SUBSCRIPTION IF EXISTS xrbench_sub" \
       -c "DROP SUBSCRIPTION IF EXISTS xrbench_stage_sub" >/dev/null 2>&1 || true
  env "${NATIVE_ENV[@]}" "$ROOT/scripts/stack.sh" down --purge 2>&1 |
    sed 's/^/    /' || true
  native_up=0
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if ((rc)); then
    say "failed (exit $rc); cleaning up"
    for f in "$WORK"/xregion-*.log; do
      [[ -f $f ]] || continue
      say "last lines of $(basename "$f"):"; tail -n 15 "$f" | sed 's/^/    /'
    done
    OUT="${OUT%.json}-failed.json"
  fi
  stop_xregion
  cp "$WORK"/*.log "$WORK"/*.yaml "$LOGS"/ 2>/dev/null
  drop_xregion
  drop_native
  if ((!reported)) && [[ -f $RES ]]; then
    say "partial results:"
    helper report --results "$RES" --out "$OUT"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ run info

put started "\"$STAMP\""
put host "\"$(hostname)\""
put cpus "$(nproc)"
put rows "$ROWS"
put oltp_seconds "$OLTP_SECONDS"
put oltp_clients "$CLIENTS"
put loadavg_start "\"$(cut -d' ' -f1-3 /proc/loadavg)\""
if ((run_xregion)); then
  # a private copy: a rebuild during the run must not swap the binary
  cp "$XREGION_BIN" "$WORK/xregion"
  put xregion_version "\"$("$WORK/xregion" --version 2>&1 | head -n1)\""
  put xregion_bin "\"$XREGION_BIN sha256:$(sha256sum "$XREGION_BIN" | cut -c1-16)\""
  put repo_git "\"$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)\""
  # other users of the shared stack compete for the same CPUs
  put other_walsenders_us "$(psql -X -Atq -h 127.0.0.1 -p $US_PORT -U postgres -d postgres \
      -c "SELECT count(*) FROM pg_stat_replication")"
  put other_xregion_processes "$(pgrep -c -x xregion || true)"
fi
if ((run_debezium)); then
  put debezium_cmd "\"$DBZ_CMD\""
  put debezium_java "\"$(${DBZ_CMD%% *} -version 2>&1 | head -n1 | sed 's/"//g')\""
fi

wait_log() {  # region text: until the region's log has text
  local r=$1 text=$2 log="$WORK/xregion-$1.log"
  for _ in $(seq 1 600); do
    grep -q "$text" "$log" 2>/dev/null && return 0
    kill -0 "${XR_PID[$r]}" 2>/dev/null || {
      say "xregion $r exited; last lines of its log:"; tail -n 30 "$log"; exit 1; }
    sleep 0.1
  done
  say "xregion $r: no '$text' in its log after 60 s:"; tail -n 30 "$log"; exit 1
}

timed_cases() {  # key src_port src_db dst_port dst_db [extra helper args]
  local key=$1 sp=$2 sd=$3 dp=$4 dd=$5
  shift 5
  local common=(--src-port "$sp" --src-db "$sd" --dst-port "$dp" --dst-db "$dd"
                --results "$RES" --timeout "$TIMEOUT" --rows "$ROWS")
  helper warmup "${common[@]}" --key "$key.warmup" --timeout $((TIMEOUT < 120 ? TIMEOUT : 120))
  has_case insert && helper insert "${common[@]}" --key "$key.insert" "$@"
  if ! has_case insert && has_case update oltp latency; then
    helper insert "${common[@]}" --key "$key.load" "$@"   # rows to update
  fi
  has_case update && helper update "${common[@]}" --key "$key.update" "$@"
  has_case oltp && helper oltp "${common[@]}" --key "$key.oltp" --clients "$CLIENTS" \
         --seconds "$OLTP_SECONDS" --pgbench "$PGBIN/pgbench" \
         --log "$LOGS/pgbench-$key.log" "$@"
  has_case latency && helper latency "${common[@]}" --key "$key.latency" \
         --rates "$RATES" --seconds "$LATENCY_SECONDS" --pgbench "$PGBIN/pgbench"
  return 0
}

has_case() {  # case...: whether any of them is to run
  local c
  for c in "$@"; do [[ " $CASES " == *" $c "* ]] && return 0; done
  return 1
}

# ------------------------------------------------------------------ xregion

run_xregion_mode() {  # mode key: one xregion run with consumer.apply_mode
  local mode=$1 key=$2 r port
  XPREFIX="$PREFIX$mode"
  say "=== xregion path ($mode apply): us 127.0.0.1:$US_PORT/bench_us -> Kafka $BROKERS -> eu 127.0.0.1:$EU_PORT/bench_eu (topic prefix $XPREFIX)"
  xregion_made=1
  helper prepare --port $US_PORT --db bench_us --origins-like "$ORIGINS_LIKE"
  helper prepare --port $EU_PORT --db bench_eu --origins-like "$ORIGINS_LIKE"
  for r in us eu; do
    port=$US_PORT; [[ $r == eu ]] && port=$EU_PORT
    cat >"$WORK/xregion-$r.yaml" <<YAML
region: $r
regions: [us, eu]
log_level: info
postgres:
  dsn: "host=127.0.0.1 port=$port dbname=bench_$r user=postgres"
  slot: xrbench_${SUFFIX}_$r
  publication: xrbench
kafka:
  brokers: $BROKERS
  topic_prefix: $XPREFIX
  partitions: 3
  replication_factor: 1
consumer:
  apply_mode: $mode
tables:
  - name: public.items
    pii: false
  - name: public.stage
    pii: false
YAML
    say "xregion setup $r"
    "$WORK/xregion" setup -c "$WORK/xregion-$r.yaml" 2>&1 | sed 's/^/    /'
    ((PIPESTATUS[0] == 0)) || { say "xregion setup $r failed"; exit 1; }
  done
  for r in us eu; do
    "$WORK/xregion" run -c "$WORK/xregion-$r.yaml" \
        >"$WORK/xregion-$r.log" 2>&1 </dev/null &
    XR_PID[$r]=$!
    say "xregion run $r started (pid ${XR_PID[$r]})"
  done
  for r in us eu; do
    wait_log $r "streaming slot"
    wait_log $r "subscribed to"
  done
  KAFKA_PID="$(cat "$ROOT/.stack/kafka/kafka.pid" 2>/dev/null || echo 0)"
  PIDS="xregion-us=${XR_PID[us]},xregion-eu=${XR_PID[eu]},kafka=$KAFKA_PID"
  timed_cases "$key" $US_PORT bench_us $EU_PORT bench_eu \
      --kafka-topic "$XPREFIX.us.public.items" --brokers "$BROKERS" --pids "$PIDS"
  has_case stages && stages_xregion "$key"
  say "stopping xregion; its rate lines:"
  stop_xregion
  for r in us eu; do
    grep -E "produced|consumed" "$WORK/xregion-$r.log" | sed "s/^/    $r: /" || true
    cp "$WORK/xregion-$r.log" "$LOGS/xregion-$r-$mode.log"
    cp "$WORK/xregion-$r.yaml" "$LOGS/xregion-$r-$mode.yaml"
  done
  drop_xregion
}

debezium_done=0   # Debezium reads the backlogs of the first apply mode's run

stages_xregion() {  # key: capture and apply alone, each against its anchor
  local key=$1 op k r dbz=0
  local recv_slot="xrbench_${SUFFIX}_recv" topic="$XPREFIX.us.public.stage"
  local dbz_slot="xrbench_${SUFFIX}_dbz" dbz_topic slots=()
  local common=(--src-port $US_PORT --src-db bench_us --dst-port $EU_PORT
                --dst-db bench_eu --results "$RES" --timeout "$TIMEOUT"
                --pids "kafka=$KAFKA_PID")
  if ((run_debezium && !debezium_done)); then
    dbz=1 debezium_done=1 slots=(--slot "$dbz_slot")
  fi
  say "stages alone: xregion stopped in both regions while each backlog is made"
  stop_xregion
  for op in insert update; do
    k="$key.stage_$op"
    helper stage-load --src-port $US_PORT --src-db bench_us --op $op \
        --rows "$ROWS" --results "$RES" --key "$k.load" --brokers "$BROKERS" \
        --kafka-topic "$topic" --recv-slot "$recv_slot" "${slots[@]}" \
        --advance-slot "xrbench_${SUFFIX}_us"
    helper stage "${common[@]}" --key "$k.recvlogical" --load "$k.load" \
        --until exit --recvlogical "$PGBIN/pg_recvlogical" \
        --recv-slot "$recv_slot" --name pg_recvlogical --log "$WORK/recv.out"
    rm -f "$WORK/recv.out"
    if ((dbz)); then
      # Debezium over the same backlog from its own slot, into a topic of
      # its own ({changes}: the backlog's events, filled in by the helper);
      # then its slot is dropped (no WAL held) and its topic deleted
      dbz_topic="$XPREFIX.debezium.stage_$op"
      helper topic-create --brokers "$BROKERS" --topic "$dbz_topic" --partitions 3
      helper stage "${common[@]}" --key "$k.debezium" --load "$k.load" \
          --until exit --name debezium --log "$WORK/debezium-$op.log" \
          --report-json --drop-slot "$dbz_slot" --count-topic "$dbz_topic" \
          --start "$DBZ_CMD --pg-host 127.0.0.1 --pg-port $US_PORT --pg-db bench_us --pg-user postgres --slot $dbz_slot --publication xrbench --table public.stage --brokers $BROKERS --topic $dbz_topic --events {changes} --work-dir $WORK/debezium --timeout-s $TIMEOUT"
      helper topics-drop --brokers "$BROKERS" --prefix "$XPREFIX.debezium"
    fi
    for r in us eu; do
      local until=kafka stage=capture
      [[ $r == eu ]] && until=dest stage=apply
      helper stage "${common[@]}" --key "$k.$stage" --load "$k.load" \
          --until $until --kafka-topic "$topic" --brokers "$BROKERS" \
          --start "$WORK/xregion run -c $WORK/xregion-$r.yaml" \
          --name "xregion-$r" --log "$WORK/xregion-$r.log" \
          --pidfile "$WORK/xregion-$r.pid"
      XR_PID[$r]=$(cat "$WORK/xregion-$r.pid")
    done
    stop_xregion
  done
}

if ((run_xregion)); then
  for mode in $MODES; do
    key=xregion
    [[ $mode == rows ]] && key=xregion_rows
    run_xregion_mode "$mode" "$key"
  done
fi

# ------------------------------------------------------------------ native

if ((run_native)); then
  say "=== native path: fresh clusters src 127.0.0.1:$SRC_PORT -> dst 127.0.0.1:$DST_PORT (publication/subscription)"
  native_up=1
  env "${NATIVE_ENV[@]}" "$ROOT/scripts/stack.sh" up 2>&1 | sed 's/^/    /'
  ((PIPESTATUS[0] == 0)) || { say "could not start the src/dst clusters"; exit 1; }
  psql_n() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d app -c "$2"; }
  for p in $SRC_PORT $DST_PORT; do
    psql_n "$p" "CREATE TABLE items (id bigint PRIMARY KEY, a int, b text, c timestamptz)"
  done
  psql_n $SRC_PORT "CREATE PUBLICATION xrbench_pub FOR TABLE items"
  psql_n $DST_PORT "CREATE SUBSCRIPTION xrbench_sub CONNECTION 'host=127.0.0.1 port=$SRC_PORT dbname=app user=postgres' PUBLICATION xrbench_pub WITH (copy_data = false)"
  say "publication xrbench_pub on src, subscription xrbench_sub on dst"
  timed_cases native $SRC_PORT app $DST_PORT app
  if has_case stages; then
    for p in $SRC_PORT $DST_PORT; do
      psql_n "$p" "CREATE TABLE stage (LIKE items INCLUDING ALL)"
    done
    # the launcher starts a worker at most once per wal_retrieve_retry_interval
    # (5 s by default): that wait is not applying
    psql_n $DST_PORT "ALTER SYSTEM SET wal_retrieve_retry_interval = '50ms'"
    psql_n $DST_PORT "SELECT pg_reload_conf()"
    psql_n $SRC_PORT "CREATE PUBLICATION xrbench_stage_pub FOR TABLE stage"
    psql_n $DST_PORT "CREATE SUBSCRIPTION xrbench_stage_sub CONNECTION 'host=127.0.0.1 port=$SRC_PORT dbname=app user=postgres' PUBLICATION xrbench_stage_pub WITH (copy_data = false, enabled = false)"
    for op in insert update; do
      helper stage-load --src-port $SRC_PORT --src-db app --op $op \
          --rows "$ROWS" --results "$RES" --key "native.stage_$op.load"
      helper stage --src-port $SRC_PORT --src-db app --dst-port $DST_PORT \
          --dst-db app --results "$RES" --timeout "$TIMEOUT" \
          --key "native.stage_$op.apply" --load "native.stage_$op.load" \
          --until dest --sql-start "ALTER SUBSCRIPTION xrbench_stage_sub ENABLE" \
          --sql-end "ALTER SUBSCRIPTION xrbench_stage_sub DISABLE" \
          --sql-end-wait "SELECT count(*) = 0 FROM pg_stat_subscription WHERE subname = 'xrbench_stage_sub' AND pid IS NOT NULL"
    done
  fi
  drop_native
fi

put loadavg_end "\"$(cut -d' ' -f1-3 /proc/loadavg)\""
reported=1
helper report --results "$RES" --out "$OUT"
say "logs: $LOGS"
