"""`make image-deps`: the serving requirements, exported exactly as layers/Dockerfile exports them, fetched as the
image's pip would fetch them on its Python 3.12 (hash-checked wheels for glibc 2.34 x86_64). The check itself needs
PyPI and runs in `make stress`; these tests read the commands make would run (`make -n`, nothing is executed)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest

from recsys.settings import REPO_ROOT
from tests.infra.test_image import BASE_IMAGE, runs

OUTPUT_OPTIONS = {"-o", "--output-file"}


def planned_commands(target: str) -> list[list[str]]:
    """The commands `make <target>` would run, as argv lists: continuation lines joined, `a || b` split in two,
    redirections left out."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    plan = subprocess.run(
        ["make", "--no-print-directory", "-n", target], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    commands: list[list[str]] = []
    for line in plan.stdout.replace("\\\n", " ").splitlines():
        argv = shlex.split(line)
        while "||" in argv:
            commands.append(argv[: argv.index("||")])
            argv = argv[argv.index("||") + 1 :]
        commands.append(argv)
    redirection = re.compile(r"\d?>")
    return [[arg for arg in argv if not redirection.match(arg)] for argv in commands if argv]


def without_output(argv: list[str]) -> list[str]:
    """uv export's arguments after `export`, less where it writes and how much it says."""
    args = argv[argv.index("export") + 1 :]
    kept = [a for i, a in enumerate(args) if a not in OUTPUT_OPTIONS and (i == 0 or args[i - 1] not in OUTPUT_OPTIONS)]
    return [a for a in kept if a != "--quiet"]


def test_image_deps_exports_the_requirements_the_dockerfile_exports() -> None:
    (dockerfile_export,) = runs("uv export")
    (make_export,) = [argv for argv in planned_commands("image-deps") if "export" in argv]
    assert without_output(make_export) == without_output(shlex.split(dockerfile_export))


def test_image_deps_fetches_hash_checked_wheels_for_the_images_python_and_glibc() -> None:
    # the cached wheels first, then PyPI
    cached, pypi = [argv for argv in planned_commands("image-deps") if "download" in argv]
    assert cached == [*pypi, "--no-index", "--find-links", pypi[pypi.index("--dest") + 1]]
    python = re.fullmatch(r".*:(\d+)\.(\d+)", BASE_IMAGE)
    assert python
    assert {"--no-deps", "--require-hashes", "--only-binary=:all:", "--isolated"} <= set(pypi)
    assert pypi[pypi.index("--python-version") + 1] == f"{python[1]}.{python[2]}"
    assert pypi[pypi.index("--implementation") + 1] == "cp"
    platforms = {pypi[i + 1] for i, arg in enumerate(pypi) if arg == "--platform"}
    # Amazon Linux 2023 has glibc 2.34: it runs every manylinux wheel up to 2_34 (the scann wheel is 2_27, grpcio 2_17)
    glibc_234 = {f"manylinux_2_{minor}_x86_64" for minor in range(5, 35)} | {"manylinux2014_x86_64"}
    assert platforms == glibc_234


def test_stress_runs_image_deps() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    stress = re.search(r"^stress:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert stress
    assert re.search(r"\$\(MAKE\).* image-deps$", stress[1], re.MULTILINE)
    assert re.search(r"^\.PHONY:.* image-deps\b", makefile, re.MULTILINE)
