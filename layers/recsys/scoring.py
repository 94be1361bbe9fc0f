"""The model's arithmetic on arrays, numpy only: a purchase history as arrays, the query tower, the ranking stage's
candidates, features and heads. Serving (``recsys.recommender``) and training (``recsys_tools.training.two_stage``)
both call these functions, so the features a ranker is trained on are the features it is served with.

Ranking features of a candidate product for one customer (``FEATURES``, in order): whether and how much the customer
bought it (log counts and quantity, log days since the last purchase, log counts decayed with 30- and 90-day
half-lives, as of the request time), its EASE item-item score from the customer's history (z-scored and log-ranked
among the candidates, and raw), its popularity (log distinct customers overall and in the 30 days before the model's
data end, and their difference: "trending") and three customer-level values (log distinct products, log purchase
events, log days since the latest purchase).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from recsys.domain import DAY_SECONDS, HALF_LIVES_DAYS

if TYPE_CHECKING:  # numpy comes with TensorFlow: modules that only type against this one stay light
    import numpy as np
    import numpy.typing as npt

    Floats = npt.NDArray[np.float32]
    Ints = npt.NDArray[np.int64]

FEATURES = (
    "bought",
    "log_count",
    "log_quantity",
    "log_days_since",
    "log_decayed_30d",
    "log_decayed_90d",
    "ease_z",
    "ease_log_rank",
    "ease_raw",
    "log_popularity",
    "log_popularity_recent",
    "trending",
    "customer_log_products",
    "customer_log_events",
    "customer_log_days_since_any",
)
NEVER_DAYS = 730.0  # "days since bought" of a product never bought
VIEWS = ("all", "new")  # the ranking heads: every candidate, or only never-bought ones (exclude_purchased)


class Bought(Protocol):
    """What the model reads of one product in a purchase history (recsys.domain.ProductHistory)."""

    @property
    def count(self) -> int: ...

    @property
    def quantity(self) -> int: ...

    @property
    def last_purchased(self) -> int: ...  # epoch seconds

    @property
    def decayed(self) -> tuple[float, ...]: ...  # per HALF_LIVES_DAYS, as of ref

    @property
    def ref(self) -> int: ...  # epoch seconds


@dataclass(frozen=True)
class HistoryArrays:
    """The products of one history the model knows, as arrays sorted by product row, as of a time ``now``."""

    rows: Ints
    count: Floats
    quantity: Floats
    days_since: Floats  # days since the last purchase (0 for a purchase recorded in the future)
    decayed: Floats  # [len(HALF_LIVES_DAYS), N] decayed counts as of now

    @classmethod
    def of(cls, history: Mapping[str, Bought], product_rows: Mapping[str, int], now: float) -> HistoryArrays | None:
        """None when the model knows none of the products."""
        import numpy as np

        known = sorted((product_rows[p], b) for p, b in history.items() if p in product_rows)
        if not known:
            return None
        size = len(known)
        bought = [b for _, b in known]
        half_lives = np.asarray(HALF_LIVES_DAYS, dtype=np.float64)[:, None] * DAY_SECONDS
        decayed = np.asarray([b.decayed for b in bought], dtype=np.float64).T  # [H, N] as of each ref
        since_ref = np.maximum(now - np.fromiter((b.ref for b in bought), np.float64, size), 0.0)
        since_last = np.fromiter((now - b.last_purchased for b in bought), np.float64, size)
        return cls(
            rows=np.fromiter((row for row, _ in known), np.int64, size),
            count=np.fromiter((b.count for b in bought), np.float32, size),
            quantity=np.fromiter((b.quantity for b in bought), np.float32, size),
            days_since=(np.maximum(since_last, 0.0) / DAY_SECONDS).astype(np.float32),
            decayed=(decayed * np.exp2(-since_ref / half_lives)).astype(np.float32),
        )


def query_embedding(
    history: HistoryArrays, history_vectors: Floats, half_life_days: float, country_vector: Floats | None
) -> Floats:
    """The query tower: the mean of the products' history embeddings weighted by log(1 + times bought) x
    2^(-days since last bought / half-life), plus the country's embedding. Ages count from the latest purchase: the
    weighted mean is the same, and an old history does not underflow to zero."""
    import numpy as np

    ages = history.days_since
    weights = np.log1p(history.count) * np.exp2(-(ages - ages.min()) / np.float32(half_life_days))
    query: Floats = (weights @ history_vectors[history.rows]) / max(float(weights.sum()), 1e-6)
    if country_vector is not None:
        query = query + country_vector
    return query.astype(np.float32)


@dataclass(frozen=True)
class ProductTables:
    """The ranking stage's product-side tables (rows as the model's product vocabulary)."""

    log_popularity: Floats  # [P] log1p(distinct customers) over the training data
    log_popularity_recent: Floats  # [P] the same over its last 30 days
    ease_columns: npt.NDArray[np.int32]  # [P, N] the products each product's purchase lifts most (pruned EASE)
    ease_values: Floats  # [P, N] by how much


@dataclass(frozen=True)
class Head:
    """A ranking head: standardised features, then a ReLU MLP to one logit (the exported Keras weights)."""

    mean: Floats
    std: Floats
    kernels: tuple[Floats, ...]
    biases: tuple[Floats, ...]

    def logits(self, features: Floats) -> Floats:
        import numpy as np

        hidden = (features - self.mean) / self.std
        last = len(self.kernels) - 1
        for layer, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
            hidden = hidden @ kernel + bias
            if layer < last:
                hidden = np.maximum(hidden, 0.0)
        out: Floats = hidden[:, 0]
        return out


def candidates(retrieved: Ints, history: HistoryArrays, *, exclude_purchased: bool) -> Ints:
    """The rows the ranking stage scores: the retrieved rows the customer never bought, then (unless
    ``exclude_purchased``) every product of the history."""
    import numpy as np

    fresh = retrieved[~np.isin(retrieved, history.rows)]
    return fresh if exclude_purchased else np.concatenate([fresh, history.rows])


def _z_scores(values: Floats) -> Floats:
    import numpy as np

    std = float(values.std())
    out: Floats = (values - values.mean()) / np.float32(std if std > 1e-6 else 1.0)
    return out


def _log_ranks(values: Floats) -> Floats:
    """log1p of each value's 0-based rank, best (largest) first; ties share the best rank (so a candidate's rank does
    not depend on the order the candidates come in)."""
    import numpy as np

    descending = np.sort(-values)
    out: Floats = np.log1p(np.searchsorted(descending, -values, side="left")).astype(np.float32)
    return out


def ease_scores(history: HistoryArrays, tables: ProductTables, rows: Ints) -> Floats:
    """EASE scores of the product ``rows`` for a customer: the sum over bought products of their neighbour weights."""
    import numpy as np

    size = len(tables.log_popularity)
    columns = tables.ease_columns[history.rows].ravel()
    totals = np.bincount(columns, weights=tables.ease_values[history.rows].ravel(), minlength=size)
    out: Floats = totals[rows].astype(np.float32)
    return out


def features(rows: Ints, history: HistoryArrays, tables: ProductTables) -> Floats:
    """[len(rows), len(FEATURES)] ranking features of the candidate product ``rows`` for one customer."""
    import numpy as np

    at = np.minimum(np.searchsorted(history.rows, rows), len(history.rows) - 1)
    bought = history.rows[at] == rows

    def per_candidate(values: Floats, missing: float = 0.0) -> Floats:
        out: Floats = np.where(bought, values[at], np.float32(missing))
        return out

    ease = ease_scores(history, tables, rows)
    popularity, recent = tables.log_popularity[rows], tables.log_popularity_recent[rows]
    customer = np.log1p([len(history.rows), float(history.count.sum()), float(history.days_since.min())])
    columns = [
        bought.astype(np.float32),
        np.log1p(per_candidate(history.count)),
        np.log1p(per_candidate(history.quantity)),
        np.log1p(per_candidate(history.days_since, NEVER_DAYS)),
        *(np.log1p(per_candidate(decayed)) for decayed in history.decayed),
        _z_scores(ease),
        _log_ranks(ease),
        np.clip(ease, -1.0, 2.0),
        popularity,
        recent,
        recent - popularity,
        *(np.full(len(rows), value, dtype=np.float32) for value in customer),
    ]
    return np.stack(columns, axis=1).astype(np.float32)


def sigmoid(logits: Floats) -> Floats:
    import numpy as np

    out: Floats = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return out
