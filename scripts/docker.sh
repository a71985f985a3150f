#!/usr/bin/env bash
# Docker for `make compose-up` and the system tests, on a machine that may reach no container
# registry. Usage: scripts/docker.sh COMMAND
#   engine          install Debian's docker.io if dockerd is missing, start dockerd if it does
#                   not answer (recorded in .run/dockerd.pid: only that one is ever stopped),
#                   and make `docker compose` v2 available (built once from the Go module proxy)
#   engine-stop     stop dockerd if `engine` started it
#   mirror-start    serve the local PyPI index and Maven repository (scripts/docker/mirror.py)
#                   over HTTP on the Docker bridge address, for containers
#   mirror-stop     stop that server
#   base SUITE      the image fluxo-dados-debian:SUITE, a bare Debian (debootstrap minbase
#                   with make, git, python3, ca-certificates, sudo); the rootfs is cached
#   standins        build the stand-in images of tests/compose/standins/ for the images the
#                   Dockerfile and docker-compose.yml name, where no such image exists locally
#                   and none can be pulled
#   ui-login [FILE] write a generated Kafka UI login into FILE (.env) unless one is set
#   compose-up      ui-login and all of the above, then build the project's image and start
#                   kafka, postgres, api and scheduler with `docker compose up -d --wait`
#   compose-down    `docker compose down` (volumes are kept), then engine-stop
#   bridge          print the host's address on the Docker bridge (where the mirror listens)
# Cached under .cache/docker/: the compose binary, the Debian rootfs tarballs, the mirror.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CACHE="$ROOT/.cache/docker"
COMPOSE_VERSION="v2.40.3"
PLUGINS=/usr/local/lib/docker/cli-plugins
MIRROR_PORT="${MIRROR_PORT:-3141}"
# The Python versions whose wheels the mirror holds: the stand-in image's and Debian 12's
# (3.11), and for the fresh-machine tests Debian 13's (3.13). compose-up needs only 3.11.
MIRROR_PYTHONS="${MIRROR_PYTHONS:-3.11 3.13}"
# The services `make compose-up` starts: all but webkafka, whose image (kafbat/kafka-ui) no
# stand-in replaces.
COMPOSE_SERVICES="${COMPOSE_SERVICES:-kafka postgres api scheduler}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# shellcheck disable=SC2032,SC2033  # sudo runs the docker program, not this function
docker() {
  if [[ -n $SUDO ]]; then sudo docker "$@"; else command docker "$@"; fi
}

apt_install() {
  command -v apt-get >/dev/null || { echo "docker: needs $* (and no apt-get here)" >&2; exit 1; }
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

engine() {
  if ! command -v dockerd >/dev/null; then
    echo "docker: installing Debian's docker.io"
    apt_install docker.io
  fi
  if ! docker info >/dev/null 2>&1; then
    mkdir -p "$RUN"
    echo "docker: starting dockerd (log: ${RUN#"$ROOT"/}/dockerd.log)"
    (cd / && exec setsid nohup $SUDO dockerd >>"$RUN/dockerd.log" 2>&1 </dev/null) &
    echo $! >"$RUN/dockerd.pid"
    local deadline=$((SECONDS + 60))
    until docker info >/dev/null 2>&1; do
      still_running dockerd || fail_with_log dockerd "dockerd exited during start-up"
      ((SECONDS < deadline)) || fail_with_log dockerd "dockerd did not answer within 60 s"
      sleep 0.5
    done
  fi
  compose_plugin
}

engine_stop() {
  if alive dockerd dockerd; then stop_pid dockerd dockerd; else rm -f "$RUN/dockerd.pid"; fi
}

# Compose v2 (Debian packages only v1, which names containers project_service_1). `go install`
# refuses its module (exclude directives), so it is built inside the downloaded module.
compose_plugin() {
  if docker compose version 2>/dev/null | grep -q ' v2\.'; then return 0; fi
  local bin="$CACHE/compose/$COMPOSE_VERSION/docker-compose" dir
  if [[ ! -x $bin ]]; then
    command -v go >/dev/null || {
      echo "docker: needs docker compose v2, or Go >= 1.24 to build it" >&2; exit 1
    }
    echo "docker: building docker compose $COMPOSE_VERSION from the Go module proxy (1-3 min)"
    mkdir -p "$(dirname "$bin")"
    export GOMODCACHE="$CACHE/go/mod" GOFLAGS=-modcacherw
    dir=$(cd "$CACHE" && go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    (cd "$dir" && go build -trimpath -o "$bin.partial" \
      -ldflags "-X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" ./cmd)
    mv "$bin.partial" "$bin"
  fi
  $SUDO install -D -m 755 "$bin" "$PLUGINS/docker-compose"
}

# The host's address on Docker's default bridge (docker0), which containers reach.
bridge_address() {
  ip -4 -o addr show docker0 2>/dev/null | sed -n 's|.* inet \([0-9.]*\)/.*|\1|p' | head -n 1 |
    grep . || { echo "docker: no address on docker0" >&2; return 1; }
}

mirror_start() {   # mirror_start [PYTHON_VERSION...]: default MIRROR_PYTHONS
  local pythons=() versions=("$@") version python address
  ((${#versions[@]})) || read -ra versions <<<"$MIRROR_PYTHONS"
  for version in "${versions[@]}"; do
    # An interpreter of that version (PATH, then pyenv), as `make install` finds one.
    python=$("$ROOT/scripts/python.sh" "$version") || {
      echo "docker: the mirror needs a Python $version interpreter to download its wheels" >&2
      exit 1
    }
    pythons+=("$python")
  done
  python3 "$ROOT/scripts/docker/mirror.py" build "$CACHE/mirror" "${pythons[@]}"
  alive mirror http.server && return 0
  address=$(bridge_address)
  mkdir -p "$RUN"
  (cd / && exec setsid nohup python3 -m http.server --bind "$address" \
    --directory "$CACHE/mirror" "$MIRROR_PORT" >>"$RUN/mirror.log" 2>&1 </dev/null) &
  echo $! >"$RUN/mirror.pid"
  local deadline=$((SECONDS + 10))
  until port_open "$address" "$MIRROR_PORT"; do
    still_running mirror || fail_with_log mirror "the mirror exited during start-up"
    ((SECONDS < deadline)) || fail_with_log mirror "not listening after 10 s"
    sleep 0.2
  done
  echo "mirror: serving http://$address:$MIRROR_PORT/simple/ and /maven2/ (log: ${RUN#"$ROOT"/}/mirror.log)"
}

base() {
  local suite=$1 image="fluxo-dados-debian:$1" tar="$CACHE/rootfs/$1.tar" dir start=$SECONDS
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  if [[ ! -f $tar ]]; then
    command -v debootstrap >/dev/null || apt_install debootstrap
    echo "docker: debootstrap of Debian $suite (minbase) into ${tar#"$ROOT"/}"
    mkdir -p "$(dirname "$tar")" "$RUN"   # the rootfs cache, and debootstrap's log
    dir=$(mktemp -d)
    $SUDO debootstrap --variant=minbase --include=make,git,python3,ca-certificates,sudo \
      "$suite" "$dir" "$DEBIAN_MIRROR" >"$RUN/debootstrap-$suite.log" 2>&1 ||
      fail_with_log "debootstrap-$suite" "debootstrap failed"
    # Downloaded packages and package lists: the machine is bare, apt-get update comes first.
    $SUDO rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    $SUDO tar -C "$dir" -c . >"$tar.partial"
    $SUDO rm -rf "$dir"
    mv "$tar.partial" "$tar"
  fi
  docker import "$tar" "$image" >/dev/null
  echo "docker: imported $image in $((SECONDS - start)) s" \
    "($(image_size "$image"))"
}

image_size() { docker image inspect "$1" --format '{{.Size}}' | awk '{printf "%d MB", $1 / 1e6}'; }

# have_image NAME: the image is here, or can be pulled (a real image always wins).
have_image() {
  docker image inspect "$1" >/dev/null 2>&1 && return 0
  timeout 120 $SUDO docker pull -q "$1" >/dev/null 2>&1
}

# The image names the stand-ins replace: the Dockerfile's base, and compose's kafka and
# postgres images.
python_image() { sed -n 's/^FROM[[:space:]]\+\([^[:space:]]\+\).*/\1/p' "$ROOT/Dockerfile" | head -n 1; }
compose_image() { docker compose -f "$ROOT/docker-compose.yml" config --images "$1"; }

build_standin() {   # build_standin IMAGE FOLDER [docker build options]
  local image=$1 folder=$2 context start
  shift 2
  context=$(mktemp -d)
  cp -r "$ROOT/tests/compose/standins/$folder/." "$context/"
  if [[ $folder == kafka ]]; then
    python3 "$ROOT/scripts/kafka/jars.py" fetch "$context/libs"
    cp "$ROOT/scripts/kafka/log4j2.properties" "$context/"
  fi
  echo "docker: no image $image here and none can be pulled: building the stand-in" \
    "from tests/compose/standins/$folder"
  start=$SECONDS
  docker build -q -t "$image" "$@" "$context" >/dev/null
  rm -rf "$context"
  echo "docker: built stand-in $image in $((SECONDS - start)) s" \
    "($(image_size "$image"))"
}

standins() {
  local python kafka postgres address index
  python=$(python_image) kafka=$(compose_image kafka) postgres=$(compose_image postgres)
  address=$(bridge_address)
  index="http://$address:$MIRROR_PORT/simple/"
  # A stand-in of ours that points at another mirror address is rebuilt; a real image never.
  if is_standin "$python" && ! docker image inspect "$python" --format '{{join .Config.Env "\n"}}' |
    grep -qx "PIP_INDEX_URL=$index"; then
    docker rmi -f "$python" >/dev/null
  fi
  if ! have_image "$python"; then
    base bookworm
    build_standin "$python" python --build-arg "PIP_INDEX_URL=$index" \
      --build-arg "PIP_TRUSTED_HOST=$address"
  fi
  if ! have_image "$kafka"; then base bookworm; build_standin "$kafka" kafka; fi
  if ! have_image "$postgres"; then
    base bookworm
    build_standin "$postgres" postgres --build-arg "PG_MAJOR=${postgres##*:}"
  fi
}

is_standin() {
  [[ $(docker image inspect "$1" --format '{{index .Config.Labels "fluxo-dados.stand-in"}}' 2>/dev/null) == true ]]
}

# Compose checks every service's variables on every command (exec, logs, ps, down too),
# webkafka's required login among them. Without one in the shell or in .env, write a generated
# login into .env (created from .env.example if missing), once, so that every later
# `docker compose` command in the user's shell works as written. Ports stay on 127.0.0.1
# unless PUBLISH_ADDRESS says otherwise, and the password is random: no default login.
ui_login() {
  local env_file=${1:-$ROOT/.env}
  if [[ -n ${KAFKA_UI_PASSWORD-} ]] || grep -qs '^KAFKA_UI_PASSWORD=.' "$env_file"; then return 0; fi
  [[ -f $env_file ]] || cp "$ROOT/.env.example" "$env_file"
  [[ -z $(tail -c1 "$env_file") ]] || echo >>"$env_file"
  echo "# The Kafka UI login, generated by make compose-up" >>"$env_file"
  grep -qs '^KAFKA_UI_USERNAME=.' "$env_file" || echo "KAFKA_UI_USERNAME=${KAFKA_UI_USERNAME:-admin}" >>"$env_file"
  echo "KAFKA_UI_PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >>"$env_file"
  echo "docker: wrote a generated Kafka UI login to ${env_file#"$ROOT"/} (KAFKA_UI_USERNAME and KAFKA_UI_PASSWORD there)"
}

compose_up() {
  ui_login
  engine
  standins
  # The stand-in Python base installs from the local mirror; a real one from PyPI.
  local mirror=""
  if is_standin "$(python_image)" && ! alive mirror http.server; then mirror=started; mirror_start 3.11; fi
  local start=$SECONDS status=0
  (cd "$ROOT" && docker compose build -q api scheduler) || status=$?
  [[ -z $mirror ]] || stop_pid mirror http.server >/dev/null
  ((status == 0)) || exit "$status"
  echo "docker: built the project's image in $((SECONDS - start)) s"
  # shellcheck disable=SC2086  # a list of service names
  (cd "$ROOT" && docker compose up -d --wait $COMPOSE_SERVICES)
}

compose_down() {
  if docker info >/dev/null 2>&1; then (cd "$ROOT" && docker compose down); fi
  engine_stop
}

case "${1-}" in
  engine) engine ;;
  engine-stop) engine_stop ;;
  mirror-start) engine; mirror_start ;;
  mirror-stop) stop_pid mirror http.server ;;
  base) [[ -n ${2-} ]] || { echo "usage: $0 base SUITE" >&2; exit 2; }; engine; base "$2" ;;
  standins) engine; standins ;;
  ui-login) ui_login "${2-}" ;;
  compose-up) compose_up ;;
  compose-down) compose_down ;;
  bridge) bridge_address ;;
  *) echo "usage: $0 engine|engine-stop|mirror-start|mirror-stop|base SUITE|standins|ui-login [FILE]|compose-up|compose-down|bridge" >&2
    exit 2 ;;
esac
