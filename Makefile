# Local runner for fluxo-dados: thin targets over scripts/*.sh (where the logic lives).
# Runtime state goes to .run/, downloaded Kafka jars to .cache/ (both gitignored).
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help install up down logs psql read-topic test lint bench clean

VENV := .venv
PYTEST_ARGS ?= -v
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

help:  ## this list
	@grep -hE '^[a-z.]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create .venv and install the project with its dev tools

# Re-installs only when pyproject.toml changed since the last install.
$(VENV)/.installed: pyproject.toml
	@# Debian's python3 lacks venv/ensurepip until python3-venv is installed.
	@python3 -c 'import ensurepip' 2>/dev/null || \
	  { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv; }
	@[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $@

.env:  ## local settings, copied from .env.example when missing
	cp .env.example .env

# `make up APIS=2 SCHEDULERS=3 KAFKA_BROKERS=3` runs several of each (README, Scaling); the
# scripts read these variables from the environment, where make puts command-line ones.
up: install .env  ## start PostgreSQL, Kafka, the API and the scheduler in the background
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
