"""Purchase data: load a CSV, clean it, split it by time, build vocabularies. No TensorFlow here.

The cleaned format (one row per purchased line item) has the columns of ``CLEAN_COLUMNS``:
customer_id (str), product_id (str), timestamp (datetime64, naive UTC), quantity (float, > 0), name (str, may be ""),
country (str, may be "").

Cleaning (model_artifacts/data/README.md). Rules that need a column are applied only when the CSV has it:
rows without customer, product or timestamp are dropped; quantity <= 0 and unit price <= 0 are dropped; product ids
must match ``--product-pattern`` when one is given. Customer ids written as floats ("17850.0") become "17850".
Timestamps: ISO text (an offset is converted to UTC), or unix seconds / milliseconds / microseconds / nanoseconds
as numbers or numeric text, told apart by magnitude; other numbers are refused with a message naming the column.

Retail rules (``retail_rules``; `--retail-rules`): the Online Retail product id pattern (five digits and an optional
letter suffix: drops POST, M, BANK CHARGES, ...) and its cancellations (invoice numbers starting with "C"). They are
on by default only for the shipped file (recognised by its sha256, not by its column names: a CSV whose columns
are merely named like the retail ones is not cleaned by the retail's rules); `--retail-rules` applies them to
another file in the same format (e.g. a slice of it), `--no-retail-rules` turns them off.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys_tools.training.params import DEFAULT_DATA, DEFAULT_SPLIT_DATE, Columns, TrainParams

log = logging.getLogger(__name__)

FALLBACK_TEST_FRACTION = 0.15  # when the split date leaves either side empty, the latest 15% of rows are the test
ONLINE_RETAIL_PRODUCT_PATTERN = r"\d{5}[A-Za-z]*"
DEFAULT_COLUMNS = Columns()  # the Online Retail headers
CLEAN_COLUMNS = ["customer_id", "product_id", "timestamp", "quantity", "name", "country"]
ONLINE_RETAIL_SHA256 = "a213075796e0892a34b4e8a906b53002c77caac858f3fb6b0447ab213f2c6a77"  # the shipped file
# unix time units told apart by magnitude: [low, high) of the absolute values (about 1973 to 2286 in each unit)
UNIX_UNITS = {"s": (1e8, 1e10), "ms": (1e11, 1e13), "us": (1e14, 1e16), "ns": (1e17, 1e19)}
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


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


def is_retail_file(path: Path) -> bool:
    """Whether ``path`` is the shipped Online Retail file (by content, whatever its name)."""
    return path.exists() and file_sha256(path) == ONLINE_RETAIL_SHA256


def parse_timestamps(values: pd.Series, column: str) -> tuple[pd.Series, str]:
    """``values`` as naive UTC datetimes (NaT where a value cannot be read) and the format found.

    Numbers (or text that is all numbers) are unix time; the unit comes from their magnitude (``UNIX_UNITS``) and
    numbers of no unit's magnitude, or of several, are refused. Anything else is parsed as date text."""
    present = values.dropna()
    if pd.api.types.is_datetime64_any_dtype(values):
        numbers = pd.Series(dtype=float)
    else:
        numbers = pd.to_numeric(present, errors="coerce")
    if not numbers.empty and bool(numbers.notna().all()) and not pd.api.types.is_bool_dtype(present):
        magnitude = numbers.abs()
        low, high = float(magnitude.min()), float(magnitude.max())
        for unit, (start, stop) in UNIX_UNITS.items():
            if start <= low and high < stop and bool((numbers > 0).all()):
                parsed = pd.to_datetime(pd.to_numeric(values, errors="coerce"), unit=unit)
                return parsed, f"unix {UNIT_NAMES[unit]}"
        raise ValueError(
            f"timestamp column {column!r} holds numbers from {numbers.min():g} to {numbers.max():g}: not unix seconds "
            f"(1e8 to 1e10), milliseconds (1e11 to 1e13), microseconds or nanoseconds of one unit; write the times as "
            f"ISO 8601 text (2011-12-09 12:50:00) or as unix seconds or milliseconds"
        )
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        parsed = pd.to_datetime(values.astype("string"), errors="coerce", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    if not present.empty and parsed.notna().sum() == 0:
        raise ValueError(
            f"timestamp column {column!r} could not be read as dates (e.g. {str(present.iloc[0])!r}); write the times "
            f"as ISO 8601 text (2011-12-09 12:50:00) or as unix seconds or milliseconds"
        )
    return parsed, "date text" if not pd.api.types.is_datetime64_any_dtype(values) else "datetime"


def clean(
    raw: pd.DataFrame,
    columns: Columns = DEFAULT_COLUMNS,
    product_pattern: str | None = None,
    retail_rules: bool = False,
) -> pd.DataFrame:
    """Apply the cleaning rules and return the cleaned format, sorted by timestamp."""
    return clean_with_report(raw, columns, product_pattern, retail_rules)[0]


def clean_with_report(
    raw: pd.DataFrame,
    columns: Columns = DEFAULT_COLUMNS,
    product_pattern: str | None = None,
    retail_rules: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``clean``, and what it did: the columns found, each rule (with the rows it dropped, or why it is off) and the
    timestamps' format (the manifest's ``cleaning``)."""
    for required in (columns.customer, columns.product, columns.timestamp):
        if required not in raw.columns:
            raise ValueError(f"column {required!r} not in the data (columns: {list(raw.columns)})")
    frame = raw.dropna(subset=[columns.customer, columns.product, columns.timestamp])
    rules: dict[str, str] = {}

    def rule(name: str, column: str | None, keep_rows: pd.Series | None) -> pd.Series:
        """Record the rule (rows it drops among those still kept, or why it is off); return its mask."""
        if keep_rows is None:
            rules[name] = f"off: no column {column!r}" if column else "off"
            return pd.Series(True, index=frame.index)
        keep_rows = keep_rows.fillna(False).astype(bool)
        rules[name] = f"dropped {int((keep & ~keep_rows).sum())} rows" + (f" (column {column!r})" if column else "")
        return keep_rows

    keep = pd.Series(True, index=frame.index)
    has = frame.columns.__contains__
    if retail_rules:
        invoice = frame[columns.invoice].astype(str).str.upper() if has(columns.invoice) else None
        keep &= rule(
            "retail: cancellations (invoice starts with C)",
            columns.invoice,
            None if invoice is None else ~invoice.str.startswith("C"),
        )
    else:
        rules["retail: cancellations (invoice starts with C)"] = "off: not the retail data (--retail-rules)"
    quantity = pd.to_numeric(frame[columns.quantity], errors="coerce") if has(columns.quantity) else None
    keep &= rule("quantity > 0", columns.quantity, None if quantity is None else quantity > 0)
    price = pd.to_numeric(frame[columns.price], errors="coerce") if has(columns.price) else None
    keep &= rule("unit price > 0", columns.price, None if price is None else price > 0)
    product = frame[columns.product].astype(str).str.strip()
    if product_pattern is None and retail_rules:
        product_pattern = ONLINE_RETAIL_PRODUCT_PATTERN
    keep &= rule(
        "product id pattern" + (f" {product_pattern!r}" if product_pattern else ""),
        None,
        product.str.fullmatch(product_pattern) if product_pattern else None,
    )
    customer = frame[columns.customer].astype(str).str.strip().str.replace(r"^(\d+)\.0+$", r"\1", regex=True)
    keep &= rule("non-empty ids", None, (product != "") & (customer != ""))
    timestamp, time_format = parse_timestamps(frame[columns.timestamp], columns.timestamp)
    keep &= rule("readable timestamp", columns.timestamp, timestamp.notna())

    out = pd.DataFrame(
        {
            "customer_id": customer,
            "product_id": product,
            "timestamp": timestamp,
            "quantity": (quantity if quantity is not None else pd.Series(1.0, index=frame.index)).astype(float),
            "name": _text(frame, columns.name),
            "country": _text(frame, columns.country),
        }
    )[keep]
    report = {
        "rows_read": len(raw),
        "rows_kept": len(out),
        "retail_rules": retail_rules,
        "timestamp_format": f"{time_format} (column {columns.timestamp!r})",
        "columns": {role: (name if has(name) else None) for role, name in vars(columns).items()},
        "rules": {"rows without customer, product or timestamp": f"dropped {len(raw) - len(frame)} rows", **rules},
    }
    if out.empty:
        raise ValueError(f"no purchases left after cleaning; the rules: {report['rules']}")
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True), report


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series("", index=frame.index)
    return frame[column].fillna("").astype(str).str.strip()


def load_purchases(
    path: Path = DEFAULT_DATA,
    columns: Columns = DEFAULT_COLUMNS,
    product_pattern: str | None = None,
    retail_rules: bool | None = None,
) -> pd.DataFrame:
    """The cleaned purchases of a CSV; ``retail_rules`` None: on for the shipped file only (``is_retail_file``)."""
    return load_purchases_with_report(path, columns, product_pattern, retail_rules)[0]


def load_purchases_with_report(
    path: Path = DEFAULT_DATA,
    columns: Columns = DEFAULT_COLUMNS,
    product_pattern: str | None = None,
    retail_rules: bool | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    retail = is_retail_file(path) if retail_rules is None else retail_rules
    cleaned, report = clean_with_report(read_csv(path, columns), columns, product_pattern, retail)
    log.info("%s: %d purchases after cleaning; timestamps: %s", path.name, len(cleaned), report["timestamp_format"])
    for name, outcome in report["rules"].items():
        log.info("  cleaning rule %s: %s", name, outcome)
    return cleaned, report


def features_used(
    purchases: pd.DataFrame, params: TrainParams, cleaning: dict[str, Any] | None = None
) -> tuple[TrainParams, dict[str, Any]]:
    """The parameters with the features the data cannot feed turned off (product names when no product has a name,
    the country when no customer has one), and the record of which features are used and which are off and why (the
    manifest's ``features``); logs both. ``cleaning`` (``clean_with_report``'s report) names missing columns."""
    columns = (cleaning or {}).get("columns", {})

    def off_because(role: str, what: str) -> str:
        if columns.get(role, "") is None:
            return f"off: the data has no {role} column ({getattr(DEFAULT_COLUMNS, role)!r} or --{role}-column)"
        return f"off: no {what} in the data"

    has = {"names": bool((purchases["name"] != "").any()), "country": bool((purchases["country"] != "").any())}
    state = {
        "product id, purchase history (counts, recency)": "used",
        "product names (use_names)": "used" if has["names"] else off_because("name", "product name"),
        "country (use_country)": "used" if has["country"] else off_because("country", "country"),
    }
    for feature, wanted in (
        ("product names (use_names)", params.use_names),
        ("country (use_country)", params.use_country),
    ):
        if not wanted:
            state[feature] = "off: turned off by the parameters"
    params = replace(
        params, use_names=params.use_names and has["names"], use_country=params.use_country and has["country"]
    )
    used = [name for name, value in state.items() if value == "used"]
    off = {name: value.removeprefix("off: ") for name, value in state.items() if value != "used"}
    log.info("features used: %s", "; ".join(used))
    for name, reason in off.items():
        log.info("feature off: %s: %s", name, reason)
    return params, {"used": used, "off": off}


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
    out["timestamp"] = parse_timestamps(out["timestamp"], "timestamp")[0]
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
