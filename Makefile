# The two commands of the README: `make up` (set up and run the main job), `make test`;
# `make check` is the one-minute check (lint, types, unit tests) `make test` starts with.
SHELL := /bin/bash
VENV := virtualenvs/autotag
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONWARNINGS := ignore
ifeq ($(shell id -u),0)
export LEIN_ROOT := 1
endif

.PHONY: up deps deps-train check lint test screenshots down bench

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

CODE := src tests bench topologies

## Lint: ruff's rules, ruff's formatting, the import layers of pyproject.toml (seconds).
lint:
	@$(BIN)/ruff check $(CODE)
	@$(BIN)/ruff format --check $(CODE)
	@$(BIN)/lint-imports --no-cache

## The one-minute check (needs `make deps` once): lint, then mypy on src/ and the unit tests
## side by side (pytest-xdist: two workers that steal each other's tests when one runs out,
## each with one BLAS/OpenMP thread: two workers fill two cores, and more threads only spin
## waiting for each other); fails if either does.
check: lint
	@said=$$(mktemp); $(BIN)/mypy > $$said 2>&1 & types=$$!; \
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
		$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist worksteal tests/unit; unit=$$?; \
	wait $$types; types=$$?; cat $$said; rm -f $$said; \
	exit $$(( unit || types ))

## The whole test suite against real services the tests start themselves: the check first,
## then the integration tests.
test: deps-train
	@$(MAKE) --no-print-directory check
	@$(BIN)/python -m pytest -q -p no:cacheprovider tests/integration

## The README's screenshots (docs/screenshots/*.png), made again by the browser test; other
## runs write theirs into the test run directory.
screenshots: deps
	@AUTOTAG_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -q \
		-p no:cacheprovider tests/integration/test_web_browser.py

down:
	@$(BIN)/autotag cluster down

bench: deps
	@$(BIN)/python bench/pipeline.py
