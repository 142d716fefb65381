# The two commands of the README: `make up` (set up and run the main job), `make test`.
SHELL := /bin/bash
VENV := virtualenvs/autotag
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONWARNINGS := ignore
ifeq ($(shell id -u),0)
export LEIN_ROOT := 1
endif

.PHONY: up deps deps-train test lint down bench

deps:
	@bash scripts/install-deps.sh

## The optional training framework (JAX, ~90 MB of wheels) for `autotag train-cnn`; the
## tests train a tiny network, so `make test` installs it and `make up` does not.
deps-train: deps
	@$(BIN)/pip install -q -r virtualenvs/train.txt

## Set up everything and run the main job: cluster, Redis, Postgres, default model,
## the autotag topology, sample photos uploaded and tagged, where to look next.
up: deps
	@$(BIN)/autotag demo

## The whole test suite against real services the tests start themselves.
test: deps-train
	@$(BIN)/ruff check src tests bench topologies
	@$(BIN)/lint-imports --no-cache
	@$(BIN)/python -m pytest -q -p no:cacheprovider tests

down:
	@$(BIN)/autotag cluster down

bench: deps
	@$(BIN)/python bench/pipeline.py
