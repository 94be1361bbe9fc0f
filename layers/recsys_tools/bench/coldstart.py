"""Cold starts: each function's handler imported and its first request served in a fresh interpreter
(coldstart_child.py), next to a bare `import tensorflow, scann` in the same run.

DynamoDB is moto's server in this process, on loopback, so the child imports nothing the Lambda would not.
``cold_starts_at_lambda_share`` runs the same under a cgroup CPU quota of each function's Lambda CPU share
(MemorySize / 1,769 MB of one core, ``recsys_tools.bench.cpu_quota``; the reference import at generate's share).
"""

from __future__ import annotations

import compileall
import json
import os
import subprocess  # nosec B404 - runs this interpreter on our own script only
import sys
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from recsys.artifact import Artifact
from recsys.domain import PurchaseHistory
from recsys.operations import GENERATE, OPERATIONS, RECORD_PURCHASES
from recsys.settings import REPO_ROOT, Settings
from recsys_tools.bench.cpu_quota import CpuQuota, lambda_cpu_share
from recsys_tools.bench.handlers import (
    bench_history,
    lambda_environment,
    patched_environ,
    request_events,
    with_order_id,
)
from recsys_tools.bench.timing import summarize
from recsys_tools.template import function_for, load_template, memory_size

CHILD = Path(__file__).with_name("coldstart_child.py")
REFERENCE = "reference"
TIMEOUT_SECONDS = 600


def _byte_compile() -> None:
    """Byte-compile the service's own code, as the image does at build time (`make setup` compiles the packages);
    otherwise, with PYTHONDONTWRITEBYTECODE set, every child would compile it again."""
    for folder in (Path(__file__).parents[1], REPO_ROOT / "functions"):  # layers/recsys, functions
        compileall.compile_dir(folder, quiet=1)


def _seed(events: dict[str, dict[str, Any]], history: PurchaseHistory) -> None:
    """The table, the benchmark customer's history and a stored list for them (show and delete need one)."""
    from recsys.domain import Recommendation, RecommendationList
    from recsys.store import DynamoDBStore
    from recsys_tools.local_stack import create_table

    settings = Settings()
    create_table(settings)
    store = DynamoDBStore(settings)
    customer = events["show_recommendations"]["pathParameters"]["customer_id"]
    products = [*json.loads(events["delete_recommendations"]["body"])["product_ids"], "seeded-1", "seeded-2"]
    items = tuple(Recommendation(p, 1.0 / (i + 1), "model") for i, p in enumerate(products))
    store.put(RecommendationList(customer, items=items))
    store.put_history(history)


def _event(events: dict[str, dict[str, Any]], name: str, i: int) -> dict[str, Any] | None:
    """The event of run ``i`` of ``name``: record_purchases gets a new order each time (not a redelivery)."""
    event = events.get(name)
    return with_order_id(event, f"cold-{i}") if event is not None and name == RECORD_PURCHASES.name else event


def _spawn(
    operation: str,
    event: dict[str, Any] | None,
    env: dict[str, str],
    result_path: Path,
    quota: CpuQuota | None = None,
    share: float | None = None,
) -> dict[str, Any]:
    argv = [sys.executable, "-P", str(CHILD), operation, str(result_path)]
    if quota is not None and share is not None:
        quota.set(share)
        argv = quota.command(argv)
    spawned = time.perf_counter()  # CLOCK_MONOTONIC: comparable with the child's perf_counter
    child = subprocess.run(  # noqa: S603  # nosec B603 - our own interpreter and script (through /bin/sh with a quota)
        argv,
        input=json.dumps(event or {}),
        text=True,
        env=env,
        capture_output=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"cold start of {operation} failed:\n{child.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
    if result.get("status", 200) != 200:
        raise RuntimeError(f"cold {operation} answered {result['status']}:\n{child.stdout[-3000:]}")
    phases: dict[str, float] = result["phases"]
    phases["interpreter_start"] = result["start"] - spawned
    phases["total"] = sum(phases.values())
    result["cpu"]["total"] = sum(result["cpu"].values())
    return result


def _summaries(runs: list[dict[str, Any]]) -> dict[str, Any]:
    names = runs[0]["phases"].keys()
    summary: dict[str, Any] = {name: summarize([r["phases"][name] for r in runs], "s") for name in names}
    summary["cpu"] = {name: summarize([r["cpu"][name] for r in runs], "s") for name in runs[0]["cpu"]}
    if "tensorflow_imported" in runs[0]:
        summary["tensorflow_imported"] = any(r["tensorflow_imported"] for r in runs)
    return summary


def cold_starts(
    model_dir: Path,
    *,
    repeat: int,
    operations: tuple[str, ...] | None = None,
    concurrent: bool = False,
    quota: CpuQuota | None = None,
    shares: Mapping[str, float] | None = None,
    reference: bool = True,
) -> dict[str, Any]:
    """Per operation (all by default) and the reference import: each phase's median/p90/p99 over ``repeat`` fresh
    interpreters (record_purchases records a new order in each); the reference only if ``reference``.

    ``concurrent`` starts them all at once, one per core (a smoke test: the figures then mean little). With a
    ``quota``, each child runs inside it, limited to its ``shares[name]`` of one core (one child at a time)."""
    from moto.moto_api._internal.models import moto_api_backend
    from moto.server import ThreadedMotoServer

    events = request_events(Artifact(model_dir))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = {"DYNAMODB_ENDPOINT_URL": f"http://{host}:{port}"}
        moto_api_backend.reset()  # moto's state is this process's: an earlier run (another section) left its tables
        with patched_environ(lambda_environment(model_dir) | endpoint):
            _seed(events, bench_history(Artifact(model_dir), int(time.time())))
        path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        child = os.environ | endpoint | {"PYTHONPATH": path}  # functions.<op>.app importable, as from the task root
        chosen = operations or tuple(op.name for op in OPERATIONS)
        envs = {name: child | lambda_environment(model_dir, name) | endpoint for name in chosen}
        envs[REFERENCE] = child
        # round-robin, so a busy moment does not hit one function only
        names = [*chosen, *([REFERENCE] if reference else [])] * repeat
        _byte_compile()
        workers = os.cpu_count() if concurrent and quota is None else 1
        with tempfile.TemporaryDirectory() as workdir, ThreadPoolExecutor(workers) as pool:
            spawned = pool.map(
                lambda i: _spawn(
                    names[i],
                    _event(events, names[i], i),
                    envs[names[i]],
                    Path(workdir) / f"{i}.json",
                    quota,
                    None if shares is None else shares[names[i]],
                ),
                range(len(names)),
            )
            runs: dict[str, list[dict[str, Any]]] = {}
            for name, result in zip(names, spawned, strict=True):
                runs.setdefault(name, []).append(result)
    finally:
        server.stop()
    return {"repeat": repeat, **{name: _summaries(results) for name, results in runs.items()}}


def cold_starts_at_lambda_share(
    model_dir: Path, *, repeat: int, operations: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """``cold_starts`` with each child limited to its function's Lambda CPU share (template.yaml's MemorySize /
    1,769 MB; the reference import at generate's), or ``{"skipped": why}`` where no CPU quota can be set here."""
    quota = CpuQuota.make("recsys-bench-cold-start")
    if isinstance(quota, str):
        return {"skipped": f"no CPU quota can be applied on this machine: {quota}"}
    template = load_template()
    chosen = operations or tuple(op.name for op in OPERATIONS)
    memory = {name: memory_size(template, function_for(template, name)) for name in chosen}
    memory[REFERENCE] = memory_size(template, function_for(template, GENERATE.name))
    shares = {name: lambda_cpu_share(mb) for name, mb in memory.items()}
    try:
        results = cold_starts(model_dir, repeat=repeat, operations=chosen, quota=quota, shares=shares)
    finally:
        quota.remove()
    return results | {"memory_mb": memory, "cpu_share": {name: round(share, 3) for name, share in shares.items()}}
