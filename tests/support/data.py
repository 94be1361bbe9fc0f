"""The tests' data: a slice of the shipped purchases, and the customers the tests talk about."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from recsys.settings import REPO_ROOT

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
