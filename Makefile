# The two commands of the README: `make up` (set up and run the main job), `make test`.
SHELL := /bin/bash
VENV := virtualenvs/autotag
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONWARNINGS := ignore
ifeq ($(shell id -u),0)
export LEIN_ROOT := 1
endif

.PHONY: up deps test lint down bench

deps:
	@bash scripts/install-deps.sh

## Set up everything and run the main job: cluster, Redis, Postgres, default model,
## the autotag topology, sample photos uploaded and tagged, where to look next.
up: deps
	@$(BIN)/autotag demo

## The whole test suite against real services the tests start themselves.
test: deps
	@$(BIN)/ruff check src tests bench topologies
	@$(BIN)/lint-imports --no-cache
	@$(BIN)/python -m pytest -q -p no:cacheprovider tests

down:
	@$(BIN)/autotag cluster down

bench: deps
	@$(BIN)/python bench/pipeline.py
