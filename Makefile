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

.PHONY: help setup serve test check lint format typecheck train evaluate bench stress audit image-deps sam-local clean

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

stress: setup ## long runs: thousands of fuzz cases, contention, broken models, a load test on loopback; then audit, image-deps
	$(RUN) pytest -m stress -s $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory audit
	@$(MAKE) --no-print-directory image-deps

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

# The serving requirements exported as layers/Dockerfile exports them, fetched as its `pip install --require-hashes
# --no-deps` would fetch them on the image's interpreter: CPython 3.12 on Amazon Linux 2023 x86_64 (glibc 2.34),
# wheels only. Fails when a lock change pins a version without such a wheel or with a hash PyPI does not serve.
# - pip takes --platform literally (manylinux_2_34 alone rejects the manylinux_2_17 wheels glibc 2.34 runs), so every
#   tag that glibc accepts is listed; manylinux2014 adds manylinux2010 and manylinux1.
# - pip evaluates environment markers for the Python that runs it, not the target: a marker on the Python version or
#   implementation fails the check instead of being judged for the wrong Python.
# - PyPI only (no machine or user pip configuration). Wheels stay in .cache/image-deps/wheels: a run first tries them
#   alone (a few seconds), and goes to PyPI only when the lock pins something they lack. Needs neither AWS nor Docker.
IMAGE_DEPS := .cache/image-deps
IMAGE_PIP := PIP_CONFIG_FILE=/dev/null $(TOOLS)/bin/pip --isolated --disable-pip-version-check download --no-deps \
	--require-hashes --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 \
	$(foreach minor,$(shell seq 34 -1 5),--platform manylinux_2_$(minor)_x86_64) --progress-bar off \
	--requirement $(IMAGE_DEPS)/requirements.txt --dest $(IMAGE_DEPS)/wheels
image-deps: $(UV) ## check that the locked serving set installs on the Lambda image's Python 3.12 (needs PyPI)
	@mkdir -p $(IMAGE_DEPS)/wheels
	@$(UV) export --frozen --no-default-groups --no-emit-project --format requirements.txt --quiet \
		--output-file $(IMAGE_DEPS)/requirements.txt
	@if grep -nE 'python_(full_)?version|implementation' $(IMAGE_DEPS)/requirements.txt; then \
		echo "image-deps: the markers above depend on the Python; pip would judge them for $$($(TOOLS)/bin/python -V)"; \
		exit 1; \
	fi
	@$(IMAGE_PIP) --no-index --find-links $(IMAGE_DEPS)/wheels >$(IMAGE_DEPS)/pip.log 2>&1 \
		|| $(IMAGE_PIP) >$(IMAGE_DEPS)/pip.log 2>&1 || { tail -n 20 $(IMAGE_DEPS)/pip.log; exit 1; }
	@echo "image-deps: the $$(grep -c '==' $(IMAGE_DEPS)/requirements.txt) serving requirements have hash-checked" \
		"CPython 3.12 wheels for glibc 2.34 x86_64 ($$(du -sh $(IMAGE_DEPS)/wheels | cut -f1) in $(IMAGE_DEPS)/wheels)"

clean: ## remove the environment and caches (not the models)
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache

# SAM CLI (hash-pinned) in a venv of its own under .cache/sam-local; `python -m recsys_tools.sam_local` does the rest:
# podman where no Docker engine answers (apt-get as root), the stand-in base image where the real one cannot be pulled,
# sam build, moto on the containers' bridge, sam local invoke of every function, then stops all it started.
SAM_CLI := .cache/sam-local/sam-cli/bin/sam
$(SAM_CLI): $(UV) infra/sam-local/sam-cli.txt
	$(UV) venv --quiet --allow-existing --python '>=3.11,<3.13' .cache/sam-local/sam-cli
	$(UV) pip install --quiet --compile-bytecode --require-hashes --python .cache/sam-local/sam-cli/bin/python \
		--requirement infra/sam-local/sam-cli.txt
	@touch $@

sam-local: setup $(SAM_CLI) ## sam build + sam local invoke of every function against a local DynamoDB (Docker or podman)
	SAM_CLI_TELEMETRY=0 $(RUN) python -m recsys_tools.sam_local $(SAM_LOCAL_ARGS)
