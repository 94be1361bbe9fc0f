"""A CPU quota for a child process, as Lambda gives a function CPU in proportion to its memory.

Lambda gives a function one vCPU at 1,769 MB and proportionally less below (AWS' documentation: "at 1,769 MB, a
function has the equivalent of one vCPU"): 512 MB is about 0.29 of a core. The quota is a cgroup CPU bandwidth
limit (cgroup v1 ``cpu.cfs_quota_us``, or v2 ``cpu.max``) on a cgroup made for the run beside this process's own, so
it takes writing to the cgroup file system (root, or a delegated cgroup v2 subtree). Where that is not possible,
``CpuQuota.make`` says why and the benchmark skips the section.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

LAMBDA_MB_PER_VCPU = 1769
PERIOD_US = 100_000  # the scheduler's enforcement period (the default): quota_us of CPU time per 100 ms
CGROUP_ROOT = Path("/sys/fs/cgroup")
# a child started through it joins the cgroup first: `sh -c SCRIPT <cgroup.procs> argv...` then execs argv (same pid)
JOIN = 'echo $$ > "$0" && exec "$@"'


def lambda_cpu_share(memory_mb: int) -> float:
    """The share of one core a Lambda function of ``memory_mb`` gets."""
    return memory_mb / LAMBDA_MB_PER_VCPU


def _mounts() -> list[tuple[str, Path, set[str]]]:
    """(file system type, mount point, super options) of the cgroup mounts, from /proc/self/mountinfo."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines():
        fields, _, rest = line.partition(" - ")
        kind, _source, options = ([*rest.split(" "), "", ""])[:3]
        if kind in {"cgroup", "cgroup2"}:
            mounts.append((kind, Path(fields.split(" ")[4]), set(options.split(","))))
    return mounts


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per hierarchy: controller names (v1, e.g. "cpu,cpuacct") or "" (v2)."""
    cgroups = {}
    for line in Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines():
        _, controllers, path = line.split(":", 2)
        cgroups[controllers] = path
    return cgroups


class CpuQuota:
    """A cgroup of its own whose CPU bandwidth ``set`` limits; ``command`` starts a child inside it."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version

    @classmethod
    def make(cls, name: str) -> CpuQuota | str:
        """A new cgroup named ``name`` (with this pid) beside this process's, or why there can be none here."""
        if not hasattr(os, "getuid"):
            return "not Linux"
        try:
            mounts, own = _mounts(), _own_cgroups()
        except OSError as error:
            return f"cgroups not readable: {error}"
        problems = []
        for kind, mount, options in mounts:
            if kind == "cgroup" and "cpu" in options:
                controllers = next((c for c in own if "cpu" in c.split(",")), None)
                parent = mount / own.get(controllers or "", "/").lstrip("/")
                made = cls._make(parent / f"{name}-{os.getpid()}", 1)
            elif kind == "cgroup2":
                parent = mount / own.get("", "/").lstrip("/")
                if "cpu" not in (parent / "cgroup.controllers").read_text(encoding="utf-8").split():
                    problems.append(f"cgroup v2 at {mount}: the cpu controller is not available to {parent}")
                    continue
                made = cls._make(parent / f"{name}-{os.getpid()}", 2, enable=parent / "cgroup.subtree_control")
            else:
                continue
            if isinstance(made, CpuQuota):
                return made
            problems.append(made)
        return "; ".join(problems) or "no cgroup file system with the cpu controller is mounted"

    @classmethod
    def _make(cls, path: Path, version: int, enable: Path | None = None) -> CpuQuota | str:
        try:
            if enable is not None and "cpu" not in enable.read_text(encoding="utf-8").split():
                enable.write_text("+cpu", encoding="utf-8")  # fails where the parent holds processes (v2's rule)
            path.mkdir(exist_ok=True)
            quota = cls(path, version)
            quota.set(1.0)  # proves the limit can be written
        except OSError as error:
            with contextlib.suppress(OSError):
                path.rmdir()
            return f"cgroup v{version} at {path.parent}: {error.strerror or error} (needs root or a delegated cgroup)"
        return quota

    def set(self, share: float) -> None:
        """Limit the cgroup's processes to ``share`` of one core (over 1: more than one core)."""
        quota = max(1000, round(share * PERIOD_US))  # the kernel's minimum is 1 ms
        if self.version == 1:
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US), encoding="utf-8")
            (self.path / "cpu.cfs_quota_us").write_text(str(quota), encoding="utf-8")
        else:
            (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}", encoding="utf-8")

    def share(self) -> float:
        """The share of one core the cgroup is limited to now (read back from the kernel)."""
        if self.version == 1:
            quota = int((self.path / "cpu.cfs_quota_us").read_text(encoding="utf-8"))
            period = int((self.path / "cpu.cfs_period_us").read_text(encoding="utf-8"))
        else:
            quota_text, period_text = (self.path / "cpu.max").read_text(encoding="utf-8").split()
            quota, period = (-1 if quota_text == "max" else int(quota_text)), int(period_text)
        return float("inf") if quota < 0 else quota / period

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the cgroup (it joins before exec, so the whole process is limited from its start)."""
        return ["/bin/sh", "-c", JOIN, str(self.path / "cgroup.procs"), *argv]

    def throttled_seconds(self) -> float:
        """CPU time the cgroup's processes waited for the quota, in all (cpu.stat)."""
        stat = dict(
            line.split(" ", 1) for line in (self.path / "cpu.stat").read_text(encoding="utf-8").splitlines() if line
        )
        if self.version == 1:
            return int(stat.get("throttled_time", "0")) / 1e9
        return int(stat.get("throttled_usec", "0")) / 1e6

    def remove(self) -> None:
        """Remove the cgroup (its processes have exited)."""
        self.path.rmdir()
