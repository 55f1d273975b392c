# todo: the entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
# Use uv from PATH; without one, install it with pip into a git-ignored folder.
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/uv/bin/uv)
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
BIND ?= 127.0.0.1:5000
WORKER_METRICS_PORT ?= 9101
SCHEDULER_METRICS_PORT ?= 9102
# Tests call uv (packaging tests): make sure the one this Makefile uses is on PATH.
export PATH := $(dir $(UV)):$(PATH)

.PHONY: help install run test lint fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(CURDIR)/.tools/uv/bin/uv:
	python3 -m pip install --quiet --disable-pip-version-check --target $(CURDIR)/.tools/uv uv==$(UV_VERSION)

install: $(UV) ## create .venv with every service and the dev tools (uv sync)
	$(UV) sync --all-packages --locked

run: install ## run API, worker and scheduler on SQLite at http://127.0.0.1:5000 (no server needed)
	$(BIN)/todoctl createdb
	@echo
	@echo "  todo API on http://$(BIND)  (docs: http://$(BIND)/docs)"
	@echo "  add a user:   $(BIN)/todoctl adduser NAME"
	@echo "  then:         curl -u NAME:PASSWORD http://$(BIND)/api/v1.0/todos/"
	@echo "  metrics:      worker http://127.0.0.1:$(WORKER_METRICS_PORT)/metrics," \
	      "scheduler http://127.0.0.1:$(SCHEDULER_METRICS_PORT)/metrics"
	@echo "  Ctrl-C stops all three."
	@echo
	BIND=$(BIND) WORKER_METRICS_PORT=$(WORKER_METRICS_PORT) \
	SCHEDULER_METRICS_PORT=$(SCHEDULER_METRICS_PORT) \
	TODO_LOG_FORMAT=$${TODO_LOG_FORMAT:-console} \
	exec $(BIN)/honcho start --procfile deploy/local/Procfile --app-root $(CURDIR)

test: install ## run the whole test suite (needs PostgreSQL and Redis on their local ports)
	$(BIN)/pytest

lint: install ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/common/src services/api/src services/worker/src services/scheduler/src

fmt: install ## format and auto-fix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## remove the venv, caches and the local SQLite database
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .todo-state todo.sqlite3 todo.sqlite3-*
