"""layers/Dockerfile: the Lambda Python 3.12 base, serving dependencies only (exported from uv.lock), and a build
context that holds everything the image copies. No Docker here: the Dockerfile is read, its export command is run."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths  # type: ignore[import-untyped]  # what SAM CLI uses to send the context

from recsys.settings import REPO_ROOT

DOCKERFILE = REPO_ROOT / "layers" / "Dockerfile"
BASE_IMAGE = "public.ecr.aws/lambda/python:3.12"
SERVING = {"tensorflow-cpu", "scann", "numpy", "fastapi", "mangum", "aws-lambda-powertools", "boto3", "pydantic"}
NEVER = {"tensorflow", "tensorflow-recommenders", "tf-keras", "pandas", "implicit", "pytest", "moto"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1]) for line in lines]


def runs(fragment: str) -> list[str]:
    return [args for instruction, args in instructions() if instruction == "RUN" and fragment in args]


def normalise(requirement: str) -> str:
    return re.split(r"[\[<>=~!;\s]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def uv() -> str:
    pinned = REPO_ROOT / ".cache" / "tools" / "bin" / "uv"  # what `make setup` installs
    found = str(pinned) if pinned.exists() else shutil.which("uv")
    if found is None:
        pytest.skip("uv is not installed: run `make setup`")
    return found


def test_every_stage_starts_from_the_lambda_python_312_base() -> None:
    assert ("ARG", f"BASE_IMAGE={BASE_IMAGE}") in instructions()
    stages = [args for instruction, args in instructions() if instruction == "FROM"]
    assert stages
    assert all(stage.split()[0] == "${BASE_IMAGE}" for stage in stages)


def test_builder_uses_the_uv_version_the_makefile_pins() -> None:
    pinned = re.search(r"^UV_VERSION := (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE)
    assert pinned
    assert runs(f"pip install --no-cache-dir uv=={pinned[1]}")


def test_export_command_yields_the_serving_dependencies_only(tmp_path: Path) -> None:
    # Given what the builder stage has: pyproject.toml and uv.lock, and the Dockerfile's own command
    (command,) = runs("uv export")
    argv = shlex.split(command)
    output = argv[argv.index("-o") + 1]
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    env |= {"UV_OFFLINE": "1", "UV_CACHE_DIR": str(tmp_path / "cache")}
    # When it runs
    subprocess.run([uv(), *argv[1:]], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=60)
    # Then every requirement is pinned and hashed, serving packages are in and nothing from a dependency group is
    requirements = (tmp_path / output).read_text(encoding="utf-8")
    entries = [line for line in requirements.splitlines() if line[:1] not in ("", "#", " ")]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==\S+ ;.* \\", entry) for entry in entries)  # pinned; hashes follow
    assert requirements.count("--hash=sha256:") >= len(entries)
    names = {normalise(entry) for entry in entries}
    groups = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["dependency-groups"]
    in_groups = {normalise(requirement) for group in groups.values() for requirement in group}
    assert names >= SERVING
    assert not names & (NEVER | in_groups)


def test_image_installs_the_export_then_code_then_model() -> None:
    steps = instructions()
    final = max(i for i, (instruction, _) in enumerate(steps) if instruction == "FROM")
    tail = [f"{instruction} {args}" for instruction, args in steps[final:]]

    def position(prefix: str) -> int:
        (index,) = [i for i, step in enumerate(tail) if step.startswith(prefix)]
        return index

    install = position("RUN pip install")
    assert {"--no-deps", "--require-hashes", "-r"} <= set(tail[install].split())
    assert "ENV MODEL_DIR=${LAMBDA_TASK_ROOT}/model" in " ".join(tail)
    order = [install, position("COPY layers/recsys/"), position("COPY functions/"), position("COPY --from=model")]
    assert order == sorted(order)
    assert tail[order[-1]].endswith("${MODEL_DIR}/")


def test_build_context_holds_what_the_image_copies_and_no_more() -> None:
    ignore = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    context = exclude_paths(str(REPO_ROOT), patterns, dockerfile="layers/Dockerfile")
    sources = [
        source
        for instruction, args in instructions()
        if instruction == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    ]
    for source in sources:
        path = source.rstrip("/")
        assert (REPO_ROOT / path).exists(), source
        assert path in context, f"{source} is excluded by .dockerignore"
    assert "functions/show_recommendations/app.py" in context
    assert not {p for p in context if p.startswith(("model_artifacts/data/", ".venv", ".git/", "tests/"))}


def test_current_model_named_for_the_image_is_complete() -> None:
    current = REPO_ROOT / "model_artifacts" / "CURRENT"
    if not current.exists():
        pytest.skip("no model trained yet (`make train` writes model_artifacts/CURRENT)")
    version = REPO_ROOT / "model_artifacts" / current.read_text().strip()
    assert (version / "manifest.json").is_file()
    assert (version / "saved_model").is_dir()
