#!/usr/bin/env bash
# What `make up` needs from the system, installed with apt (via sudo unless root) when missing.
# Usage: scripts/prereqs.sh [venv] [java] [postgresql] [patroni]
#   (no argument: the first three, and patroni when POSTGRES_NODES > 1)
#   venv        the venv module (venv, ensurepip) of the interpreter `make install` uses:
#               scripts/python.sh's pick for PYTHON, which make passes on from its command
#               line (Debian, Ubuntu: python3.X-venv of that interpreter's version)
#   java        a Java runtime >= 17 for Kafka (Debian: default-jre-headless, else openjdk-17)
#   postgresql  PostgreSQL with Debian's cluster tools (pg_ctlcluster, psql)
#   patroni     Patroni and etcd, for a PostgreSQL cluster (POSTGRES_NODES > 1); the services
#               the packages start by themselves are stopped and disabled (scripts/postgres.sh
#               runs its own etcd members and Patroni nodes)
# Without apt-get, it stops with one line naming every missing program and the version needed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

JAVA_MIN=17

java_major() {   # the major version of `java` on PATH, or 0
  local line
  line=$(java -version 2>&1 | head -n 1) || { echo 0; return; }
  [[ $line =~ \"(1\.)?([0-9]+) ]] && echo "${BASH_REMATCH[2]}" || echo 0
}

# The Debian package that brings Java >= 17: the distribution's default when it is new
# enough (17 on Debian 12, 21 on Debian 13 and Ubuntu 24.04), openjdk-17 otherwise.
java_package() {
  local candidate
  candidate=$(apt-cache policy default-jre-headless 2>/dev/null | sed -n 's/^ *Candidate: \(.*\)/\1/p')
  if [[ $candidate =~ ^([0-9]+:)?1\.([0-9]+) ]] && ((BASH_REMATCH[2] >= JAVA_MIN)); then
    echo default-jre-headless
  else
    echo openjdk-17-jre-headless
  fi
}

wanted=("$@")
if ((${#wanted[@]} == 0)); then
  wanted=(venv java postgresql)
  (($(postgres_nodes) == 1)) || wanted+=(patroni)
fi

missing=()    # what a person must install, for the message without apt
packages=()   # what apt installs
for what in "${wanted[@]}"; do
  case $what in
    venv)
      # No supported interpreter: scripts/python.sh says why and exits 1, whatever the system
      # (apt cannot choose a Python for us).
      python=$("$ROOT/scripts/python.sh" ${PYTHON:+"$PYTHON"}) || exit 1
      version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
      if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
        missing+=("python3 venv module of Python $version ($python)")
        packages+=("python$version-venv")
      fi
      ;;
    java)
      (($(java_major) >= JAVA_MIN)) || { missing+=("java (Java >= $JAVA_MIN)"); packages+=(java); }
      ;;
    postgresql)
      if ! { command -v pg_ctlcluster && command -v psql; } >/dev/null; then
        missing+=("pg_ctlcluster and psql (PostgreSQL >= 15, Debian's postgresql)")
        packages+=(postgresql)
      fi
      ;;
    patroni)
      # python3-etcd: Patroni's etcd3 client needs it, and on Debian 13 the package's
      # dependencies are met by another store's client (python3-consul) instead.
      if ! { command -v patroni && command -v patronictl && command -v etcd &&
        /usr/bin/python3 -c 'import etcd'; } >/dev/null 2>&1; then
        missing+=("patroni, patronictl and etcd (Debian's patroni, python3-etcd and etcd-server)")
        packages+=(patroni python3-etcd etcd-server)
      fi
      ;;
    *) echo "usage: $0 [venv] [java] [postgresql] [patroni]" >&2; exit 2 ;;
  esac
done
((${#missing[@]})) || exit 0

if ! command -v apt-get >/dev/null; then
  (IFS=';'; echo "prereqs: missing, and no apt-get to install them:${missing[*]/#/ }" >&2)
  exit 1
fi
(IFS=';'; echo "prereqs: installing${missing[*]/#/ } with apt-get")
$SUDO apt-get update -q
for i in "${!packages[@]}"; do
  [[ ${packages[$i]} == java ]] && packages[i]=$(java_package)
done
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
# etcd-server starts a default member on 2379, the port of our first member; patroni's unit
# has no configuration to run. Neither may come back at the next boot.
for service in etcd patroni; do
  [[ " ${packages[*]} " == *" $service"* ]] || continue
  { $SUDO systemctl disable --now "$service" || $SUDO service "$service" stop; } >/dev/null 2>&1 || true
  $SUDO update-rc.d "$service" disable >/dev/null 2>&1 || true
done
