# todo: the entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
# Use uv from PATH; without one, install it with pip into a git-ignored folder.
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/uv/bin/uv)
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
BIND ?= 127.0.0.1:5000

.PHONY: help install run test lint fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(CURDIR)/.tools/uv/bin/uv:
	python3 -m pip install --quiet --disable-pip-version-check --target $(CURDIR)/.tools/uv uv==$(UV_VERSION)

install: $(UV) ## create .venv with every service and the dev tools (uv sync)
	$(UV) sync --all-packages --locked

run: install ## serve the API on SQLite at http://127.0.0.1:5000 (no other server needed)
	$(BIN)/todoctl createdb
	@echo
	@echo "  todo API on http://$(BIND)  (docs: http://$(BIND)/docs)"
	@echo "  add a user:   $(BIN)/todoctl adduser NAME"
	@echo "  then:         curl -u NAME:PASSWORD http://$(BIND)/api/v1.0/todos/"
	@echo
	exec $(BIN)/todo-api --bind $(BIND)

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
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache todo.sqlite3 todo.sqlite3-*
