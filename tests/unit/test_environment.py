"""The environment keeps the 620 MB `tensorflow` wheel out while TensorFlow and scann still import."""

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_tensorflow_cpu_installed_and_gpu_wheel_absent() -> None:
    assert importlib.metadata.version("tensorflow-cpu").startswith("2.20.")
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("tensorflow")


def test_lock_file_holds_no_tensorflow_package() -> None:
    names = {line.removeprefix("name = ").strip('"') for line in (REPO / "uv.lock").read_text().splitlines()}
    assert "tensorflow-cpu" in names
    assert "tensorflow" not in names


def test_tensorflow_and_scann_import() -> None:
    code = "import tensorflow as tf, scann; print(tf.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip().startswith("2.20.")
