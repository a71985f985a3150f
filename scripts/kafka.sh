#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) from Maven Central jars, on Java >= 17, no Docker.
# Usage: scripts/kafka.sh install|start|stop|status
set -euo pipefail

# Also the version of the apache/kafka image in docker-compose.yml (a test checks they match).
KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HERE="$ROOT/scripts/kafka"
DATA="$RUN/kafka-data"
PROPS="$RUN/kafka.properties"
PATTERN="kafka.Kafka"            # identifies our broker in /proc/<pid>/cmdline

bootstrap=$(setting KAFKA_BOOTSTRAP_SERVERS localhost:9092)
first=${bootstrap%%,*}           # the local broker serves the first address listed
HOST=${first%:*}
PORT=${first##*:}
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"

# The jars of scripts/kafka/jars.txt (group:artifact:version and SHA-256), fetched with the
# standard library from the local Maven repository or MAVEN_REPOSITORY_URL (Maven Central by
# default): no Maven needed, and every jar is checked. The directory is named after the list's
# own digest, so a changed list gets a fresh directory and a running broker keeps its own.
LIBS="$ROOT/.cache/kafka/$KAFKA_VERSION/libs-$(sha256sum "$HERE/jars.txt" | cut -c1-12)"

install() {
  "$ROOT/scripts/prereqs.sh" java
  if [[ -d $LIBS ]]; then return 0; fi
  grep -q "^org.apache.kafka:kafka_2.13:$KAFKA_VERSION " "$HERE/jars.txt" || {
    echo "kafka: scripts/kafka/jars.txt does not list Kafka $KAFKA_VERSION;" \
      "set its version in scripts/kafka/pom.xml and run scripts/kafka/jars.py lock" >&2; exit 1
  }
  echo "kafka: fetching Kafka $KAFKA_VERSION jars into ${LIBS#"$ROOT"/}"
  mkdir -p "$(dirname "$LIBS")"
  # Fetch into a temporary directory and rename it at the end: a fetch that is
  # interrupted never leaves a libs directory that looks complete. ($tmp is global:
  # the EXIT trap may run outside this function.)
  tmp=$(mktemp -d "$LIBS.partial.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  python3 "$HERE/jars.py" fetch "$tmp"
  mv "$tmp" "$LIBS"
  trap - EXIT
}

tool() {   # a Kafka class (or Ready.java) on the broker's classpath, logging warnings only
  java -cp "$LIBS/*" -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
    -Dkafka.log.level=WARN "$@"
}

start() {
  if alive kafka "$PATTERN"; then
    echo "kafka: already running (pid $(<"$RUN/kafka.pid")) on $HOST:$PORT"; return 0
  fi
  install
  # Someone else's broker on our ports would make the readiness check pass for the wrong one.
  for port in "$PORT" "$CONTROLLER_PORT"; do
    if port_open localhost "$port"; then
      echo "kafka: port $port is already in use by another process" >&2; exit 1
    fi
  done
  mkdir -p "$RUN"
  sed -e "s|@HOST@|$HOST|g" -e "s|@PORT@|$PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
    -e "s|@LOG_DIRS@|$DATA|g" "$HERE/server.properties" >"$PROPS"

  # Format once: meta.properties in the data dir keeps the cluster id, so topics and
  # committed offsets survive stop/start. Never reformat existing data.
  if [[ ! -f $DATA/meta.properties ]]; then
    local id
    id=$(tool kafka.tools.StorageTool random-uuid)
    [[ $id =~ ^[A-Za-z0-9_-]{22}$ ]] || { echo "kafka: bad cluster id: $id" >&2; exit 1; }
    echo "kafka: formatting $DATA (cluster id $id)"
    tool kafka.tools.StorageTool format -t "$id" -c "$PROPS" --standalone -g >>"$RUN/kafka.log" 2>&1 ||
      fail_with_log kafka "storage format failed"
  fi

  echo "kafka: starting Kafka $KAFKA_VERSION on $HOST:$PORT (log: ${RUN#"$ROOT"/}/kafka.log)"
  # setsid: own session, so Ctrl-C in the terminal that ran `make up` does not reach it.
  (cd "$ROOT" && exec setsid nohup java -Xms512m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
    -cp "$LIBS/*" kafka.Kafka "$PROPS" >>"$RUN/kafka.log" 2>&1 </dev/null) &
  echo $! >"$RUN/kafka.pid"

  # Ready = the port accepts connections and the broker answers a metadata request.
  local deadline=$((SECONDS + 90)) out=""
  while ((SECONDS < deadline)); do
    alive kafka "$PATTERN" || fail_with_log kafka "the broker exited during start-up"
    if port_open localhost "$PORT" &&
      out=$(tool "$HERE/Ready.java" "$bootstrap" 10000 2>&1); then
      echo "kafka: ready, $out"; return 0
    fi
    sleep 0.5
  done
  [[ -z $out ]] || echo "kafka: $out" >&2
  fail_with_log kafka "not ready after 90 s"
}

case "${1-}" in
  install) install ;;
  start) start ;;
  stop) stop_pid kafka "$PATTERN" ;;
  status)
    if alive kafka "$PATTERN"; then echo "kafka: running (pid $(<"$RUN/kafka.pid"))"
    else echo "kafka: not running"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
