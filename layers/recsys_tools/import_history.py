"""`recsys import-history`: seed the purchase histories in DynamoDB from a purchase CSV (the table and endpoint of
the service's settings: TABLE_NAME, DYNAMODB_ENDPOINT_URL, ...).

Each customer's history is built as record_purchases builds it (``recsys_tools.history``) and written with one
conditional PutItem that succeeds only where the customer has no history yet, by a pool of workers. So a second run
changes nothing, and histories that live purchases have already extended are never overwritten (``--replace``
overwrites them with the CSV's, as a conditional write on their current version).
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from recsys_tools.training.train_cli import add_csv_arguments, configure_logging, load_data

if TYPE_CHECKING:
    import pandas as pd

    from recsys.settings import Settings

log = logging.getLogger(__name__)
DEFAULT_WORKERS = 8
BATCH_DYNAMODB = {"dynamodb_connect_timeout": 10.0, "dynamodb_read_timeout": 30.0, "dynamodb_max_attempts": 10}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_csv_arguments(parser)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="concurrent writers")
    parser.add_argument(
        "--replace", action="store_true", help="overwrite existing histories with the CSV's (default: keep them)"
    )


def import_histories(
    settings: Settings, purchases: pd.DataFrame, *, workers: int = DEFAULT_WORKERS, replace: bool = False
) -> Counter[str]:
    """Write the purchases' histories into the settings' table (a progress bar on stderr); counts of customers
    ``written`` and ``kept`` (a history existed)."""
    from tqdm import tqdm

    from recsys.domain import PurchaseHistory
    from recsys.errors import VersionConflict
    from recsys.store import DynamoDBStore
    from recsys_tools.history import purchase_histories

    # a batch job, not a request: patient timeouts and retries (a request's would give up on a busy local DynamoDB)
    store = DynamoDBStore(settings.model_copy(update=BATCH_DYNAMODB))

    def write(history: PurchaseHistory) -> str:
        if replace and (current := store.get_history(history.customer_id)) is not None:
            # the orders it remembers stay: a redelivery of one must not count on top of the imported purchases
            history = history.evolve(version=current.version, orders=current.orders)
        try:
            store.put_history(history)
        except VersionConflict:
            return "kept"  # a history exists (or changed meanwhile): live purchases win
        return "written"

    outcomes: Counter[str] = Counter()
    histories = purchase_histories(purchases, settings.max_history_products)
    total = purchases["customer_id"].nunique()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for outcome in tqdm(pool.map(write, histories), total=total, unit="customer", desc="import-history"):
            outcomes[outcome] += 1
    return outcomes


def run(args: argparse.Namespace) -> int:
    from recsys.settings import load_settings

    configure_logging()
    settings = load_settings()
    purchases, _, _ = load_data(args)
    outcomes = import_histories(settings, purchases, workers=args.workers, replace=args.replace)
    print(
        f"import-history: {outcomes.total()} customers into table {settings.table_name!r}: "
        f"{outcomes['written']} written, {outcomes['kept']} kept (a history existed)"
    )
    return 0
