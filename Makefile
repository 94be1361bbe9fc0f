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

.PHONY: help setup serve test check lint format typecheck train evaluate bench stress audit clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --compile-bytecode: installed packages come byte-compiled, as pip leaves them in the Lambda image; without it every
# fresh interpreter (tests, cold-start benchmarks) compiles TensorFlow's sources again when PYTHONDONTWRITEBYTECODE is set
$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --compile-bytecode
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
	$(RUN) mypy layers/recsys layers/recsys_tools functions tests

check: lint typecheck test ## lint, types and tests

train: setup ## train, evaluate and export a model from the shipped data; marks it current
	$(RUN) recsys train

evaluate: setup ## time-split evaluation of the current model against baselines (report + plot)
	$(RUN) recsys evaluate

bench: setup ## benchmarks; writes infra/bench/results.{json,md}
	$(RUN) recsys bench

stress: setup ## long runs: thousands of fuzz cases, contention, broken models, a load test on loopback; then audit
	$(RUN) pytest -m stress -s $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory audit

PIP_AUDIT := pip-audit@2.10.1
audit: setup ## pip-audit the locked dependencies (skipped when offline or the advisory service cannot be reached)
	@mkdir -p .cache/audit
	@$(UV) export --frozen --all-groups --no-emit-project --format requirements-txt --quiet \
		--output-file .cache/audit/requirements.txt
	@if ! $(UV) tool run $(PIP_AUDIT) --version >/dev/null 2>&1; then \
		echo "audit: skipped, $(PIP_AUDIT) cannot be installed (offline?)"; \
	elif $(UV) tool run $(PIP_AUDIT) -r .cache/audit/requirements.txt --disable-pip --progress-spinner off \
			>.cache/audit/report.txt 2>&1; then \
		head -n 1 .cache/audit/report.txt; \
		echo "audit: $$(grep -c 'could not be audited' .cache/audit/report.txt) of $$(grep -c '==' \
			.cache/audit/requirements.txt) pinned packages unknown to the registry's advisory API (not audited);" \
			"full report: .cache/audit/report.txt"; \
	elif grep -qE 'ConnectionError|gaierror|Max retries exceeded|Name or service not known' .cache/audit/report.txt; \
	then \
		echo "audit: skipped, the advisory service cannot be reached"; \
	else \
		cat .cache/audit/report.txt; exit 1; \
	fi

clean: ## remove the environment and caches (not the models)
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
