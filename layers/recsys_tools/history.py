"""Purchase histories from purchase data, built exactly as record_purchases builds them (``PurchaseHistory.add``):
what `recsys import-history` seeds the table with, and what the evaluation and the benchmarks query the served model
with."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from recsys.domain import Purchase, PurchaseHistory


def purchase_histories(purchases: pd.DataFrame, limit: int) -> Iterator[PurchaseHistory]:
    """Each customer's history of the cleaned ``purchases`` (one purchase event per row, in time order), bounded to the
    ``limit`` most recently bought products, with the customer's most frequent country."""
    seconds = purchases["timestamp"].astype("int64") // 1_000_000_000
    quantity = purchases["quantity"].round().clip(lower=1).astype("int64")
    frame = pd.DataFrame(
        {"customer": purchases["customer_id"], "product": purchases["product_id"], "q": quantity, "t": seconds}
    )
    country = purchases.groupby("customer_id")["country"].agg(lambda s: s.value_counts().index[0])
    for customer, group in frame.groupby("customer", sort=True):
        events = (
            Purchase(p, int(q), int(t))
            for p, q, t in zip(group["product"].tolist(), group["q"].tolist(), group["t"].tolist(), strict=True)
        )
        yield PurchaseHistory(str(customer)).add(events, limit, str(country[customer]) or None)
