# shellcheck shell=bash
# Helpers shared by scripts/*.sh; sourced, not run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# All runtime state (pids, logs, data); gitignored. FLUXO_RUN_DIR gives a second, separate
# set (the reliability tests run their own broker and database server with it).
RUN="${FLUXO_RUN_DIR:-$ROOT/.run}"
# shellcheck disable=SC2034  # used by the scripts that source this file
if [[ $(id -u) == 0 ]]; then SUDO=""; else SUDO=sudo; fi

# setting NAME [DEFAULT]: the environment wins, then .env, then .env.example — the same
# precedence the services use, so the scripts and the services agree on ports and URLs.
setting() {
  local name=$1 file value
  if [[ -n ${!name-} ]]; then printf '%s\n' "${!name}"; return; fi
  for file in "$ROOT/.env" "$ROOT/.env.example"; do
    [[ -f $file ]] || continue
    value=$(sed -n "s/^[[:space:]]*\(export[[:space:]]\+\)\?$name=//p" "$file" | tail -n 1)
    if [[ -n $value ]]; then
      value=${value%"${value##*[![:space:]]}"}           # trailing blanks
      [[ $value =~ ^\"(.*)\"$|^\'(.*)\'$ ]] && value=${BASH_REMATCH[1]}${BASH_REMATCH[2]}
      printf '%s\n' "$value"; return
    fi
  done
  printf '%s\n' "${2-}"
}

# running PID: alive and not a zombie (a container's init may never reap our children).
# Reads /proc directly: minimal images have no ps.
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }                  # the state letter follows the command name's ")"
  [[ $stat != Z* ]]
}

# alive NAME PATTERN: the process in .run/NAME.pid runs and is still ours (pids get reused).
alive() {
  local pid
  pid=$(cat "$RUN/$1.pid" 2>/dev/null) && [[ -n $pid ]] && running "$pid" &&
    grep -qa -- "$2" "/proc/$pid/cmdline" 2>/dev/null
}

# still_running NAME: the process in .run/NAME.pid has not ended. For the waits just after a
# start: until the forked shell has exec'd the program, its command line is not yet the one
# `alive` looks for.
still_running() {
  local pid
  pid=$(cat "$RUN/$1.pid" 2>/dev/null) && [[ -n $pid ]] && running "$pid"
}

# stop_pid NAME PATTERN: SIGTERM, up to 30 s for a clean exit, then SIGKILL.
stop_pid() {
  local name=$1 pid i
  if ! alive "$name" "$2"; then
    rm -f "$RUN/$name.pid"; echo "$name: not running"; return 0
  fi
  pid=$(<"$RUN/$name.pid")
  echo "$name: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do running "$pid" || break; sleep 0.1; done
  if running "$pid"; then
    echo "$name: still running after 30 s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
  echo "$name: stopped"
}

# pid_names NAME: the name of every pid file of NAME in the run directory, one a line: NAME
# (one instance) and NAME-<n> (several), whatever count they were started with, so that a
# stop finds all that a start left.
pid_names() {
  local file
  for file in "$RUN/$1.pid" "$RUN/$1"-[0-9]*.pid; do
    [[ -f $file ]] && basename "$file" .pid
  done
  return 0
}

# port_open HOST PORT: something accepts TCP connections there.
port_open() {
  # shellcheck disable=SC2016  # $0 and $1 are the inner shell's, expanded there
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# fail_with_log NAME MESSAGE: print the message and the end of .run/NAME.log, then exit 1.
fail_with_log() {
  echo "$1: $2; last 30 lines of $RUN/$1.log:" >&2
  tail -n 30 "$RUN/$1.log" >&2 2>/dev/null || true
  exit 1
}

# kafka_servers: the client address of every node of the local runner's Kafka
# (scripts/kafka.sh), comma-separated: KAFKA_BROKERS nodes, node n on the first
# KAFKA_BOOTSTRAP_SERVERS address's port + 2(n-1).
kafka_servers() {
  local bootstrap first count n out=""
  bootstrap=$(setting KAFKA_BOOTSTRAP_SERVERS localhost:9092)
  first=${bootstrap%%,*}
  count=$(setting KAFKA_BROKERS 1)
  for ((n = 1; n <= count; n++)); do out+="${out:+,}${first%:*}:$((${first##*:} + 2 * (n - 1)))"; done
  echo "$out"
}

# kafka_replication: "FACTOR MIN_INSYNC" for the local runner's Kafka (scripts/kafka.sh) and
# the topics the services make on it: replication factor KAFKA_BROKERS, at most 3, and
# min.insync.replicas one less, at least 1.
kafka_replication() {
  local count factor
  count=$(setting KAFKA_BROKERS 1)
  factor=$((count < 3 ? count : 3))
  echo "$factor $((factor > 1 ? factor - 1 : 1))"
}

# postgres_nodes: how many PostgreSQL nodes the local runner runs (scripts/postgres.sh):
# POSTGRES_NODES from the environment, else the count its last start chose (kept in
# .run/postgres-nodes, so that `make psql`, `make down` and a later `make up` need not be
# told again), else .env's, else 1.
postgres_nodes() {
  if [[ -n ${POSTGRES_NODES-} ]]; then echo "$POSTGRES_NODES"
  elif [[ -s $RUN/postgres-nodes ]]; then cat "$RUN/postgres-nodes"
  else setting POSTGRES_NODES 1; fi
}

# database_url: the URL of the local runner's database: DATABASE_URL; with several nodes,
# every node's host:port (node n on DATABASE_URL's first port + n - 1) and
# target_session_attrs=read-write, so that a client connects to whichever is the primary.
database_url() {
  local url count rest hosts first host port n list=""
  url=$(setting DATABASE_URL postgresql://fluxo:fluxo@localhost:5432/fluxo)
  count=$(postgres_nodes)
  if ((count <= 1)); then echo "$url"; return; fi
  [[ $url =~ ^([a-z]+://)([^@/?]*@)?([^/?]*)(.*)$ ]] || { echo "$url"; return; }
  hosts=${BASH_REMATCH[3]}
  rest=${BASH_REMATCH[4]}
  first=${hosts%%,*}
  host=${first%:*}
  port=${first##*:}
  if [[ $first != *:* || $port == *]* ]]; then host=$first; port=5432; fi   # no port, or [::1]
  for ((n = 1; n <= count; n++)); do list+="${list:+,}$host:$((port + n - 1))"; done
  if [[ $rest != *target_session_attrs=* ]]; then
    if [[ $rest == *\?* ]]; then rest+="&target_session_attrs=read-write"
    else rest+="?target_session_attrs=read-write"; fi
  fi
  echo "${BASH_REMATCH[1]}${BASH_REMATCH[2]}$list$rest"
}
