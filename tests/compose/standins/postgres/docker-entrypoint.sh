#!/usr/bin/env bash
# The official postgres image's start-up contract: as root, own PGDATA and drop to postgres;
# on an empty PGDATA, initdb with POSTGRES_USER / POSTGRES_PASSWORD and create POSTGRES_DB.
set -euo pipefail
: "${PGDATA:=/var/lib/postgresql/data}"
[[ ${1-} == -* ]] && set -- postgres "$@"

if [[ ${1-} == postgres && $(id -u) == 0 ]]; then
  install -d -o postgres -g postgres -m 700 "$PGDATA"
  chown -R postgres:postgres "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [[ ${1-} == postgres && ! -s $PGDATA/PG_VERSION ]]; then
  : "${POSTGRES_PASSWORD:?is empty: set POSTGRES_PASSWORD, as for the official image}"
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  initdb -D "$PGDATA" --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    -E UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  if [[ $db != postgres ]]; then
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w -s start
    psql -X -q -v ON_ERROR_STOP=1 -U "$user" -d postgres -v db="$db" <<<'CREATE DATABASE :"db"'
    pg_ctl -D "$PGDATA" -m fast -w -s stop
  fi
  echo "stand-in postgres: initialised $PGDATA, database $db for role $user"
fi
exec "$@"
