#!/usr/bin/env bash
# Local Apache Kafka (KRaft) from Maven Central jars, on Java >= 17, no Docker: one node, or a
# cluster of KAFKA_BROKERS nodes (each a broker and a controller) on consecutive ports.
# Usage: scripts/kafka.sh install|start|stop|status|classpath
#   (classpath installs the jars if needed and prints the broker's Java classpath)
#
# One node: client port from KAFKA_BOOTSTRAP_SERVERS (9092), controller KAFKA_CONTROLLER_PORT
# (9093); pid, log and data in .run/kafka.{pid,log}, .run/kafka-data.
# KAFKA_BROKERS=N: node n (1..N) listens on client port + 2(n-1) and controller port
# + 2(n-1) (9092/9093, 9094/9095, 9096/9097); .run/kafka-<n>.{pid,log}, .run/kafka-<n>-data.
# `start` starts whichever nodes are not running (a node killed on purpose, say) and waits
# until the cluster answers with every node.
set -euo pipefail

# Also the version of the apache/kafka image in docker-compose.yml (a test checks they match).
KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HERE="$ROOT/scripts/kafka"
PATTERN="kafka.Kafka"            # identifies our broker in /proc/<pid>/cmdline

bootstrap=$(setting KAFKA_BOOTSTRAP_SERVERS localhost:9092)
first=${bootstrap%%,*}           # the local broker (node 1) serves the first address listed
HOST=${first%:*}
PORT=${first##*:}
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
BROKERS=$(setting KAFKA_BROKERS 1)
[[ $BROKERS =~ ^[1-9][0-9]?$ ]] || { echo "kafka: KAFKA_BROKERS must be 1 to 99" >&2; exit 2; }
# Heap of each node: 512 MiB alone, smaller in a cluster so that three fit beside the rest.
HEAP_MB=$(setting KAFKA_HEAP_MB "$( ((BROKERS == 1)) && echo 512 || echo 320)")

# Node n's name (pid and log files), ports, data dir.
node_name() { if ((BROKERS == 1)); then echo kafka; else echo "kafka-$1"; fi; }
node_port() { echo $((PORT + 2 * ($1 - 1))); }   # as kafka_servers (lib.sh) lists them
node_controller_port() { echo $((CONTROLLER_PORT + 2 * ($1 - 1))); }
node_data() { echo "$RUN/$(node_name "$1")-data"; }

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

render() {   # node n's server.properties
  local n=$1 quorum replication min_isr voters="" i
  if ((BROKERS == 1)); then
    quorum="controller.quorum.bootstrap.servers=localhost:$CONTROLLER_PORT"
  else
    for ((i = 1; i <= BROKERS; i++)); do voters+="${voters:+,}$i@localhost:$(node_controller_port "$i")"; done
    quorum="controller.quorum.voters=$voters"
  fi
  read -r replication min_isr <<<"$(kafka_replication)"
  sed -e "s|@HOST@|$HOST|g" -e "s|@PORT@|$(node_port "$n")|g" \
    -e "s|@CONTROLLER_PORT@|$(node_controller_port "$n")|g" -e "s|@NODE_ID@|$n|g" \
    -e "s|@QUORUM@|$quorum|g" -e "s|@REPLICATION@|$replication|g" -e "s|@MIN_ISR@|$min_isr|g" \
    -e "s|@LOG_DIRS@|$(node_data "$n")|g" "$HERE/server.properties" >"$RUN/$(node_name "$n").properties"
}

format() {   # node n's data dir, once: meta.properties keeps the cluster id across restarts
  local n=$1 name id="" file i
  name=$(node_name "$n")
  [[ ! -f $(node_data "$n")/meta.properties ]] || return 0
  # Every node of a cluster shares one id: that of a node formatted earlier, if any.
  for ((i = 1; i <= BROKERS; i++)); do
    file=$(node_data "$i")/meta.properties
    [[ -f $file ]] && id=$(sed -n 's/^cluster.id=//p' "$file") && break
  done
  if [[ -z $id ]]; then
    id=$(tool kafka.tools.StorageTool random-uuid)
    [[ $id =~ ^[A-Za-z0-9_-]{22}$ ]] || { echo "kafka: bad cluster id: $id" >&2; exit 1; }
  fi
  echo "kafka: formatting $(node_data "$n") (cluster id $id)"
  local mode=(--standalone)
  ((BROKERS == 1)) || mode=()   # a static quorum (controller.quorum.voters)
  tool kafka.tools.StorageTool format -t "$id" -c "$RUN/$name.properties" "${mode[@]}" -g \
    >>"$RUN/$name.log" 2>&1 || fail_with_log "$name" "storage format failed"
}

start_node() {
  local n=$1 name port
  name=$(node_name "$n")
  if alive "$name" "$PATTERN"; then
    echo "$name: already running (pid $(<"$RUN/$name.pid")) on $HOST:$(node_port "$n")"; return 0
  fi
  # Someone else's broker on our ports would make the readiness check pass for the wrong one.
  for port in "$(node_port "$n")" "$(node_controller_port "$n")"; do
    if port_open localhost "$port"; then
      echo "$name: port $port is already in use by another process" >&2; exit 1
    fi
  done
  render "$n"
  format "$n"
  echo "$name: starting Kafka $KAFKA_VERSION on $HOST:$(node_port "$n") (log: ${RUN#"$ROOT"/}/$name.log)"
  # setsid: own session, so Ctrl-C in the terminal that ran `make up` does not reach it.
  (cd "$ROOT" && exec setsid nohup java "-Xms${HEAP_MB}m" "-Xmx${HEAP_MB}m" -XX:+UseG1GC \
    -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
    -cp "$LIBS/*" kafka.Kafka "$RUN/$name.properties" >>"$RUN/$name.log" 2>&1 </dev/null) &
  echo $! >"$RUN/$name.pid"
}

start() {
  install
  mkdir -p "$RUN"
  local n name
  # Every node first: a cluster's controllers need a majority of them to elect a leader.
  for ((n = 1; n <= BROKERS; n++)); do start_node "$n"; done

  # Ready = each node accepts connections and the cluster answers a metadata request
  # listing every node.
  local deadline=$((SECONDS + 120)) out="" servers
  servers=$(kafka_servers)
  while ((SECONDS < deadline)); do
    local open=1
    for ((n = 1; n <= BROKERS; n++)); do
      name=$(node_name "$n")
      still_running "$name" || fail_with_log "$name" "the broker exited during start-up"
      port_open localhost "$(node_port "$n")" || open=0
    done
    if ((open)) && out=$(tool "$HERE/Ready.java" "$servers" 10000 "$BROKERS" 2>&1); then
      echo "kafka: ready, $out"; return 0
    fi
    sleep 0.5
  done
  [[ -z $out ]] || echo "kafka: $out" >&2
  fail_with_log "$(node_name 1)" "not ready after 120 s"
}

stop() {
  local name names
  # Every node with a pid file (a cluster started with another KAFKA_BROKERS included), so
  # that `make down` stops whatever `make up` started.
  names=$(pid_names kafka)
  [[ -n $names ]] || { echo "kafka: not running"; return 0; }
  # Together: a node stopping alone waits for the quorum the others no longer form.
  for name in $names; do stop_pid "$name" "$PATTERN" & done
  wait
}

status() {   # succeeds when every node started is running
  local name names rc=0
  names=$(pid_names kafka)
  [[ -n $names ]] || { echo "kafka: not running"; return 1; }
  for name in $names; do
    if alive "$name" "$PATTERN"; then echo "$name: running (pid $(<"$RUN/$name.pid"))"
    else echo "$name: not running"; rc=1; fi
  done
  return "$rc"
}

case "${1-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  classpath) install >&2; echo "$LIBS/*" ;;
  *) echo "usage: $0 install|start|stop|status|classpath" >&2; exit 2 ;;
esac
