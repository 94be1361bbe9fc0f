"""`recsys batch`: regenerate every customer's list with a model, on one machine, against the DynamoDB the settings
name (TABLE_NAME, DYNAMODB_ENDPOINT_URL: for `recsys serve`'s embedded one, http://127.0.0.1:8001 and
recommendations).

The same work as the batch function (``recsys.batch.regenerate_segment``): the table's parallel-scan segments, run by
a pool of worker threads sharing one loaded model. Resumable: a customer whose list already has the model's version
is skipped (unless ``--force``), so running it again after an interruption writes only the customers not reached.
Prints the accounting (JSON) at the end; exits 1 when some customers failed.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from recsys_tools.import_history import BATCH_DYNAMODB

if TYPE_CHECKING:
    from recsys.batch import Accounting, BatchOptions
    from recsys.service import RecommendationService

DEFAULT_SEGMENTS = 8
DEFAULT_WORKERS = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", type=Path, help="model artifact to generate with (default: the current model)")
    parser.add_argument("--segments", type=int, default=DEFAULT_SEGMENTS, help="parallel-scan segments")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="threads running segments")
    parser.add_argument("--k", type=int, help="products per customer (default: DEFAULT_K)")
    parser.add_argument(
        "--popular-for-unknown",
        action="store_true",
        help="customers whose history holds no product the model knows get the popular list (default: left alone)",
    )
    parser.add_argument("--force", action="store_true", help="rewrite lists that already have the model's version")


def run_batch(
    service: RecommendationService,
    options: BatchOptions,
    *,
    segments: int = DEFAULT_SEGMENTS,
    workers: int = DEFAULT_WORKERS,
    on_customer: Callable[[str], None] = lambda _: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Accounting:
    """Every segment of the table through ``regenerate_segment``, ``workers`` at a time; the accounting of all of
    them (``seconds``: the wall clock of the run)."""
    from recsys.batch import Accounting, regenerate_segment

    service.load_model()
    started = time.perf_counter()
    total = Accounting()
    lock = threading.Lock()

    def one(segment: int) -> None:
        done = regenerate_segment(service, segment, segments, options, should_stop=should_stop, on_customer=on_customer)
        with lock:
            total.merge(done)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(segments)))
    total.seconds = time.perf_counter() - started
    return total


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from recsys.batch import BatchOptions
    from recsys.service import default_service
    from recsys.settings import load_settings

    settings = load_settings()
    # a batch job, not a request: patient timeouts and retries, as import-history
    settings = settings.model_copy(update=BATCH_DYNAMODB | ({"model_dir": args.model_dir} if args.model_dir else {}))
    options = BatchOptions(
        k=args.k or settings.default_k, popular_for_unknown=args.popular_for_unknown, force=args.force
    )
    service = default_service(settings)
    print(f"batch: model {settings.resolved_model_dir()}, table {settings.table_name!r}", flush=True)
    with tqdm(unit="customer", desc="batch") as bar:
        lock = threading.Lock()

        def tick(_: str) -> None:
            with lock:
                bar.update()

        done = run_batch(service, options, segments=args.segments, workers=args.workers, on_customer=tick)
    print(json.dumps(done.to_json(), indent=2))
    return 1 if done.failed else 0
