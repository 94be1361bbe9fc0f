"""Purchase data: load a CSV, clean it, split it by time, build vocabularies. No TensorFlow here.

The cleaned format (one row per purchased line item) has the columns of ``CLEAN_COLUMNS``:
customer_id (str), product_id (str), timestamp (datetime64), quantity (float, > 0), name (str, may be ""),
country (str, may be "").

Cleaning (model_artifacts/data/README.md). Rules that need a column are applied only when the CSV has it:
rows without customer, product or timestamp are dropped; invoice numbers starting with "C" (cancellations),
quantity <= 0 and unit price <= 0 are dropped; product ids must match a pattern, by default the Online Retail one
(five digits and an optional letter suffix) when the product column is the Online Retail ``StockCode``, none
otherwise. Customer ids written as floats ("17850.0") become "17850".
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys_tools.training.params import DEFAULT_DATA, DEFAULT_SPLIT_DATE, Columns

log = logging.getLogger(__name__)

FALLBACK_TEST_FRACTION = 0.15  # when the split date leaves either side empty, the latest 15% of rows are the test
ONLINE_RETAIL_PRODUCT_PATTERN = r"\d{5}[A-Za-z]*"
DEFAULT_COLUMNS = Columns()  # the Online Retail headers
CLEAN_COLUMNS = ["customer_id", "product_id", "timestamp", "quantity", "name", "country"]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def frame_sha256(purchases: pd.DataFrame) -> str:
    """Content hash of a cleaned frame (for data that did not come from a file)."""
    hashed = pd.util.hash_pandas_object(purchases[CLEAN_COLUMNS], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def read_csv(path: Path, columns: Columns = DEFAULT_COLUMNS) -> pd.DataFrame:
    """The raw CSV with ids read as strings (pandas would turn "17850.0" into a float and codes into ints)."""
    as_text = {columns.customer: str, columns.product: str, columns.invoice: str}
    return pd.read_csv(path, dtype=as_text, keep_default_na=True)


def clean(raw: pd.DataFrame, columns: Columns = DEFAULT_COLUMNS, product_pattern: str | None = None) -> pd.DataFrame:
    """Apply the cleaning rules and return the cleaned format, sorted by timestamp."""
    for required in (columns.customer, columns.product, columns.timestamp):
        if required not in raw.columns:
            raise ValueError(f"column {required!r} not in the data (columns: {list(raw.columns)})")
    frame = raw.dropna(subset=[columns.customer, columns.product, columns.timestamp])
    keep = pd.Series(True, index=frame.index)
    if columns.invoice in frame.columns:
        keep &= ~frame[columns.invoice].astype(str).str.upper().str.startswith("C")
    quantity = (
        pd.to_numeric(frame[columns.quantity], errors="coerce")
        if columns.quantity in frame.columns
        else pd.Series(1.0, index=frame.index)
    )
    keep &= quantity > 0
    if columns.price in frame.columns:
        keep &= pd.to_numeric(frame[columns.price], errors="coerce") > 0
    product = frame[columns.product].astype(str).str.strip()
    if product_pattern is None and columns.product == Columns.product:
        product_pattern = ONLINE_RETAIL_PRODUCT_PATTERN
    if product_pattern:
        keep &= product.str.fullmatch(product_pattern)
    keep &= product != ""
    timestamp = pd.to_datetime(frame[columns.timestamp], errors="coerce")
    keep &= timestamp.notna()

    customer = frame[columns.customer].astype(str).str.strip().str.replace(r"^(\d+)\.0+$", r"\1", regex=True)
    keep &= customer != ""
    out = pd.DataFrame(
        {
            "customer_id": customer,
            "product_id": product,
            "timestamp": timestamp,
            "quantity": quantity.astype(float),
            "name": _text(frame, columns.name),
            "country": _text(frame, columns.country),
        }
    )[keep]
    if out.empty:
        raise ValueError("no purchases left after cleaning")
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series("", index=frame.index)
    return frame[column].fillna("").astype(str).str.strip()


def load_purchases(
    path: Path = DEFAULT_DATA, columns: Columns = DEFAULT_COLUMNS, product_pattern: str | None = None
) -> pd.DataFrame:
    cleaned = clean(read_csv(path, columns), columns, product_pattern)
    log.info("%s: %d purchases after cleaning", path.name, len(cleaned))
    return cleaned


def validate(purchases: pd.DataFrame) -> pd.DataFrame:
    """Check that a frame is in the cleaned format (e.g. one built by a test) and normalise its dtypes."""
    missing = set(CLEAN_COLUMNS) - set(purchases.columns)
    if missing:
        raise ValueError(f"purchases lack the columns {sorted(missing)}")
    if purchases.empty:
        raise ValueError("no purchases")
    out = purchases[CLEAN_COLUMNS].copy()
    for text in ("customer_id", "product_id", "name", "country"):
        out[text] = out[text].fillna("").astype(str)
    out["timestamp"] = pd.to_datetime(out["timestamp"])
    out["quantity"] = out["quantity"].astype(float)
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Split:
    """Time split: train before the cutoff; test on/after it, restricted to customers and products seen in train."""

    train: pd.DataFrame
    test: pd.DataFrame
    cutoff: pd.Timestamp


def time_split(purchases: pd.DataFrame, split_date: str | None = DEFAULT_SPLIT_DATE) -> Split:
    cutoff = pd.Timestamp(split_date) if split_date else None
    times = purchases["timestamp"]
    if cutoff is None or not (times.min() < cutoff <= times.max()):
        fallback = times.quantile(1 - FALLBACK_TEST_FRACTION)
        if cutoff is not None:
            log.warning("split date %s is outside the data; using %s", cutoff.date(), fallback)
        cutoff = fallback
    train = purchases[times < cutoff]
    test = purchases[times >= cutoff]
    test = test[test["customer_id"].isin(train["customer_id"]) & test["product_id"].isin(train["product_id"])]
    return Split(train.reset_index(drop=True), test.reset_index(drop=True), cutoff)


def vocabulary(values: pd.Series) -> list[str]:
    """Sorted distinct ids."""
    return sorted(values.unique().tolist())


def product_names(purchases: pd.DataFrame) -> dict[str, str]:
    """Most frequent non-empty name of each product ("" when it never has one); ties go to the first seen."""
    named = purchases.loc[purchases["name"] != "", ["product_id", "name"]]
    counts = named.groupby(["product_id", "name"], sort=False).size().rename("n").reset_index()
    best = counts.sort_values("n", ascending=False, kind="stable").drop_duplicates("product_id")
    names = dict(zip(best["product_id"], best["name"], strict=True))
    return {product: names.get(product, "") for product in vocabulary(purchases["product_id"])}


def popular_products(purchases: pd.DataFrame, size: int = 500) -> list[tuple[str, float]]:
    """(product, distinct customers), most distinct customers first (ties: quantity)."""
    stats = purchases.groupby("product_id").agg(customers=("customer_id", "nunique"), quantity=("quantity", "sum"))
    top = stats.sort_values(["customers", "quantity"], ascending=False, kind="stable").head(size)
    return [(p, float(n)) for p, n in zip(top.index, top["customers"], strict=True)]


def synthetic_purchases(num_customers: int = 30, num_products: int = 12, seed: int = 0) -> pd.DataFrame:
    """A small cleaned-format dataset with learnable structure: customers fall into groups, each group mostly buys
    its own products. Ids look like the Online Retail ones; timestamps span 2011, so the default split works."""
    rng = np.random.default_rng(seed)
    groups = 3
    rows = []
    start = pd.Timestamp("2011-01-01")
    for c in range(num_customers):
        group = c % groups
        own = [p for p in range(num_products) if p % groups == group] or list(range(num_products))
        for _ in range(int(rng.integers(4, 10))):
            product = int(rng.choice(own)) if rng.random() < 0.85 else int(rng.integers(num_products))
            rows.append(
                {
                    "customer_id": str(12000 + c),
                    "product_id": str(20000 + product),
                    "timestamp": start + pd.Timedelta(minutes=int(rng.integers(0, 365 * 24 * 60))),
                    "quantity": float(rng.integers(1, 13)),
                    "name": f"PRODUCT {product} GROUP {product % groups}",
                    "country": ["United Kingdom", "France", "Germany"][group],
                }
            )
    return validate(pd.DataFrame(rows, columns=CLEAN_COLUMNS))
