"""The two-stage model: TFRS retrieval (``model``) for candidates, then a TFRS ranking model that re-scores them.

Protocol, inside the data it is given (nothing here sees a test split):
1. Validation period: the last ``validation_days`` before the data's end (longer when that holds under a tenth of
   the purchases, see ``validation_start``). The retrieval model is fitted on the purchases before it; EASE's lambda
   is chosen on it (Recall@20 of never-bought products bought in the period).
2. Ranking examples: every customer with a history before the period and a purchase in it; candidates as served
   (``recsys.scoring.candidates``: the retrieval top-K_MAX never bought, plus the history), features as of the
   period's start (``recsys.scoring.features``, the served code), label 1 when bought in the period.
3. Two heads (TFRS ``Ranking`` task, binary cross-entropy, a small ReLU MLP): "all" on every candidate, "new" on
   never-bought ones (served when the request excludes past purchases).
4. The retrieval model and the product tables (popularity, pruned EASE) are refitted on all the data; the heads keep
   the weights learned on the period (their features are relative: counts, recency, popularity, ranks).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from recsys.scoring import (
    FEATURES,
    VIEWS,
    Head,
    HistoryArrays,
    ProductTables,
    candidates,
    exact_top,
    features,
    query_embedding,
)
from recsys_tools.history import purchase_histories
from recsys_tools.training import ease
from recsys_tools.training.data import time_split
from recsys_tools.training.evaluate import choose_ease_lambda
from recsys_tools.training.export import Ranking, Towers
from recsys_tools.training.params import K_MAX, TrainParams
from recsys_tools.training.progress import EpochLoss  # selects tf-keras before TensorFlow is imported

log = logging.getLogger(__name__)

Array = npt.NDArray[Any]

RECENT_DAYS = 30  # the window of log_popularity_recent
MIN_VALIDATION_SHARE = 0.1  # the validation period holds at least this share of the purchases
MAX_HISTORY = 500  # products per history, as the service keeps them (Settings.max_history_products)


def validation_start(purchases: pd.DataFrame, days: int) -> pd.Timestamp:
    """The start of the validation period: ``days`` before the data's end, or earlier so that the period holds at
    least MIN_VALIDATION_SHARE of the purchases (short or sparse data)."""
    times = purchases["timestamp"]
    start: pd.Timestamp = min(times.max() - pd.Timedelta(days=days), times.quantile(1 - MIN_VALIDATION_SHARE))
    return start


def product_tables(purchases: pd.DataFrame, products: list[str], ease_lambda: float, neighbours: int) -> ProductTables:
    """Popularity (overall and the last RECENT_DAYS) and pruned EASE over ``products`` (the model's rows)."""
    index = pd.Index(products)
    column = index.get_indexer(purchases["product_id"])
    known = purchases[column >= 0]
    column = column[column >= 0]
    recent = (known["timestamp"] >= known["timestamp"].max() - pd.Timedelta(days=RECENT_DAYS)).to_numpy()

    def log_customers(rows: Array) -> Array:
        pairs = pd.DataFrame({"c": known["customer_id"].to_numpy()[rows], "p": column[rows]}).drop_duplicates()
        return np.log1p(np.bincount(pairs["p"], minlength=len(products))).astype(np.float32)

    columns: Array = np.zeros((len(products), 0), np.int32)  # no EASE above ease.MAX_PRODUCTS: its features are 0
    values: Array = np.zeros((len(products), 0), np.float32)
    if len(products) <= ease.MAX_PRODUCTS:
        weights = ease.ease_weights(ease.gram(_bought(known, column, len(products))), ease_lambda)
        columns, values = ease.prune(weights, neighbours)
    return ProductTables(
        log_popularity=log_customers(np.ones(len(known), dtype=bool)),
        log_popularity_recent=log_customers(recent),
        ease_columns=columns,
        ease_values=values,
    )


def _bought(purchases: pd.DataFrame, column: Array, num_products: int) -> Any:
    import scipy.sparse as sp

    customers = pd.Index(purchases["customer_id"].unique())
    rows = customers.get_indexer(purchases["customer_id"])
    ones = np.ones(len(rows), dtype=np.float32)
    return sp.csr_matrix((ones, (rows, column)), shape=(len(customers), num_products))


@dataclass(frozen=True)
class Examples:
    """Ranking examples of the validation period: per customer, candidate features and labels."""

    features: Array  # [N, F]
    labels: Array  # [N]
    bought: Array  # [N] the candidate is a past purchase
    customer: Array  # [N] index of the example's customer
    coverage: dict[str, float]  # share of the period's purchases among the candidates, per view


def examples(
    before: pd.DataFrame, period: pd.DataFrame, towers: Towers, tables: ProductTables, params: TrainParams
) -> Examples:
    """Candidates, features and labels for the customers who bought in ``period`` and have a history ``before``."""
    rows = {p: i for i, p in enumerate(towers.products)}
    countries = {c: i for i, c in enumerate(towers.countries)}
    now = period["timestamp"].min().timestamp()
    bought_later = period[period["product_id"].isin(rows)].groupby("customer_id")["product_id"].agg(set)
    active = before[before["customer_id"].isin(bought_later.index)]
    parts: list[tuple[Array, Array, Array]] = []
    covered = {view: [] for view in VIEWS}  # type: dict[str, list[float]]
    history_vectors = np.ascontiguousarray(towers.history_embeddings.T)  # as query_embeddings reads them
    product_columns = np.ascontiguousarray(towers.product_embeddings.T)  # as exact_top reads them
    for history in purchase_histories(active, MAX_HISTORY):
        arrays = HistoryArrays.of(history.products, rows, now)
        if arrays is None:
            continue
        country = countries.get(history.country or "")
        query = query_embedding(
            arrays,
            history_vectors,
            params.recency_half_life_days,
            None if country is None else towers.country_embeddings[country],
        )
        # as served: the top K_MAX never bought (Recommender.exact_candidates)
        retrieved, _ = exact_top(product_columns, query, K_MAX, arrays.rows)
        candidate_rows = candidates(retrieved, arrays, exclude_purchased=False)
        targets = np.fromiter((rows[p] for p in bought_later[history.customer_id]), np.int64)
        labels = np.isin(candidate_rows, targets)
        bought = np.isin(candidate_rows, arrays.rows)
        parts.append((features(candidate_rows, arrays, tables), labels, bought))
        covered["all"].append(labels.sum() / len(targets))
        new_targets = np.setdiff1d(targets, arrays.rows)
        if len(new_targets):
            covered["new"].append(np.isin(new_targets, candidate_rows).mean())
    if not parts:
        raise ValueError(
            "too little data for the ranking stage: no customer with a history bought in the validation period"
        )
    return Examples(
        features=np.concatenate([x for x, _, _ in parts]),
        labels=np.concatenate([y for _, y, _ in parts]).astype(np.float32),
        bought=np.concatenate([b for _, _, b in parts]),
        customer=np.concatenate([np.full(len(y), i) for i, (_, y, _) in enumerate(parts)]),
        coverage={view: round(float(np.mean(v)), 4) if v else 0.0 for view, v in covered.items()},
    )


def fit_head(x: Array, y: Array, params: TrainParams, name: str) -> Head:
    """A TFRS ranking model (standardise -> ReLU MLP -> logit, binary cross-entropy) as a numpy ``Head``."""
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    if y.sum() < 1:
        raise ValueError(f"too little data for the ranking stage: no positive example for head {name!r}")
    tf.keras.utils.set_random_seed(params.seed)
    mean = x.mean(axis=0).astype(np.float32)
    std = (x.std(axis=0) + 1e-6).astype(np.float32)
    widths = (params.ranker_width, max(1, params.ranker_width // 2))

    class RankingModel(tfrs.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            layers = [tf.keras.layers.Dense(width, activation="relu") for width in widths]
            self.mlp = tf.keras.Sequential([*layers, tf.keras.layers.Dense(1)])
            # summed over the batch, as the retrieval task's (EpochLoss reports it per example; Adam's steps do not
            # depend on the loss's scale)
            loss = tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=tf.keras.losses.Reduction.SUM)
            self.task = tfrs.tasks.Ranking(loss=loss)

        def call(self, inputs: tf.Tensor) -> tf.Tensor:
            return self.mlp((inputs - mean) / std)

        def compute_loss(self, inputs: tuple[tf.Tensor, tf.Tensor], training: bool = False) -> tf.Tensor:
            return self.task(labels=inputs[1], predictions=self(inputs[0]))

    model = RankingModel()
    model.compile(optimizer=tf.keras.optimizers.Adam(params.ranker_learning_rate))
    dataset = (
        tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y.astype(np.float32)[:, None]))
        .shuffle(len(x), seed=params.seed)
        .batch(params.ranker_batch_size)
    )
    model.fit(dataset, epochs=params.ranker_epochs, verbose=0, callbacks=[EpochLoss(len(x), f"ranking head {name}")])
    dense = model.mlp.layers
    return Head(
        mean=mean,
        std=std,
        kernels=tuple(layer.kernel.numpy() for layer in dense),
        biases=tuple(layer.bias.numpy() for layer in dense),
    )


def fit_ranking(
    purchases: pd.DataFrame, params: TrainParams, names: dict[str, str], final_products: list[str]
) -> Ranking:
    """Steps 1-3 of the module's protocol on ``purchases``, and the product tables over ``final_products`` (the rows
    of the retrieval model trained on all of them)."""
    from recsys_tools.training.model import fit

    start = validation_start(purchases, params.validation_days)
    before = purchases[purchases["timestamp"] < start]
    period = purchases[purchases["timestamp"] >= start]
    log.info("ranking stage: validation period from %s (%d purchases)", start.date(), len(period))
    started = time.monotonic()
    towers, _ = fit(before, params, names, "retrieval (validation period)")
    lam, ease_recalls = choose_ease_lambda(time_split(purchases, str(start)))  # as the evaluation's EASE rows
    log.info("EASE lambda %g chosen on the validation period (Recall@20 new: %s)", lam, ease_recalls)
    tables = product_tables(before, towers.products, lam, params.ease_neighbours)
    found = examples(before, period, towers, tables, params)
    heads = {
        "all": fit_head(found.features, found.labels, params, "all"),
        "new": fit_head(found.features[~found.bought], found.labels[~found.bought], params, "new"),
    }
    info = {
        "features": list(FEATURES),
        "validation_start": str(start.date()),
        "ease_lambda": lam,
        "ease_validation_recall_new": ease_recalls,
        "examples": len(found.labels),
        "positives": int(found.labels.sum()),
        "customers": int(found.customer.max()) + 1,
        "candidate_coverage": found.coverage,
        "hidden": [params.ranker_width, max(1, params.ranker_width // 2)],
        "seconds": round(time.monotonic() - started, 1),
    }
    final = product_tables(purchases, final_products, lam, params.ease_neighbours)
    return Ranking(final, heads, info)


def fit_two_stage(
    purchases: pd.DataFrame, params: TrainParams, names: dict[str, str]
) -> tuple[Towers, Ranking, dict[str, Any]]:
    """The whole protocol: the ranking stage on the validation period, then retrieval on all of ``purchases``."""
    from recsys_tools.training.model import fit

    towers, sizes = fit(purchases, params, names)
    return towers, fit_ranking(purchases, params, names, towers.products), sizes
