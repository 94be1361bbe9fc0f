"""Batch generation end to end (issue 15): `recsys batch`'s run (``run_batch``, default segments and workers) over the
retail customers' histories in moto's DynamoDB server, in a process of its own on loopback, as `recsys serve` and
`recsys batch` would be; and its two parts timed apart to name the bottleneck:

- the model part: ``service.generation`` for each customer's history, applied to an empty list (one thread);
- the write path: each customer's GetItem and conditional PutItem of a precomputed list (the store's calls), with the
  same number of worker threads;
- the scan: every segment's history items read, nothing else.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recsys.domain import PurchaseHistory, RecommendationList
from recsys.settings import Settings
from recsys_tools.batch import DEFAULT_SEGMENTS, DEFAULT_WORKERS, run_batch
from recsys_tools.import_history import BATCH_DYNAMODB
from recsys_tools.local_stack import free_port

K = 20
STARTUP_SECONDS = 60


@contextmanager
def moto_server_process() -> Iterator[str]:
    """moto's DynamoDB server in a child process on a free loopback port; yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603  # nosec B603
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def attribute_bytes(value: dict[str, Any]) -> int:
    """DynamoDB's size of one attribute value as the wire gives it ({"S": ...}, {"N": ...}, ...): strings their UTF-8
    bytes, numbers about one byte per two significant digits + 1 (DynamoDB's documented rule)."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "N":
        digits = str(raw).lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    return len(json.dumps(raw).encode())  # not stored by this service; a rough figure


def item_sizes(client: Any, table: str) -> dict[str, dict[str, float]]:
    """Mean and largest DynamoDB item size (bytes: attribute names + values) of the table's items by record (the list,
    the history), from a full Scan: what each write and the batch's Scan are billed on."""
    sizes: dict[str, list[int]] = {}
    request: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**request)
        for item in page["Items"]:
            size = sum(len(name.encode()) + attribute_bytes(value) for name, value in item.items())
            sizes.setdefault(item["record"]["S"], []).append(size)
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return {record: {"mean": sum(s) / len(s), "max": max(s), "items": len(s)} for record, s in sizes.items()}


def batch_end_to_end(model_dir: Path, histories: list[PurchaseHistory], now: float) -> dict[str, Any]:
    """customers/s of a whole batch run against moto's server, and of its parts (see the module's doc)."""
    from recsys.batch import BatchOptions
    from recsys.service import default_service, generation
    from recsys.store import DynamoDBStore
    from recsys_tools.local_stack import create_table

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "local")  # boto3 needs credentials; moto accepts any
    with moto_server_process() as endpoint:
        settings = Settings(dynamodb_endpoint_url=endpoint, model_dir=model_dir).model_copy(update=BATCH_DYNAMODB)
        create_table(settings)
        store = DynamoDBStore(settings)
        with ThreadPoolExecutor(max_workers=DEFAULT_WORKERS) as pool:
            list(pool.map(store.put_history, histories))
        service = default_service(settings, store)
        service.load_model()
        model = service.model()

        started = time.perf_counter()
        scanned = sum(1 for s in range(DEFAULT_SEGMENTS) for _ in store.histories(s, DEFAULT_SEGMENTS))
        scan_seconds = time.perf_counter() - started

        started = time.perf_counter()
        planned = [generation(model, h, now, K)[1](RecommendationList(h.customer_id)) for h in histories]
        model_seconds = time.perf_counter() - started

        options = BatchOptions(k=K, popular_for_unknown=True)
        done = run_batch(service, options, segments=DEFAULT_SEGMENTS, workers=DEFAULT_WORKERS)

        def rewrite(planned_list: RecommendationList) -> None:
            stored = store.get(planned_list.customer_id)
            store.put(planned_list.evolve(version=stored.version if stored else 0))

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=DEFAULT_WORKERS) as pool:
            list(pool.map(rewrite, planned))
        write_seconds = time.perf_counter() - started
        sizes = item_sizes(store.client, settings.table_name)

    customers = len(histories)
    model_rate, write_rate = customers / model_seconds, customers / write_seconds
    return {
        "customers": customers,
        "segments": DEFAULT_SEGMENTS,
        "workers": DEFAULT_WORKERS,
        "k": K,
        "accounting": done.to_json(),
        "end_to_end_seconds": done.seconds,
        "end_to_end_customers_per_second": done.customers_per_second,
        "end_to_end_ms_per_customer": 1000 * done.seconds / max(done.seen, 1),
        "scan_customers": scanned,
        "scan_seconds": scan_seconds,
        "model_customers_per_second_one_thread": model_rate,
        "model_ms_per_customer": 1000 * model_seconds / customers,
        "write_path_customers_per_second": write_rate,
        "write_path_ms_per_customer_per_worker": 1000 * write_seconds * DEFAULT_WORKERS / customers,
        "item_bytes": sizes,
        "bottleneck": "write path (GetItem + conditional PutItem)" if write_rate < model_rate else "model",
    }
