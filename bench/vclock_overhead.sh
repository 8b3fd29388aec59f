#!/usr/bin/env bash
# Local write overhead of conflict: vclock (and lww) against a table with no
# xregion objects, measured with pgbench on the us cluster.  See --help.
# Measurement lives in bench/vclock_overhead.py; this script makes and
# removes the database, the config and xregion's objects.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
HELPER="$BENCH/vclock_overhead.py"
PY="${XR_VENV:-$ROOT/.stack/venv}/bin/python"
PGBIN="${XR_PG_BIN:-/usr/lib/postgresql/15/bin}"
XREGION_BIN="${XREGION_BIN:-$ROOT/build/xregion}"
BROKERS="${XR_KAFKA_BROKERS:-127.0.0.1:19092}"
PORT=15432
DB=xr_bench_vclock
SLOT=xr_bench_vclock            # origins: xr_bench_vclock_from_<region>
PREFIX=xrbench-vclock           # Kafka topics that setup creates
ROWS=100000
SECONDS_=10
RUNS=3
CLIENTS=4
WARMUP=2

usage() {
  cat <<USAGE
Usage: bench/vclock_overhead.sh [OPTIONS]

What conflict: vclock costs local writers, against conflict: lww and against
a table xregion does not know.  No producer or consumer runs: what is timed
is the work xregion's triggers add to each local transaction.

In a fresh database $DB of the us cluster (127.0.0.1:$PORT) four
tables of the same shape, acct_<variant> (id int PRIMARY KEY, balance bigint,
note text):
  plain   not in the config: no xregion objects at all
  lwwc    pii: false, conflict: lww, clock: commit (AFTER DELETE / key-change
          tombstone triggers; nothing on insert or update)
  lww     pii: false, conflict: lww (clock: hybrid, the default): the same
          plus BEFORE INSERT/UPDATE/DELETE trigger xregion_clock (reads the
          version the write overwrites; writes only when the clock is behind
          it, which never happens here: what is timed is the check) and
          AFTER INSERT/UPDATE trigger xregion_clock_xmin, whose WHEN
          condition is false unless a transaction moved a time
  vclock  pii: false, conflict: vclock  (BEFORE INSERT/UPDATE/DELETE trigger
          xregion_vclock: upserts the row's version vector and hybrid clock in
          xregion."public.acct_vclock" and emits a logical decoding message)
'xregion setup' with regions [us, eu, apac] installs the lww and vclock
objects (and a slot and Kafka topics of prefix $PREFIX, unused here); then
each table gets --rows rows in one INSERT (timed: "bulk load").

Workloads (pgbench -M prepared, --clients clients, --seconds s a run):
  update  UPDATE acct SET balance = balance + 1 WHERE id = random(1, rows)
  insert  INSERT of a new id (from a sequence)
  mixed   one transaction: the update, the insert, and a DELETE of the
          oldest row the inserts added
Each workload runs --runs rounds of the four variants in rotating order
(plain lwwc lww vclock, lwwc lww vclock plain, ...), a CHECKPOINT before every run so
each starts with the same full-page writes due.  Reported: median TPS per
variant and its ratio to plain; WAL bytes per transaction (the variant's own
records via pg_walinspect, and the raw pg_current_wal_flush_lsn() difference,
which includes the other sessions of the shared cluster); the versions
tables' size per row after the runs.

Results: bench/results/vclock-<UTC date-time>.json and .txt, pgbench output
and the config in bench/results/vclock-<UTC date-time>-logs/.  At exit, also
on failure or Ctrl-C: 'xregion teardown' (slot, publication, schema xregion,
origins), the database, and the Kafka topics of prefix $PREFIX are dropped.

Options:
  --seconds S   pgbench duration of one run (default $SECONDS_)
  --runs N      runs per variant and workload (default $RUNS)
  --clients N   pgbench clients (default $CLIENTS)
  --rows N      rows per table (default $ROWS)
  --warmup S    unmeasured update run per variant first, 0 for none
                (default $WARMUP)
  -h, --help    this help

Takes about 3 workloads x 4 variants x runs x (seconds + ~3) s plus a
minute; the defaults: about 7 minutes.  Quick smoke run:
  bench/vclock_overhead.sh --seconds 2 --runs 1 --rows 10000

Needs the local stack (scripts/stack.sh up), build/xregion (or
\$XREGION_BIN), the test venv (\$XR_VENV, default .stack/venv) and pgbench in
\$XR_PG_BIN.
USAGE
}

die() { echo "vclock_overhead.sh: $*" >&2; exit 2; }
num() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got '$2'"; }

while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --seconds) num "$1" "${2-}"; SECONDS_=$2; shift 2 ;;
    --runs) num "$1" "${2-}"; RUNS=$2; shift 2 ;;
    --clients) num "$1" "${2-}"; CLIENTS=$2; shift 2 ;;
    --rows) num "$1" "${2-}"; ROWS=$2; shift 2 ;;
    --warmup) [[ ${2-} =~ ^[0-9]+$ ]] || die "--warmup needs a number of seconds"
              WARMUP=$2; shift 2 ;;
    *) usage >&2; exit 2 ;;
  esac
done

say() { printf '[bench] %s\n' "$*"; }

[[ -x $PY ]] || die "no Python venv at $PY (scripts/install-deps.sh)"
[[ -x $PGBIN/pgbench ]] || die "no pgbench in $PGBIN"
[[ -x $XREGION_BIN ]] || die "no xregion binary at $XREGION_BIN (cmake --build build)"
"$PGBIN/pg_isready" -q -h 127.0.0.1 -p $PORT ||
  die "PostgreSQL on 127.0.0.1:$PORT does not answer (scripts/stack.sh up)"

STAMP="$(date -u +%Y-%m-%dT%H%M%SZ)"
RESULTS_DIR="$BENCH/results"
OUT="$RESULTS_DIR/vclock-$STAMP.json"
LOGS="$RESULTS_DIR/vclock-$STAMP-logs"
mkdir -p "$RESULTS_DIR" "$LOGS"
WORK="$(mktemp -d /tmp/xrbench-vclock.XXXXXX)"
RES="$WORK/results.json"
CFG="$WORK/xregion-us.yaml"
made=0 setup_done=0 reported=0

helper() { "$PY" "$HELPER" "$@"; }
put() { helper set --results "$RES" "$1" "$2"; }
dbargs=(--port $PORT --db $DB --slot $SLOT --results "$RES")

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  ((rc)) && { say "failed (exit $rc); cleaning up"; OUT="${OUT%.json}-failed.json"; }
  cp "$CFG" "$LOGS"/ 2>/dev/null
  if ((setup_done)); then
    say "xregion teardown (output in $LOGS/teardown.log)"
    "$WORK/xregion" teardown -c "$CFG" >"$LOGS/teardown.log" 2>&1 ||
      say "xregion teardown failed; dropping the slot and origins directly"
    grep -E ' (INFO|WARN|ERROR) ' "$LOGS/teardown.log" | sed 's/^/    /'
  fi
  if ((made)); then
    helper dropdb "${dbargs[@]}"
    # teardown keeps the topics (they hold the change history): drop them
    "$PY" "$BENCH/replication.py" topics-drop --brokers "$BROKERS" --prefix "$PREFIX"
  fi
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

# a private copy: a rebuild during the run must not swap the binary
cp "$XREGION_BIN" "$WORK/xregion"
put started "\"$STAMP\""
put host "\"$(hostname)\""
put cpus "$(nproc)"
put rows "$ROWS"
put seconds "$SECONDS_"
put runs "$RUNS"
put clients "$CLIENTS"
put loadavg_start "\"$(cut -d' ' -f1-3 /proc/loadavg)\""
put xregion_version "\"$("$WORK/xregion" --version 2>&1 | head -n1)\""
put xregion_bin "\"$XREGION_BIN sha256:$(sha256sum "$XREGION_BIN" | cut -c1-16)\""
put repo_git "\"$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)\""
put pg_version "\"$(psql -X -Atq -h 127.0.0.1 -p $PORT -U postgres -d postgres \
    -c "SELECT 'PostgreSQL ' || current_setting('server_version')")\""
put other_xregion_processes "$(pgrep -c -x xregion || true)"

say "=== database $DB on 127.0.0.1:$PORT"
made=1
helper prepare "${dbargs[@]}" --rows "$ROWS"

cat >"$CFG" <<YAML
# bench/vclock_overhead.sh: acct_plain is deliberately not listed
region: us
regions: [us, eu, apac]
log_level: info
postgres:
  dsn: "host=127.0.0.1 port=$PORT dbname=$DB user=postgres"
  slot: $SLOT
  publication: xr_bench_vclock
kafka:
  brokers: $BROKERS
  topic_prefix: $PREFIX
  partitions: 1
  replication_factor: 1
tables:
  - name: public.acct_lwwc
    pii: false
    conflict: lww
    clock: commit
  - name: public.acct_lww
    pii: false
    conflict: lww
  - name: public.acct_vclock
    pii: false
    conflict: vclock
YAML
say "xregion setup"
setup_done=1
if ! "$WORK/xregion" setup -c "$CFG" 2>&1 | tee "$LOGS/setup.log" |
     sed 's/^/    /'; then
  say "xregion setup failed"; exit 1
fi

helper load "${dbargs[@]}" --rows "$ROWS"
helper measure "${dbargs[@]}" --rows "$ROWS" --seconds "$SECONDS_" \
    --runs "$RUNS" --clients "$CLIENTS" --warmup "$WARMUP" \
    --pgbench "$PGBIN/pgbench" --workdir "$WORK" --logs "$LOGS"

put loadavg_end "\"$(cut -d' ' -f1-3 /proc/loadavg)\""
reported=1
helper report --results "$RES" --out "$OUT"
say "logs: $LOGS"
