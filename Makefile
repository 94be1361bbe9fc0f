# Every target bootstraps what it needs: a pinned uv in .cache/tools, then the locked environment in .venv.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
TOOLS := .cache/tools
UV := $(TOOLS)/bin/uv
VENV := .venv
RUN := $(UV) run --frozen --no-sync
export UV_CACHE_DIR ?= $(CURDIR)/.cache/uv
# use the machine's Python 3.11 or 3.12; never download one
export UV_PYTHON_PREFERENCE ?= only-system
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
PYTEST_ARGS ?=

.PHONY: help setup serve test check lint format typecheck train evaluate bench stress clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen
	@touch $@

setup: $(VENV)/.synced ## install uv and the locked environment (.venv)

serve: setup ## run the API locally on an embedded DynamoDB (trains a model first if none is current)
	$(RUN) recsys serve

test: setup ## run the test suite
	$(RUN) pytest $(PYTEST_ARGS)

lint: setup ## ruff lint and format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: setup ## apply ruff fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

typecheck: setup ## mypy (strict) on the library, handlers and tests
	$(RUN) mypy layers/recsys functions tests

check: lint typecheck test ## lint, types and tests

train: setup ## train, evaluate and export a model from the shipped data; marks it current
	$(RUN) recsys train

evaluate: setup ## time-split evaluation of the current model against baselines (report + plot)
	$(RUN) recsys evaluate

bench: setup ## benchmarks; writes bench-results/
	$(RUN) recsys bench

clean: ## remove the environment and caches (not the models)
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
