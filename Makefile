# c2ser developer entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel by default (CI, laptops). On a GPU cluster: make install TORCH_SPEC="torch==2.13.0" with
# your CUDA index configured in pip, or install torch yourself first and use TORCH_SPEC=.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test test-slow test-all lint format bench clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH_SPEC),$(BIN)/python -m pip install -q "$(TORCH_SPEC)")
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## create/reuse the virtualenv in .venv and install c2ser with dev tools

demo: install ## the main job end to end on the demo corpus: Emotion2Vec-S, C2SER Stage 1 + 2, evaluation, summary (reruns resume)
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

test: install ## lint + format check + import layers + the test suite (what CI runs)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

test-slow: install ## only the slow checks (minutes: pretraining, DeepSpeed, long trainings)
	$(BIN)/python -m pytest -q -m slow

test-all: install ## every test, slow ones included
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: install ## ruff lint + the import layers (pyproject [tool.importlinter])
	$(BIN)/ruff check .
	$(BIN)/lint-imports

format: install ## ruff format + autofix lint
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install ## run the benchmarks (write BENCHMARKS.md)
	$(BIN)/python scripts/bench_extract.py
	$(BIN)/python scripts/bench_infer.py

clean: ## remove caches and run outputs (keeps .venv and data/)
	rm -rf logs outputs multirun .pytest_cache .ruff_cache
