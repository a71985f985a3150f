#!/usr/bin/env bash
# The two services in the background, for `make up` / `make down`.
# Usage: scripts/services.sh start|stop|status|info
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

API_PORT=$(setting API_PORT 8000)
SCHEDULER_PORT=$(setting SCHEDULER_PORT 8010)
PYTHON="$ROOT/${VENV:-.venv}/bin/python"

port_of() { if [[ $1 == api ]]; then echo "$API_PORT"; else echo "$SCHEDULER_PORT"; fi; }

http_ok() {   # the URL answers 200
  if command -v curl >/dev/null; then
    [[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1") == 200 ]]
  else
    python3 -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null
  fi
}

start() {
  [[ -x $PYTHON ]] || { echo "services: $PYTHON missing; run make install" >&2; exit 1; }
  mkdir -p "$RUN"
  local name
  for name in api scheduler; do
    if alive "$name" "services.$name"; then
      echo "$name: already running (pid $(<"$RUN/$name.pid"))"; continue
    fi
    # Another process on the port would answer /ready in place of ours.
    if port_open localhost "$(port_of "$name")"; then
      echo "$name: port $(port_of "$name") is already in use by another process" >&2; exit 1
    fi
    echo "$name: starting on port $(port_of "$name") (log: .run/$name.log)"
    # setsid: own session, so Ctrl-C in the terminal that ran `make up` does not reach it.
    (cd "$ROOT" && exec setsid nohup "$PYTHON" -m "services.$name" >>"$RUN/$name.log" 2>&1 </dev/null) &
    echo $! >"$RUN/$name.pid"
  done

  # Ready = /ready answers 200, i.e. each service reaches its database and Kafka.
  local deadline=$((SECONDS + 60))
  for name in api scheduler; do
    until http_ok "http://localhost:$(port_of "$name")/ready"; do
      alive "$name" "services.$name" || fail_with_log "$name" "exited during start-up"
      ((SECONDS < deadline)) || fail_with_log "$name" "/ready did not answer 200 within 60 s"
      sleep 0.3
    done
    echo "$name: ready"
  done
}

info() {   # what `make up` prints once everything is ready
  # The token the scheduler sends: the first of API_TOKENS, else API_TOKEN.
  local token
  token=$(setting API_TOKENS)
  token=${token%%,*}
  token=${token//[[:space:]]/}
  [[ -n $token ]] || token=$(setting API_TOKEN)
  cat <<EOF2
API:       http://localhost:$API_PORT/docs
Scheduler: http://localhost:$SCHEDULER_PORT/docs
Try it:
curl -X POST http://localhost:$API_PORT/produto/manual -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{"productId": "12369", "productName": "Nome do Produto", "productDescription": "Descrição do Produto", "price": 100.0, "currency": "BRL", "stockQuantity": 50, "category": "Categoria do Produto"}'
EOF2
}

case "${1-}" in
  start) start ;;
  # The scheduler first: it must not keep sending batches to an API that is going away.
  stop) stop_pid scheduler services.scheduler; stop_pid api services.api ;;
  status)
    rc=0
    for name in api scheduler; do
      if alive "$name" "services.$name"; then echo "$name: running (pid $(<"$RUN/$name.pid"))"
      else echo "$name: not running"; rc=1; fi
    done
    exit "$rc" ;;
  info) info ;;
  *) echo "usage: $0 start|stop|status|info" >&2; exit 2 ;;
esac
