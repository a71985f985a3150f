#!/usr/bin/env bash
# The services in the background, for `make up` / `make down`: APIS API replicas and
# SCHEDULERS schedulers (1 each by default).
# Usage: scripts/services.sh start|stop|status|info
#
# Instance i listens on API_PORT + i - 1 (API) or SCHEDULER_PORT + i - 1 (scheduler), so
# the first keeps the documented port. One instance keeps .run/<name>.{pid,log}; several
# are .run/<name>-<i>.{pid,log}. With several APIs each scheduler gets them all as its
# API_URL list; with KAFKA_BROKERS > 1 the services get every broker of the local cluster,
# replication factor 3 (at most the brokers) and min.insync.replicas one less
# (kafka_replication in lib.sh, as the brokers themselves); with a PostgreSQL cluster
# (POSTGRES_NODES > 1, scripts/postgres.sh) a DATABASE_URL naming every node.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

API_PORT=$(setting API_PORT 8000)
SCHEDULER_PORT=$(setting SCHEDULER_PORT 8010)
APIS=$(setting APIS 1)
SCHEDULERS=$(setting SCHEDULERS 1)
BROKERS=$(setting KAFKA_BROKERS 1)
PYTHON="$ROOT/${VENV:-.venv}/bin/python"
for count in "$APIS" "$SCHEDULERS"; do
  [[ $count =~ ^[1-9][0-9]?$ ]] || { echo "services: APIS and SCHEDULERS must be 1 to 99" >&2; exit 2; }
done

count_of() { if [[ $1 == api ]]; then echo "$APIS"; else echo "$SCHEDULERS"; fi; }
name_of() { if (($(count_of "$1") == 1)); then echo "$1"; else echo "$1-$2"; fi; }   # KIND I
port_of() {   # KIND I
  if [[ $1 == api ]]; then echo $((API_PORT + $2 - 1)); else echo $((SCHEDULER_PORT + $2 - 1)); fi
}

http_ok() {   # the URL answers 200
  if command -v curl >/dev/null; then
    [[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1") == 200 ]]
  else
    python3 -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null
  fi
}

# What every instance gets beyond .env: the local Kafka and PostgreSQL clusters, if any.
common_env() {
  if (($(postgres_nodes) > 1)); then echo "DATABASE_URL=$(database_url)"; fi
  if ((BROKERS > 1)); then
    local replication min_isr
    read -r replication min_isr <<<"$(kafka_replication)"
    echo "KAFKA_BOOTSTRAP_SERVERS=$(kafka_servers)"
    echo "KAFKA_TOPIC_REPLICATION_FACTOR=$replication"
    echo "KAFKA_TOPIC_MIN_INSYNC_REPLICAS=$min_isr"
  fi
}

api_urls() {
  local i urls=""
  for ((i = 1; i <= APIS; i++)); do urls+="${urls:+,}http://localhost:$(port_of api "$i")"; done
  echo "$urls"
}

launch() {   # KIND I
  local kind=$1 i=$2 name port
  name=$(name_of "$kind" "$i")
  port=$(port_of "$kind" "$i")
  if alive "$name" "services.$kind"; then
    echo "$name: already running (pid $(<"$RUN/$name.pid"))"; return 0
  fi
  # Another process on the port would answer /ready in place of ours.
  if port_open localhost "$port"; then
    echo "$name: port $port is already in use by another process" >&2; exit 1
  fi
  local env=()
  mapfile -t env < <(common_env)
  if [[ $kind == api ]]; then
    env+=("API_PORT=$port")
  else
    env+=("SCHEDULER_PORT=$port")
    ((APIS == 1)) || env+=("API_URL=$(api_urls)")
  fi
  echo "$name: starting on port $port (log: ${RUN#"$ROOT"/}/$name.log)"
  # setsid: own session, so Ctrl-C in the terminal that ran `make up` does not reach it.
  (cd "$ROOT" && exec env "${env[@]}" setsid nohup "$PYTHON" -m "services.$kind" \
    >>"$RUN/$name.log" 2>&1 </dev/null) &
  echo $! >"$RUN/$name.pid"
}

start() {
  [[ -x $PYTHON ]] || { echo "services: $PYTHON missing; run make install" >&2; exit 1; }
  mkdir -p "$RUN"
  local kind i name
  for kind in api scheduler; do
    for ((i = 1; i <= $(count_of "$kind"); i++)); do launch "$kind" "$i"; done
  done

  # Ready = /ready answers 200, i.e. each instance reaches its database and Kafka.
  local deadline=$((SECONDS + 90))
  for kind in api scheduler; do
    for ((i = 1; i <= $(count_of "$kind"); i++)); do
      name=$(name_of "$kind" "$i")
      until http_ok "http://localhost:$(port_of "$kind" "$i")/ready"; do
        still_running "$name" || fail_with_log "$name" "exited during start-up"
        ((SECONDS < deadline)) || fail_with_log "$name" "/ready did not answer 200 within 90 s"
        sleep 0.3
      done
      echo "$name: ready"
    done
  done
}

stop() {
  local kind name names
  # The schedulers first: they must not keep sending batches to APIs that are going away.
  # Every instance with a pid file (whatever APIS or SCHEDULERS they were started with).
  for kind in scheduler api; do
    names=$(pid_names "$kind")
    [[ -n $names ]] || { echo "$kind: not running"; continue; }
    for name in $names; do stop_pid "$name" "services.$kind" & done
    wait
  done
}

status() {   # succeeds when every instance started is running
  local kind name names rc=0
  for kind in api scheduler; do
    names=$(pid_names "$kind")
    [[ -n $names ]] || { echo "$kind: not running"; rc=1; continue; }
    for name in $names; do
      if alive "$name" "services.$kind"; then echo "$name: running (pid $(<"$RUN/$name.pid"))"
      else echo "$name: not running"; rc=1; fi
    done
  done
  return "$rc"
}

info() {   # what `make up` prints once everything is ready
  local i
  for ((i = 1; i <= APIS; i++)); do printf 'API:       http://localhost:%s/docs\n' "$(port_of api "$i")"; done
  for ((i = 1; i <= SCHEDULERS; i++)); do
    printf 'Scheduler: http://localhost:%s/docs\n' "$(port_of scheduler "$i")"
  done
  ((BROKERS == 1)) || echo "Kafka:     $(kafka_servers)"
  (($(postgres_nodes) == 1)) || echo "Database:  $(database_url)"
  # The token the scheduler sends: the first of API_TOKENS, else API_TOKEN.
  local token
  token=$(setting API_TOKENS)
  token=${token%%,*}
  token=${token//[[:space:]]/}
  [[ -n $token ]] || token=$(setting API_TOKEN)
  cat <<EOF2
Try it:
curl -X POST http://localhost:$API_PORT/produto/manual -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{"productId": "12369", "productName": "Nome do Produto", "productDescription": "Descrição do Produto", "price": 100.0, "currency": "BRL", "stockQuantity": 50, "category": "Categoria do Produto"}'
EOF2
}

case "${1-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  info) info ;;
  *) echo "usage: $0 start|stop|status|info" >&2; exit 2 ;;
esac
