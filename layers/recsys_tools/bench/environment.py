"""What the figures were measured on: the machine, the library versions and the serving dependencies' size."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "recsys"
VERSIONS = ("tensorflow-cpu", "scann", "fastapi", "mangum", "aws-lambda-powertools", "boto3", "moto")
MB = 1_000_000


def _proc_field(path: str, field: str) -> str | None:
    try:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == field:
                return value.strip()
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    memory_kb = _proc_field("/proc/meminfo", "MemTotal")
    return {
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(int(memory_kb.split()[0]) / 1024**2, 1) if memory_kb else None,
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _installed_bytes(distribution: metadata.Distribution) -> int:
    total = 0
    for file in distribution.files or ():
        located = Path(str(distribution.locate_file(file)))
        if located.is_file():
            total += located.stat().st_size
    return total


def serving_closure(project: str = PROJECT) -> dict[str, metadata.Distribution]:
    """The installed distributions the project's [project.dependencies] pull in, transitively (markers and extras
    honoured; requirements that are not installed are skipped)."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [(Requirement(r), frozenset[str]()) for r in metadata.requires(project) or ()]
    while pending:
        requirement, extras = pending.pop()  # extras: those requested of the distribution that requires it
        marker = requirement.marker
        if marker and not any(marker.evaluate({"extra": extra}) for extra in {"", *extras}):
            continue
        name = canonicalize_name(requirement.name)
        requested = frozenset(requirement.extras)
        if (name, requested) in seen:
            continue
        seen.add((name, requested))
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[name] = distribution
        pending += [(Requirement(r), requested) for r in distribution.requires or ()]
    return found


def serving_footprint(top: int = 5) -> dict[str, Any]:
    sizes = {name: _installed_bytes(d) for name, d in serving_closure().items()}
    largest = sorted(sizes.items(), key=lambda item: item[1], reverse=True)[:top]
    return {
        "unit": "MB (10^6 bytes)",
        "total_mb": round(sum(sizes.values()) / MB, 1),
        "distributions": len(sizes),
        "largest": [{"name": name, "mb": round(size / MB, 1)} for name, size in largest],
    }
