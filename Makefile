# Local runner for fluxo-dados: thin targets over scripts/*.sh (where the logic lives).
# Runtime state goes to .run/, downloaded Kafka jars to .cache/ (both gitignored).
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help prereqs install lock up down logs psql read-topic test test-fast test-tools \
  test-system compose-up compose-down lint docs bench bench-peer clean

# PYTHON: the interpreter of the virtualenv (a command, a path, or a version such as 3.13);
# empty picks one (scripts/python.sh). VENV: where it lives; one per interpreter, e.g.
#   make test-fast PYTHON=3.13 VENV=.venv-3.13
PYTHON ?=
VENV ?= .venv
export VENV
PYTEST_ARGS ?= -v
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

help:  ## this list
	@grep -hE '^[a-z.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  Variables: PYTHON=3.11|3.12|3.13|/path/to/python, VENV=.venv (see docs/development.md)."

# With PYTHON given, an existing $(VENV) must hold that Python's version.
PY_VERSION = -c 'import sys; print("%d.%d" % sys.version_info[:2])'
CHECK_VENV = python=$$(scripts/python.sh $(PYTHON)) || exit 1; \
	version=$$("$$python" $(PY_VERSION)); \
	if [ -x $(VENV)/bin/python ] && [ -n "$(PYTHON)" ] && [ "$$($(VENV)/bin/python $(PY_VERSION))" != "$$version" ]; then \
	  echo "$(VENV) holds Python $$($(VENV)/bin/python $(PY_VERSION)), not $$version: give each its own, e.g. VENV=.venv-$$version" >&2; \
	  exit 1; \
	fi

install: $(VENV)/.installed  ## create the virtualenv (VENV, default .venv) and install the locked dependencies and the project
	@$(CHECK_VENV)

# Re-installs only when the lock (or pyproject.toml) changed since the last install.
$(VENV)/.installed: requirements-dev.lock pyproject.toml
	@$(CHECK_VENV); \
	  if [ ! -x $(VENV)/bin/python ]; then \
	    scripts/prereqs.sh venv || exit 1; \
	    echo "creating $(VENV) with $$python (Python $$version)"; \
	    "$$python" -m venv $(VENV); \
	  fi
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

# The locks pin every runtime (requirements.lock) and runtime + dev (requirements-dev.lock)
# dependency, with hashes, for every platform and Python 3.11-3.13 (--universal). Versions
# already locked are kept while pyproject.toml allows them, so the same pyproject.toml and
# locks give the same files; LOCK_ARGS=--upgrade moves everything to the newest allowed.
LOCK_ARGS ?=
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --quiet --universal --generate-hashes \
	--python-version 3.11 --custom-compile-command 'make lock' $(LOCK_ARGS)

lock: install  ## resolve pyproject.toml into requirements.lock and requirements-dev.lock
	$(UV_COMPILE) -o requirements.lock
	$(UV_COMPILE) --extra dev -o requirements-dev.lock

.env:  ## local settings, copied from .env.example when missing
	cp .env.example .env

prereqs:  ## install Java >= 17, PostgreSQL (Patroni and etcd for a cluster) and the venv module of PYTHON with apt when missing
	@scripts/prereqs.sh

# `make up APIS=2 SCHEDULERS=3 KAFKA_BROKERS=3` runs several of each (docs/scaling.md);
# `make up POSTGRES_NODES=3` a PostgreSQL cluster under Patroni (docs/high-availability.md). The
# scripts read these variables from the environment, where make puts command-line ones.
up: prereqs install .env  ## start PostgreSQL, Kafka, the API and the scheduler in the background
	scripts/postgres.sh start
	scripts/kafka.sh start
	scripts/services.sh start
	@scripts/services.sh info

down:  ## stop what `make up` started
	scripts/services.sh stop
	scripts/kafka.sh stop
	@# Only a PostgreSQL we started (scripts/postgres.sh records its pids then).
	@if compgen -G '.run/postgres*.pid' >/dev/null || compgen -G '.run/etcd-*.pid' >/dev/null; then \
	  scripts/postgres.sh stop; fi

logs:  ## follow the logs of everything `make up` started
	tail -n 50 -F .run/*.log

psql:  ## open psql on the database of DATABASE_URL (a cluster's primary, whichever node it is)
	@source scripts/lib.sh && psql "$$(database_url)"

read-topic: install .env  ## print TOPIC's records as JSON lines (default produtos-persistidos)
	$(VENV)/bin/python scripts/read_topic.py $(TOPIC)

# Tools that connect to the database `make up` runs: with a PostgreSQL cluster
# (POSTGRES_NODES > 1) they get a DATABASE_URL naming every node (database_url in lib.sh).
CLUSTER_URL = source scripts/lib.sh && if (($$(postgres_nodes) > 1)); then export DATABASE_URL="$$(database_url)"; fi;

# Debian packages the tests drive: a headless browser (the status page), Prometheus and promtool,
# openssl (the transport-security tests make their own CA and certificates).
TEST_PACKAGES := chromium chromium-driver prometheus openssl

test-tools:  ## install the Debian packages the tests drive, when missing
	@missing="$$(for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  case " $$missing " in *" prometheus "*) \
	    { $(SUDO) systemctl disable --now prometheus || $(SUDO) service prometheus stop; } >/dev/null 2>&1 || true;; \
	  esac; \
	fi

test: install .env test-tools  ## start PostgreSQL and Kafka, run the whole test suite
	scripts/postgres.sh start
	scripts/kafka.sh start
	$(CLUSTER_URL) $(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: install .env  ## the unit and integration tests, without the reliability suite
	scripts/postgres.sh start
	scripts/kafka.sh start
	$(CLUSTER_URL) $(VENV)/bin/pytest $(PYTEST_ARGS) --ignore=tests/reliability

# The system tests (tests/system): the compose stack under Docker, and `make up` on bare
# Debian 12 and 13 containers. Docker comes from apt; a dockerd started here is stopped after.
test-system: install .env  ## run the system tests: compose stack, fresh Debian 12 and 13 (slow)
	@ours=$$([ -f .run/dockerd.pid ] || echo yes); scripts/docker.sh engine || exit; \
	FLUXO_SYSTEM_TESTS=1 $(VENV)/bin/pytest tests/system $(PYTEST_ARGS); status=$$?; \
	if [ -n "$$ours" ]; then scripts/docker.sh engine-stop; fi; exit $$status

compose-up: .env  ## docker compose up kafka, postgres, api, scheduler (building what no registry gives)
	scripts/docker.sh compose-up

compose-down:  ## docker compose down (data volumes kept), and stop a dockerd compose-up started
	scripts/docker.sh compose-down

lint: install  ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The committed AsyncAPI document, generated with .env.example's settings (the suite fails when
# it differs from what the code generates).
docs: install  ## regenerate docs/asyncapi.yaml, the AsyncAPI document of the Kafka topics
	$(VENV)/bin/python -m services.scheduler.asyncapi

# BENCH_ARGS: options of `python -m bench`, e.g. BENCH_ARGS="--repeat 3" or "--records 5000".
# Results go to .run/bench/; --record writes bench/results/ and bench/README.md for a commit.
BENCH_ARGS ?=

bench: up  ## benchmark the system as `make up` runs it (bench/README.md)
	$(CLUSTER_URL) $(VENV)/bin/python -m bench $(BENCH_ARGS)

# Needs no `make up` and leaves it alone: a broker, a PostgreSQL server, Connect and the
# services of its own, on ports of their own (bench/peer/run.py), stopped at the end.
bench-peer: prereqs install  ## fluxo-dados against Kafka Connect + Debezium (docs/performance.md)
	$(VENV)/bin/python -m bench --peer $(BENCH_ARGS)

clean: down  ## stop everything and delete .run/ (Kafka data included; .cache/ is kept)
	rm -rf .run
