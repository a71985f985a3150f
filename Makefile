# Local runner for fluxo-dados: thin targets over scripts/*.sh (where the logic lives).
# Runtime state goes to .run/, downloaded Kafka jars to .cache/ (both gitignored).
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help prereqs install up down logs psql read-topic test test-system compose-up compose-down \
  lint bench clean

VENV := .venv
PYTEST_ARGS ?= -v
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

help:  ## this list
	@grep -hE '^[a-z.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create .venv and install the project with its dev tools

# Re-installs only when pyproject.toml changed since the last install.
$(VENV)/.installed: pyproject.toml
	@# Debian's python3 lacks venv/ensurepip until python3-venv is installed.
	@scripts/prereqs.sh venv
	@[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $@

.env:  ## local settings, copied from .env.example when missing
	cp .env.example .env

prereqs:  ## install Java >= 17, PostgreSQL and python3-venv with apt when missing
	@scripts/prereqs.sh

up: prereqs install .env  ## start PostgreSQL, Kafka, the API and the scheduler in the background
	scripts/postgres.sh start
	scripts/kafka.sh start
	scripts/services.sh start
	@scripts/services.sh info

down:  ## stop what `make up` started
	scripts/services.sh stop
	scripts/kafka.sh stop
	@# Only a PostgreSQL we started (scripts/postgres.sh records its pid then).
	@if [ -f .run/postgres.pid ]; then scripts/postgres.sh stop; fi

logs:  ## follow the logs of everything `make up` started
	tail -n 50 -F .run/*.log

psql:  ## open psql on the database of DATABASE_URL
	@source scripts/lib.sh && psql "$$(setting DATABASE_URL)"

read-topic: install .env  ## print TOPIC's records as JSON lines (default produtos-persistidos)
	$(VENV)/bin/python scripts/read_topic.py $(TOPIC)

test: install .env  ## start PostgreSQL and Kafka, run the whole test suite
	scripts/postgres.sh start
	scripts/kafka.sh start
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The system tests (tests/system): the compose stack under Docker, and `make up` on bare
# Debian 12 and 13 containers. Docker comes from apt; a dockerd started here is stopped after.
test-system: install .env  ## run the system tests: compose stack, fresh Debian 12 and 13 (slow)
	@ours=$$([ -f .run/dockerd.pid ] || echo yes); scripts/docker.sh engine || exit; \
	FLUXO_SYSTEM_TESTS=1 $(VENV)/bin/pytest tests/system $(PYTEST_ARGS); status=$$?; \
	if [ -n "$$ours" ]; then scripts/docker.sh engine-stop; fi; exit $$status

compose-up:  ## docker compose up kafka, postgres, api, scheduler (building what no registry gives)
	scripts/docker.sh compose-up

compose-down:  ## docker compose down (data volumes kept), and stop a dockerd compose-up started
	scripts/docker.sh compose-down

lint: install  ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# BENCH_ARGS: options of `python -m bench`, e.g. BENCH_ARGS="--records 5000 --rate-seconds 5".
BENCH_ARGS ?=

bench: up  ## benchmark the system as `make up` runs it (bench/README.md)
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

clean: down  ## stop everything and delete .run/ (Kafka data included; .cache/ is kept)
	rm -rf .run
