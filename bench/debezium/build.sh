#!/usr/bin/env bash
# Builds the Debezium side of the replication benchmark and prints the java
# command line that runs it.
#
# What it is for
#   bench/replication.sh --cases "stages debezium" times, over the same
#   backlog in a pgoutput slot of its own, Debezium 3.6.1.Final's PostgreSQL
#   connector (pgoutput) in the embedded engine, each change event sent with
#   a KafkaProducer (acks=all, idempotent) to a topic on the same broker, next
#   to 'xregion run' capturing it (events/s and peak RSS of each).  The
#   program is src/main/java/xregion/bench/DebeziumCapture.java; its header
#   says what it measures and which arguments it takes.
#
# How
#   mvn -q -B -f bench/debezium/pom.xml package compiles it into
#   target/classes and writes the runtime classpath (jars in the local Maven
#   repository, ~/.m2) to target/classpath.txt.  The first build downloads
#   Debezium, Kafka's clients and their dependencies from Maven Central;
#   later builds run offline (mvn -o), and none runs at all while
#   target/classpath.txt and the class are newer than pom.xml and the
#   sources.  Then target/java.args gets the classpath (a java @argfile) and
#   the last line of stdout is the command, without the program's arguments:
#
#     <java> [$XR_DEBEZIUM_JAVA_OPTS] @<dir>/target/java.args xregion.bench.DebeziumCapture
#
#   <java> is $JAVA_HOME/bin/java if JAVA_HOME is set, else java on PATH
#   (Java 17 or newer: Debezium 3.6's connector and engine are built for 17).
#   Extra JVM options: $XR_DEBEZIUM_JAVA_OPTS (e.g. -Xmx512m); none by
#   default, so the JVM sizes its heap as it would for any user.
#
# Usage: bench/debezium/build.sh [--force]     (build output: stderr)
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TARGET="$DIR/target"
CLASS="$TARGET/classes/xregion/bench/DebeziumCapture.class"
CP="$TARGET/classpath.txt"
ARGS="$TARGET/java.args"
force=0
[[ ${1-} == --force ]] && force=1

if [[ -n ${JAVA_HOME-} ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA="$(command -v java || true)"
  [[ -n $JAVA ]] && JAVA="$(readlink -f "$JAVA")"
fi
[[ -x $JAVA ]] || { echo "build.sh: no java (set JAVA_HOME)" >&2; exit 2; }
command -v mvn >/dev/null || { echo "build.sh: no mvn" >&2; exit 2; }

stale() {  # whether the class or the classpath is older than a source
  ((force)) && return 0
  [[ -s $CP && -f $CLASS ]] || return 0
  local f
  while IFS= read -r -d '' f; do
    [[ $f -nt $CP || $f -nt $CLASS ]] && return 0
  done < <(find "$DIR/pom.xml" "$DIR/src" -type f -print0)
  # a jar of the classpath gone from ~/.m2
  local jar
  IFS=: read -r -a jars <"$CP"
  for jar in "${jars[@]}"; do [[ -f $jar ]] || return 0; done
  return 1
}

if stale; then
  echo "build.sh: building $DIR (mvn package)" >&2
  # offline first: after the first download everything is in ~/.m2
  if ! mvn -o -q -B -Dstyle.color=never -f "$DIR/pom.xml" package >/dev/null 2>&1; then
    mvn -q -B -Dstyle.color=never -f "$DIR/pom.xml" package >&2
  fi
  [[ -s $CP && -f $CLASS ]] || { echo "build.sh: the build left no $CP or class" >&2; exit 1; }
  touch "$CP" "$CLASS"
fi
printf -- '-cp\n"%s:%s"\n' "$TARGET/classes" "$(cat "$CP")" >"$ARGS"
echo "$JAVA ${XR_DEBEZIUM_JAVA_OPTS:-} @$ARGS xregion.bench.DebeziumCapture" | tr -s ' '
