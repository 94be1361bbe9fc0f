"""The tests' data: a slice of the shipped purchases, and the customers the tests talk about."""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path

from recsys.domain import PurchaseHistory
from recsys.settings import REPO_ROOT, Settings

DATA = REPO_ROOT / "model_artifacts" / "data" / "online_retail.csv.gz"
SLICE_CUSTOMERS = 40  # the first customers of the data set, 17850 among them (the events' customer)
KNOWN_CUSTOMER = "17850"
UNKNOWN_CUSTOMER = "new-customer-1"


def write_data_slice(path: Path, customers: int = SLICE_CUSTOMERS) -> Path:
    """The shipped file's rows for its first ``customers`` customers, in the same raw format."""
    chosen: set[str] = set()
    with gzip.open(DATA, "rt", newline="") as src, gzip.open(path, "wt", newline="") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst)
        header = next(reader)
        writer.writerow(header)
        column = header.index("CustomerID")
        for row in reader:
            customer = row[column]
            if customer and (customer in chosen or len(chosen) < customers):
                chosen.add(customer)
                writer.writerow(row)
    return path


@dataclass(frozen=True)
class SliceHistories:
    """The slice's customers' purchase histories as record_purchases builds them, and the slice's last moment."""

    by_customer: dict[str, PurchaseHistory]
    now: float


def slice_histories(path: Path) -> SliceHistories:
    from recsys_tools.history import purchase_histories
    from recsys_tools.training.data import load_purchases

    purchases = load_purchases(path, retail_rules=True)  # a slice of the retail file: its rules apply
    by_customer = {h.customer_id: h for h in purchase_histories(purchases, Settings().max_history_products)}
    return SliceHistories(by_customer, purchases["timestamp"].max().timestamp())
