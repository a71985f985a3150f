#!/usr/bin/env bash
# Local PostgreSQL from Debian's packages (pg_ctlcluster), with the role and database
# of DATABASE_URL. Usage: scripts/postgres.sh install|start|stop|status
# POSTGRES_WAL_LEVEL=logical (for the benchmark's Debezium peer, bench/peer/) sets wal_level
# when the cluster starts and gives the role REPLICATION.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DATABASE_URL=$(setting DATABASE_URL postgresql://fluxo:fluxo@localhost:5432/fluxo)
# DB_* rather than PG*: exported PG* variables of the caller must keep their meaning.
eval "$(python3 - "$DATABASE_URL" <<'PY'
import shlex, sys
from urllib.parse import unquote, urlsplit
u = urlsplit(sys.argv[1])
for name, value in [("DB_USER", unquote(u.username or "")), ("DB_PASS", unquote(u.password or "")),
                    ("DB_HOST", u.hostname or "localhost"), ("DB_PORT", u.port or 5432),
                    ("DB_NAME", unquote(u.path.lstrip("/")))]:
    print(f"{name}={shlex.quote(str(value))}")
PY
)"
MAX_CONNECTIONS=200   # the tests open pools against several throw-away databases
WAL_LEVEL="${POSTGRES_WAL_LEVEL:-}"

install() { "$ROOT/scripts/prereqs.sh" postgresql; }

# Sets VER and NAME: the cluster listening on DATABASE_URL's port (any major version).
# With "create", makes one (newest installed version) when none listens there: "main" on a
# machine without clusters; otherwise one named after the port ("fluxo15432"), started only
# on demand, so that a second server (the reliability tests') never touches the others.
find_cluster() {
  read -r VER NAME _ < <(pg_lsclusters -h | awk -v port="$DB_PORT" '$3 == port' | head -n 1) || true
  [[ -n ${VER-} ]] && return 0
  [[ ${1-} == create ]] || { echo "postgres: no cluster on port $DB_PORT"; return 1; }
  VER=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
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

  # Idempotent: create what is missing; (re)set the password so it always matches the URL.
  # CREATEDB: the tests create throw-away databases.
  as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$DB_PORT" -d postgres \
    -v user="$DB_USER" -v pass="$DB_PASS" -v db="$DB_NAME" <<'SQL'
SELECT format('CREATE ROLE %I', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
ALTER ROLE :"user" WITH LOGIN CREATEDB PASSWORD :'pass';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
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

stop() {
  rm -f "$RUN/postgres.pid"
  command -v pg_ctlcluster >/dev/null && find_cluster || return 0
  if cluster_running; then
    echo "postgres: stopping cluster $VER/$NAME"
    $SUDO pg_ctlcluster "$VER" "$NAME" stop -m fast
  else
    echo "postgres: cluster $VER/$NAME not running"
  fi
}

case "${1-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status)
    command -v pg_ctlcluster >/dev/null || { echo "postgres: not installed"; exit 1; }
    find_cluster || exit 1
    if cluster_running; then echo "postgres: cluster $VER/$NAME running on port $DB_PORT"
    else echo "postgres: cluster $VER/$NAME not running"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
