#!/usr/bin/env bash
# Local PostgreSQL from Debian's packages, with the role and database of DATABASE_URL.
# Usage: scripts/postgres.sh install|start|stop|status|destroy
#
# One node (POSTGRES_NODES=1, the default): a Debian cluster (pg_ctlcluster) on DATABASE_URL's
# port; .run/postgres.pid when we started it.
# POSTGRES_NODES=N (3): N PostgreSQL nodes under Patroni with an N-member etcd, on consecutive
# ports from bases that the environment may move (the tests run clusters on free ports):
#   node n          PostgreSQL on DATABASE_URL's port + n - 1 (5432, 5433, 5434),
#                   Patroni's REST API on POSTGRES_PATRONI_PORT + n - 1 (8101, 8102, 8103),
#                   .run/postgres-<n>.{pid,log} (Patroni's pid; Patroni runs its postgres)
#   etcd member n   client POSTGRES_ETCD_PORT + 2(n - 1), peer one above (2379/2380,
#                   2381/2382, 2383/2384), .run/etcd-<n>.{pid,log}
# The cluster's data (each node's data directory, each member's, the Patroni configuration
# with its passwords) lives in POSTGRES_CLUSTER_DIR: by default
# /var/lib/postgresql/<major>/patroni-<port> as root (PostgreSQL then runs as the postgres
# user, as Debian's clusters do), .run/postgres-cluster otherwise; apart from the single
# node's, so that switching modes loses neither. `destroy` stops the cluster and deletes it.
# The count chosen is kept in .run/postgres-nodes (postgres_nodes in lib.sh).
# POSTGRES_WAL_LEVEL=logical (for the benchmark's Debezium peer, bench/peer/) sets the single
# node's wal_level when it starts and gives the role REPLICATION.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DATABASE_URL=$(setting DATABASE_URL postgresql://fluxo:fluxo@localhost:5432/fluxo)
# DB_* rather than PG*: exported PG* variables of the caller must keep their meaning.
eval "$(python3 - "$DATABASE_URL" <<'PY'
import shlex, sys
from urllib.parse import unquote, urlsplit
u = urlsplit(sys.argv[1])
# A multi-host URL (a cluster's, as the services get it): the first host names the server.
userinfo, at, hosts = u.netloc.rpartition("@")
u = u._replace(netloc=userinfo + at + hosts.split(",")[0])
for name, value in [("DB_USER", unquote(u.username or "")), ("DB_PASS", unquote(u.password or "")),
                    ("DB_HOST", u.hostname or "localhost"), ("DB_PORT", u.port or 5432),
                    ("DB_NAME", unquote(u.path.lstrip("/")))]:
    print(f"{name}={shlex.quote(str(value))}")
PY
)"
MAX_CONNECTIONS=200   # the tests open pools against several throw-away databases
WAL_LEVEL="${POSTGRES_WAL_LEVEL:-}"

install() { "$ROOT/scripts/prereqs.sh" postgresql; }

# The newest PostgreSQL major installed (the distribution's: 15 on Debian 12, 17 on 13).
# shellcheck disable=SC2012  # its directories are named by version numbers only
pg_major() { ls /usr/lib/postgresql | sort -V | tail -n 1; }

# Sets VER and NAME: the cluster listening on DATABASE_URL's port (any major version).
# With "create", makes one (newest installed version) when none listens there: "main" on a
# machine without clusters; otherwise one named after the port ("fluxo15432"), started only
# on demand, so that a second server (the reliability tests') never touches the others.
find_cluster() {
  read -r VER NAME _ < <(pg_lsclusters -h | awk -v port="$DB_PORT" '$3 == port' | head -n 1) || true
  [[ -n ${VER-} ]] && return 0
  [[ ${1-} == create ]] || { echo "postgres: no cluster on port $DB_PORT"; return 1; }
  VER=$(pg_major)
  if [[ -z $(pg_lsclusters -h) ]]; then
    NAME=main
    echo "postgres: creating cluster $VER/$NAME on port $DB_PORT"
    $SUDO pg_createcluster "$VER" "$NAME" -p "$DB_PORT"
  else
    NAME="fluxo$DB_PORT"
    echo "postgres: creating cluster $VER/$NAME on port $DB_PORT (other clusters exist)"
    $SUDO pg_createcluster --start-conf=manual "$VER" "$NAME" -p "$DB_PORT"
  fi
}

cluster_running() { $SUDO pg_ctlcluster "$VER" "$NAME" status >/dev/null 2>&1; }

# psql as the postgres superuser over the local socket (peer authentication).
as_postgres() {
  if [[ $(id -u) == 0 ]]; then (cd / && runuser -u postgres -- "$@")
  else (cd / && sudo -u postgres -- "$@"); fi
}

start() {
  install
  find_cluster create
  if cluster_running; then
    # Someone else started it (or a pid file is left from an earlier run): not ours to stop.
    alive postgres postgres || rm -f "$RUN/postgres.pid"
    echo "postgres: cluster $VER/$NAME already running on port $DB_PORT"
    if [[ -n $WAL_LEVEL ]] && [[ $(as_postgres psql -X -A -t -p "$DB_PORT" -d postgres -c 'SHOW wal_level') != "$WAL_LEVEL" ]]; then
      echo "postgres: cluster $VER/$NAME runs without wal_level=$WAL_LEVEL; stop it first" >&2; exit 1
    fi
  else
    if [[ -n $WAL_LEVEL ]]; then $SUDO pg_conftool "$VER" "$NAME" set wal_level "$WAL_LEVEL"; fi
    # Raise max_connections while it is down anyway: no restart of anybody's server needed.
    if (($(pg_conftool -s "$VER" "$NAME" show max_connections 2>/dev/null || echo 0) < MAX_CONNECTIONS)); then
      $SUDO pg_conftool "$VER" "$NAME" set max_connections "$MAX_CONNECTIONS"
    fi
    echo "postgres: starting cluster $VER/$NAME on port $DB_PORT"
    $SUDO pg_ctlcluster "$VER" "$NAME" start
    mkdir -p "$RUN"
    # Recorded only when we started it: `make down` stops only what `make up` started.
    $SUDO pg_ctlcluster "$VER" "$NAME" status | sed -n 's/.*(PID: \([0-9]*\)).*/\1/p' >"$RUN/postgres.pid"
  fi

  local deadline=$((SECONDS + 30))
  until pg_isready -q -h "$DB_HOST" -p "$DB_PORT"; do
    if ((SECONDS >= deadline)); then
      echo "postgres: not accepting connections after 30 s; see /var/log/postgresql/" >&2; exit 1
    fi
    sleep 0.5
  done

  ensure_role_and_database as_postgres psql -p "$DB_PORT" -d postgres
  if [[ $WAL_LEVEL == logical ]]; then
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$DB_PORT" -d postgres -v user="$DB_USER" \
      <<<'ALTER ROLE :"user" WITH REPLICATION;'
  fi

  # Connect exactly as the services will: TCP and the URL's password (no trust/peer).
  if ! psql "$DATABASE_URL" -X -q -t -c 'select 1' >/dev/null; then
    echo "postgres: cannot log in with DATABASE_URL; check pg_hba.conf of $VER/$NAME" >&2; exit 1
  fi
  echo "postgres: ready, database $DB_NAME for role $DB_USER on $DB_HOST:$DB_PORT"
}

# ensure_role_and_database PSQL...: the role and database of DATABASE_URL, made with PSQL (a
# psql command line of a superuser). Idempotent: create what is missing; (re)set the
# password so it always matches the URL. CREATEDB: the tests create throw-away databases.
ensure_role_and_database() {
  "$@" -X -q -v ON_ERROR_STOP=1 -v user="$DB_USER" -v pass="$DB_PASS" -v db="$DB_NAME" <<'SQL'
SELECT format('CREATE ROLE %I', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
ALTER ROLE :"user" WITH LOGIN CREATEDB PASSWORD :'pass';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
}

stop_single() {
  rm -f "$RUN/postgres.pid"
  command -v pg_ctlcluster >/dev/null && find_cluster || return 0
  if cluster_running; then
    echo "postgres: stopping cluster $VER/$NAME"
    $SUDO pg_ctlcluster "$VER" "$NAME" stop -m fast
  else
    echo "postgres: cluster $VER/$NAME not running"
  fi
}

# --- a cluster under Patroni (POSTGRES_NODES > 1) -----------------------------------------

NODES=$(postgres_nodes)
[[ $NODES =~ ^[1-9]$ ]] || { echo "postgres: POSTGRES_NODES must be 1 to 9" >&2; exit 2; }
PATRONI_PORT=$(setting POSTGRES_PATRONI_PORT 8101)
ETCD_PORT=$(setting POSTGRES_ETCD_PORT 2379)
SCOPE=fluxo
# Patroni's leader lock, loop and patience with etcd, seconds (loop_wait + 2 * retry_timeout
# <= ttl, as Patroni requires). A dead primary's lock expires within TTL and its synchronous
# standby takes it at its next loop: a writable primary again about TTL + LOOP_WAIT after a
# crash. An etcd election (a second or two) stays inside RETRY_TIMEOUT: nobody is demoted.
TTL=15
LOOP_WAIT=2
RETRY_TIMEOUT=5

node_port() { echo $((DB_PORT + $1 - 1)); }
rest_port() { echo $((PATRONI_PORT + $1 - 1)); }
etcd_client_port() { echo $((ETCD_PORT + 2 * ($1 - 1))); }
etcd_peer_port() { echo $((ETCD_PORT + 2 * ($1 - 1) + 1)); }

# As root, PostgreSQL runs as the postgres user (it refuses root), in a directory that user
# reaches whatever the checkout's permissions; otherwise as whoever runs this script.
cluster_dir() {
  if [[ -n ${POSTGRES_CLUSTER_DIR-} ]]; then echo "$POSTGRES_CLUSTER_DIR"
  elif [[ $(id -u) == 0 ]]; then echo "/var/lib/postgresql/$(pg_major)/patroni-$DB_PORT"
  else echo "$RUN/postgres-cluster"; fi
}

patroni_config() { echo "$(cluster_dir)/node-$1.yml"; }

# secret NAME: the superuser's or the replication role's password, made once and kept with
# the data it opens.
secret() {
  local file
  file="$(cluster_dir)/$1.secret"
  [[ -s $file ]] || (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(16))' >"$file")
  cat "$file"
}

render_node() {   # node n's Patroni configuration
  local n=$1 dir hosts="" i
  dir=$(cluster_dir)
  for ((i = 1; i <= NODES; i++)); do hosts+="${hosts:+, }127.0.0.1:$(etcd_client_port "$i")"; done
  (umask 077 && cat >"$(patroni_config "$n")") <<YAML
scope: $SCOPE
name: node-$n
restapi:
  listen: 127.0.0.1:$(rest_port "$n")
  connect_address: 127.0.0.1:$(rest_port "$n")
etcd3:
  hosts: [$hosts]
bootstrap:
  dcs:
    ttl: $TTL
    loop_wait: $LOOP_WAIT
    retry_timeout: $RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    # A commit returns once a second node holds it; with no standby left, writes wait
    # (the API answers 503) rather than live on one disk.
    synchronous_mode: true
    synchronous_mode_strict: true
    synchronous_node_count: 1
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: $MAX_CONNECTIONS
        wal_log_hints: "on"
        wal_keep_size: 256MB
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - data-checksums
  pg_hba:
    - local all all scram-sha-256
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host replication replicator ::1/128 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
    - host all all ::1/128 scram-sha-256
postgresql:
  listen: localhost:$(node_port "$n")
  connect_address: 127.0.0.1:$(node_port "$n")
  data_dir: $dir/node-$n
  bin_dir: /usr/lib/postgresql/$(pg_major)/bin
  pgpass: $dir/node-$n.pgpass
  authentication:
    superuser: {username: postgres, password: $(secret superuser)}
    replication: {username: replicator, password: $(secret replication)}
  parameters:
    unix_socket_directories: $dir
YAML
}

etcd_members() {   # etcd's --initial-cluster
  local i out=""
  for ((i = 1; i <= NODES; i++)); do out+="${out:+,}etcd-$i=http://127.0.0.1:$(etcd_peer_port "$i")"; done
  echo "$out"
}

# refuse_taken NAME PORT...: another process on one of these ports would answer for ours.
refuse_taken() {
  local name=$1 port
  shift
  for port; do
    if port_open 127.0.0.1 "$port"; then
      echo "$name: port $port is already in use by another process" >&2; exit 1
    fi
  done
}

start_etcd() {
  local n=$1 name="etcd-$1" data state=new
  if alive "$name" etcd; then echo "$name: already running (pid $(<"$RUN/$name.pid"))"; return 0; fi
  refuse_taken "$name" "$(etcd_client_port "$n")" "$(etcd_peer_port "$n")"
  data="$(cluster_dir)/etcd-$n"
  [[ ! -d $data/member ]] || state=existing
  echo "$name: starting etcd on 127.0.0.1:$(etcd_client_port "$n") (log: ${RUN#"$ROOT"/}/$name.log)"
  # setsid: own session, so Ctrl-C in the terminal that ran `make up` does not reach it.
  (cd / && exec setsid nohup etcd --name "$name" --data-dir "$data" \
    --listen-client-urls "http://127.0.0.1:$(etcd_client_port "$n")" \
    --advertise-client-urls "http://127.0.0.1:$(etcd_client_port "$n")" \
    --listen-peer-urls "http://127.0.0.1:$(etcd_peer_port "$n")" \
    --initial-advertise-peer-urls "http://127.0.0.1:$(etcd_peer_port "$n")" \
    --initial-cluster "$(etcd_members)" --initial-cluster-state "$state" \
    --initial-cluster-token "$SCOPE-$ETCD_PORT" >>"$RUN/$name.log" 2>&1 </dev/null) &
  echo $! >"$RUN/$name.pid"
}

start_node() {
  local n=$1 name="postgres-$1" as=()
  if alive "$name" patroni; then echo "$name: already running (pid $(<"$RUN/$name.pid"))"; return 0; fi
  refuse_taken "$name" "$(node_port "$n")" "$(rest_port "$n")"
  render_node "$n"
  if [[ $(id -u) == 0 ]]; then
    chown postgres: "$(cluster_dir)" "$(cluster_dir)"/*.secret "$(patroni_config "$n")"
    as=(setpriv --reuid=postgres --regid=postgres --init-groups)
  fi
  echo "$name: starting Patroni with PostgreSQL $(pg_major) on localhost:$(node_port "$n")," \
    "its REST API on 127.0.0.1:$(rest_port "$n") (log: ${RUN#"$ROOT"/}/$name.log)"
  (cd / && exec setsid nohup "${as[@]}" patroni "$(patroni_config "$n")" \
    >>"$RUN/$name.log" 2>&1 </dev/null) &
  echo $! >"$RUN/$name.pid"
}

# Debian's own cluster on a node's port (the package's "main" on 5432) would take the
# node's place: stopped, and no longer started at boot.
stop_debian_clusters() {
  local n ver name port status
  for ((n = 1; n <= NODES; n++)); do
    while read -r ver name port status _; do
      [[ $port == "$(node_port "$n")" ]] || continue
      if [[ $status == online* ]]; then
        echo "postgres: stopping Debian's cluster $ver/$name on port $port (node $n's)"
        $SUDO pg_ctlcluster "$ver" "$name" stop -m fast
      fi
      echo manual | $SUDO tee "/etc/postgresql/$ver/$name/start.conf" >/dev/null
    done < <(pg_lsclusters -h)
  done
  rm -f "$RUN/postgres.pid"
}

cluster_py() { python3 "$ROOT/scripts/postgres/cluster.py" "$@"; }

start_cluster() {
  "$ROOT/scripts/prereqs.sh" postgresql patroni
  mkdir -p "$RUN"
  # From one node to a cluster: the single node stops; its data stays where it is.
  if [[ -f $RUN/postgres.pid ]]; then stop_single; fi
  stop_debian_clusters
  local dir n out leader
  dir=$(cluster_dir)
  mkdir -p "$dir"
  chmod 700 "$dir"
  echo "$NODES" >"$RUN/postgres-nodes"
  # Every etcd member first: Patroni needs their quorum before anything else.
  for ((n = 1; n <= NODES; n++)); do start_etcd "$n"; done
  for ((n = 1; n <= NODES; n++)); do start_node "$n"; done

  # Ready = a leader and every other node streaming from it, one synchronously (before
  # that, a commit waits).
  local deadline=$((SECONDS + 180))
  until out=$(cluster_py ready "$NODES" "$PATRONI_PORT"); do
    for ((n = 1; n <= NODES; n++)); do
      still_running "etcd-$n" || fail_with_log "etcd-$n" "etcd exited during start-up"
      still_running "postgres-$n" || fail_with_log "postgres-$n" "Patroni exited during start-up"
    done
    ((SECONDS < deadline)) ||
      fail_with_log postgres-1 "no leader with $((NODES - 1)) streaming replicas after 180 s"
    sleep 0.5
  done
  leader=$(cluster_py leader "$NODES" "$PATRONI_PORT")
  echo "postgres: cluster ready: $out"

  PGPASSWORD=$(secret superuser) ensure_role_and_database \
    psql -h 127.0.0.1 -p "$(node_port "$leader")" -U postgres -d postgres
  # Until every node has replayed them: a client that meets a standby lacking the database
  # first is refused there and tries no other host.
  deadline=$((SECONDS + 30))
  for ((n = 1; n <= NODES; n++)); do
    until PGPASSWORD=$DB_PASS psql -h "$DB_HOST" -p "$(node_port "$n")" -U "$DB_USER" -d "$DB_NAME" \
      -X -q -t -c 'select 1' >/dev/null 2>&1; do
      ((SECONDS < deadline)) || break
      sleep 0.2
    done
  done
  if ! psql "$(database_url)" -X -q -t -c 'select 1' >/dev/null; then
    echo "postgres: cannot log in with $(database_url)" >&2; exit 1
  fi
  echo "postgres: ready, database $DB_NAME for role $DB_USER on the primary of" \
    "$DB_HOST:$(node_port 1)-$(node_port "$NODES") (node $leader now)"
}

stop_cluster() {
  local name names leader
  names=$(pid_names postgres)
  # The replicas first, then the leader: nobody is promoted on the way down.
  leader=$(cluster_py leader "$NODES" "$PATRONI_PORT" 2>/dev/null) || leader=""
  for name in $names; do
    [[ $name == "postgres-$leader" || $name == postgres ]] || stop_pid "$name" patroni &
  done
  wait
  if [[ -n $leader && -f $RUN/postgres-$leader.pid ]]; then stop_pid "postgres-$leader" patroni; fi
  names=$(pid_names etcd)
  for name in $names; do stop_pid "$name" etcd & done
  wait
}

status_cluster() {
  local name names rc=0
  names="$(pid_names postgres) $(pid_names etcd)"
  [[ -n ${names// /} ]] || { echo "postgres: cluster not running"; return 1; }
  for name in $names; do
    [[ $name != postgres ]] || continue
    if alive "$name" "$([[ $name == etcd-* ]] && echo etcd || echo patroni)"; then
      echo "$name: running (pid $(<"$RUN/$name.pid"))"
    else
      echo "$name: not running"; rc=1
    fi
  done
  if ((rc == 0)) && [[ -r $(patroni_config 1) ]]; then patronictl -c "$(patroni_config 1)" list; fi
  return "$rc"
}

case "${1-}" in
  install)
    install
    ((NODES == 1)) || "$ROOT/scripts/prereqs.sh" patroni ;;
  start)
    if ((NODES == 1)); then
      # From a cluster to one node: the cluster stops; its data stays where it is.
      if [[ -n $(pid_names etcd) || $(pid_names postgres) == *postgres-* ]]; then stop_cluster; fi
      rm -f "$RUN/postgres-nodes"
      start
    else
      start_cluster
    fi ;;
  stop) if ((NODES == 1)); then stop_single; else stop_cluster; fi ;;
  destroy)
    ((NODES > 1)) || { echo "postgres: destroy deletes a cluster (POSTGRES_NODES > 1)" >&2; exit 2; }
    stop_cluster
    echo "postgres: deleting $(cluster_dir)"
    rm -rf "$(cluster_dir)" "$RUN/postgres-nodes" ;;
  status)
    if ((NODES > 1)); then status_cluster; exit; fi
    command -v pg_ctlcluster >/dev/null || { echo "postgres: not installed"; exit 1; }
    find_cluster || exit 1
    if cluster_running; then echo "postgres: cluster $VER/$NAME running on port $DB_PORT"
    else echo "postgres: cluster $VER/$NAME not running"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|status|destroy" >&2; exit 2 ;;
esac
