"""The layout's rules, checked on what actually runs: a handler imports no tooling and no dev-only package; an invalid
setting fails a function's init with one clear log line; TensorFlow's import skip applies only where it was measured.
Each check runs in a fresh interpreter, as a Lambda init does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.operations import OPERATIONS
from recsys.settings import REPO_ROOT
from recsys_tools.bench.handlers import lambda_environment

# Our tooling and the dev group's libraries. Not pandas: Keras (imported by TensorFlow) imports it when it is installed,
# as in this dev environment; the image does not install it.
TOOLING = ("recsys_tools", "tests", "moto", "yaml", "uvicorn", "pytest", "tensorflow_recommenders", "tf_keras")


def lambda_env(model_dir: Path, operation: str) -> dict[str, str]:
    """This process's environment with the function's from the template; without TF_USE_LEGACY_KERAS, which the
    training code sets in this process (with it, TensorFlow imports tf-keras)."""
    inherited = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    return inherited | lambda_environment(model_dir, operation)


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.parametrize("operation", [*(op.name for op in OPERATIONS), "batch_generate"])
def test_a_handler_imports_no_tooling_module(model_dir: Path, operation: str) -> None:
    # Given the function's template environment
    env = lambda_env(model_dir, operation)
    # When its handler is imported in a fresh interpreter, as Lambda's init does
    code = (
        f"import sys, json, functions.{operation}.app\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {TOOLING})))"
    )
    result = run_python(code, env)
    # Then no module of the tooling package, the tests or a dev-only library is loaded
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("TABLE_NAME", "ab", "TABLE_NAME"),
        ("MAX_K", "0", "MAX_K"),
        ("DEFAULT_K", "500", "DEFAULT_K"),
        ("WRITE_RETRIES", "many", "WRITE_RETRIES"),
    ],
)
def test_an_invalid_setting_fails_the_init_with_one_log_line_naming_it(
    model_dir: Path, variable: str, value: str, named: str
) -> None:
    # Given a function's environment with one invalid setting
    env = lambda_env(model_dir, "show_recommendations") | {variable: value}
    # When its handler is imported, as Lambda's init does
    code = (
        "try:\n    import functions.show_recommendations.app\n"
        "except Exception as error:\n    print('init failed:', type(error).__name__)\n"
    )
    result = run_python(code, env)
    # Then the init fails with a ConfigurationError and one error log line naming the variable
    assert result.returncode == 0, result.stderr
    assert "init failed: ConfigurationError" in result.stdout, result.stdout + result.stderr
    errors = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"level":"ERROR"')]
    assert len(errors) == 1, result.stdout
    assert errors[0]["message"].startswith("Invalid configuration:")
    assert named in errors[0]["message"]


def test_the_keras_import_skip_applies_on_the_measured_tensorflow_and_the_model_still_loads(model_dir: Path) -> None:
    # Given the serving recommender in a fresh interpreter
    code = (
        "import sys, json\n"
        "from recsys.recommender import SKIP_MEASURED_ON, _tensorflow_version, load_recommender\n"
        f"model = load_recommender(__import__('pathlib').Path({str(model_dir)!r}))\n"
        "print(json.dumps({'version': _tensorflow_version(), 'measured': SKIP_MEASURED_ON,\n"
        "    'optimizers': 'keras.src.optimizers' in sys.modules, 'products': len(model.popular().top(10))}))"
    )
    # When the model is loaded
    result = run_python(code, lambda_env(model_dir, "customer_recommendations"))
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    # Then it serves, and on the release the skip was measured on, Keras' optimizers were never imported
    assert seen["products"] > 0
    assert seen["optimizers"] is not seen["version"].startswith(seen["measured"])
