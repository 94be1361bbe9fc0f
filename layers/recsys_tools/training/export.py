"""Export a trained model's towers and a ScaNN index as a SavedModel that serving loads with TensorFlow + scann only.

The module holds string->row hash tables, the embedding tables (product, history and country, each with a trailing
all-zero OOV row) and a ScaNN searcher built directly with ``scann.scann_ops.builder`` (no TFRS, no Keras), and
exposes exactly the signatures documented in ``recsys.artifact``. Nothing in it is per customer.

ScaNN facts this module relies on (scann 1.4.2, pinned by tests/unit/test_export.py):

- with ``dot_product`` the returned "distances" are the dot products themselves (higher is better);
- rows come best first without duplicate indices; brute force returns ``min(k, N)`` columns; tree + AH returns
  at most ``min(k, reorder)`` columns and pads rows it cannot fill with index 0 and a NaN distance at the end.
  Both are normalised here to exactly ``k_max`` columns, padding with product id ``""`` and score ``-inf``;
- ``leaves_to_search`` given at search time overrides the built config, both ways, so it is tuned after one
  build by measuring recall against brute force;
- a SavedModel holding ScaNN ops needs ``namespace_whitelist=["Scann"]`` to save and ``import scann`` to load.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import tensorflow as tf
from scann.scann_ops.py import scann_ops

from recsys import artifact
from recsys.artifact import SAVED_MODEL_DIR
from recsys.scoring import FEATURES, VIEWS, Head, ProductTables

BRUTE_FORCE_BELOW = 1_000  # catalogues smaller than this are searched exhaustively
PAD_PRODUCT_ID = ""
RECALL_SAMPLE = 500  # sample queries used to measure ScaNN recall@10 against brute force
RECALL_K = 10

Floats = npt.NDArray[np.float32]
Ids = npt.NDArray[np.object_]


@dataclass(frozen=True)
class Towers:
    """What serving needs of a trained model, and nothing per customer: the candidate tower's output per product, the
    query tower's tables (history embedding per product, country embedding per country), and sample queries (training
    customers', computed as serving would) to tune and measure the index with."""

    products: list[str]
    product_embeddings: Floats  # [P, D]
    history_embeddings: Floats  # [P, D]
    countries: list[str]
    country_embeddings: Floats  # [C, D]; zeros when the model does not use the country
    sample_queries: Floats  # [S, D]


@dataclass(frozen=True)
class Ranking:
    """The ranking stage: product tables (of the full data) and the heads per view, with how they were made."""

    tables: ProductTables
    heads: dict[str, Head]
    info: dict[str, Any]


@dataclass(frozen=True)
class IndexParams:
    """ScaNN configuration. ``kind="brute_force"`` ignores the tree/AH fields."""

    kind: Literal["brute_force", "tree_ah"]
    num_leaves: int = 0
    leaves_to_search: int = 0
    reorder_num_neighbors: int = 0
    dimensions_per_block: int = 2
    anisotropic_quantization_threshold: float = 0.2
    training_sample_size: int = 100_000
    min_partition_size: int = 50
    target_recall_at_10: float = 0.99  # export picks the smallest leaves_to_search whose measured recall reaches this


def index_params_for(num_products: int, k_max: int = 200) -> IndexParams:
    """Index parameters from the catalogue size: brute force for small catalogues, otherwise ~sqrt(N) leaves,
    10% of them searched (tuned at export to the recall target) and exact re-ordering of 2*k_max candidates."""
    if num_products < 1:
        raise ValueError("the catalogue is empty")
    if num_products < BRUTE_FORCE_BELOW:
        return IndexParams(kind="brute_force")
    num_leaves = round(math.sqrt(num_products))
    return IndexParams(
        kind="tree_ah",
        num_leaves=num_leaves,
        leaves_to_search=max(1, math.ceil(num_leaves / 10)),
        reorder_num_neighbors=max(2 * k_max, 100),
        training_sample_size=min(num_products, 100_000),
        min_partition_size=max(1, min(50, num_products // (2 * num_leaves))),
    )


def _build_searcher(products: Floats, params: IndexParams, k: int) -> Any:
    builder = scann_ops.builder(products, k, "dot_product")
    if params.kind == "brute_force":
        return builder.score_brute_force().build()
    return (
        builder.tree(
            num_leaves=params.num_leaves,
            num_leaves_to_search=params.leaves_to_search,
            training_sample_size=params.training_sample_size,
            min_partition_size=params.min_partition_size,
        )
        .score_ah(
            params.dimensions_per_block,
            anisotropic_quantization_threshold=params.anisotropic_quantization_threshold,
            training_sample_size=params.training_sample_size,
        )
        .reorder(params.reorder_num_neighbors)
        .build()
    )


def _search(searcher: Any, queries: tf.Tensor, params: IndexParams, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    leaves = params.leaves_to_search if params.kind == "tree_ah" else None
    result = searcher.search_batched_parallel(queries, final_num_neighbors=k, leaves_to_search=leaves)
    return result.indices, result.distances


def _kth_exact_scores(queries: Floats, products: Floats, k: int) -> Floats:
    """Each query's exact k-th best score, in chunks so queries x catalogue stays small for 1M products."""
    chunks = [
        tf.math.top_k(tf.matmul(queries[i : i + 64], products, transpose_b=True), k).values[:, -1].numpy()
        for i in range(0, len(queries), 64)
    ]
    return np.concatenate(chunks)


def _recall_at_10(searcher: Any, queries: Floats, kth: Floats, products: Floats, params: IndexParams, k: int) -> float:
    """Share of ScaNN's top 10 whose exact score reaches the exact 10th-best score (robust to ties)."""
    k10 = min(RECALL_K, len(products))
    indices, distances = _search(searcher, tf.constant(queries), params, k)
    indices, distances = indices[:, :k10], distances[:, :k10]
    valid = tf.math.is_finite(distances)
    exact = tf.einsum("bd,bkd->bk", queries, tf.gather(products, tf.where(valid, indices, 0)))
    found = valid & (exact >= kth[:, None] - 1e-5 * (1.0 + np.abs(kth[:, None])))
    return float(tf.reduce_mean(tf.cast(found, tf.float32)))


def _tune_leaves(
    searcher: Any, queries: Floats, products: Floats, params: IndexParams, k: int
) -> tuple[IndexParams, float]:
    """Smallest leaves_to_search whose measured recall@10 reaches the target: from the initial value, bisect
    downwards if it already does, else double until it does and bisect back."""
    kth = _kth_exact_scores(queries, products, min(RECALL_K, len(products)))

    def recall(leaves: int) -> float:
        return _recall_at_10(searcher, queries, kth, products, replace(params, leaves_to_search=leaves), k)

    best = params.leaves_to_search
    measured = recall(best)
    if params.kind == "brute_force":
        return params, measured
    low = 0  # invariant: recall(low) < target (0 leaves find nothing)
    while measured < params.target_recall_at_10 and best < params.num_leaves:
        low, best = best, min(params.num_leaves, 2 * best)
        measured = recall(best)
    while best - low > 1:  # only a value that meets the target replaces best
        middle = (low + best) // 2
        middle_recall = recall(middle)
        if middle_recall >= params.target_recall_at_10:
            best, measured = middle, middle_recall
        else:
            low = middle
    return replace(params, leaves_to_search=best), measured


def _lookup_table(ids: Ids) -> tf.lookup.StaticHashTable:
    """id -> row; unknown ids -> len(ids), the OOV row."""
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(ids, dtype=tf.string), tf.range(len(ids), dtype=tf.int64)
    )
    return tf.lookup.StaticHashTable(initializer, default_value=len(ids))


def _with_oov_row(embeddings: Floats) -> tf.Variable:
    padded = np.concatenate([embeddings, np.zeros((1, embeddings.shape[1]), np.float32)])
    return tf.Variable(padded, trainable=False)


class HeadModule(tf.Module):  # type: ignore[misc]
    """A ranking head's weights (``recsys.scoring.Head``) and its arithmetic, for the rank_* signatures."""

    def __init__(self, head: Head) -> None:
        super().__init__()
        self.mean = tf.Variable(head.mean, trainable=False)
        self.std = tf.Variable(head.std, trainable=False)
        self.kernels = [tf.Variable(kernel, trainable=False) for kernel in head.kernels]
        self.biases = [tf.Variable(bias, trainable=False) for bias in head.biases]

    def __call__(self, features: tf.Tensor) -> tf.Tensor:
        hidden = (features - self.mean) / self.std
        for layer, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
            hidden = tf.matmul(hidden, kernel) + bias
            if layer < len(self.kernels) - 1:
                hidden = tf.nn.relu(hidden)
        return hidden[:, 0]


class RecommenderModule(tf.Module):  # type: ignore[misc]
    """The product side, the query tower's tables and the ScaNN index, with the serving signatures. Nothing per
    customer: the query is computed from a purchase history at request time (``query``)."""

    def __init__(
        self,
        towers: Towers,
        ranking: Ranking,
        searcher: Any,
        params: IndexParams,
        k_max: int,
        half_life_days: float,
    ) -> None:
        super().__init__(name="recommender")
        product_ids = np.asarray(towers.products, dtype=object)
        self._params = params
        self._k_max = k_max
        self._num_products = len(product_ids)
        self._k_search = min(k_max, self._num_products)
        self._half_life_days = float(half_life_days)
        self.product_table = _lookup_table(product_ids)
        self.country_table = _lookup_table(np.asarray(towers.countries, dtype=object))
        self.product_embeddings = _with_oov_row(towers.product_embeddings)
        self.history_embeddings = _with_oov_row(towers.history_embeddings)
        self.country_embeddings = _with_oov_row(towers.country_embeddings)
        # the ids of the rows, in order (serving maps ids to rows with them); product row N, the padding and OOV row,
        # is the empty id
        self.product_vocabulary = tf.Variable(
            np.concatenate([product_ids, np.array([PAD_PRODUCT_ID], dtype=object)]), trainable=False, dtype=tf.string
        )
        self.country_vocabulary = tf.Variable(
            np.asarray(towers.countries, dtype=object), trainable=False, dtype=tf.string, shape=[None]
        )
        self.recency_half_life_days = tf.Variable(self._half_life_days, trainable=False, dtype=tf.float32)
        self.scann = searcher.serialize_to_module()
        tables = ranking.tables
        self.log_popularity = tf.Variable(tables.log_popularity, trainable=False)
        self.log_popularity_recent = tf.Variable(tables.log_popularity_recent, trainable=False)
        self.ease_columns = tf.Variable(tables.ease_columns, trainable=False)
        self.ease_values = tf.Variable(tables.ease_values, trainable=False)
        self.heads = {view: HeadModule(ranking.heads[view]) for view in VIEWS}

    def _finalise(self, indices: tf.Tensor, scores: tf.Tensor) -> dict[str, tf.Tensor]:
        """Rows come best first with invalid hits last (ScaNN: NaN score, index 0) and no duplicates (pinned by
        tests): replace invalid hits by ("", -inf) and pad to k_max columns."""
        indices = tf.cast(indices, tf.int64)
        valid = tf.math.is_finite(scores) & (indices >= 0) & (indices < self._num_products)
        scores = tf.where(valid, scores, float("-inf"))
        indices = tf.where(valid, indices, self._num_products)
        if scores.shape[1] != self._k_max:  # top_k gives k_search columns, ScaNN up to k_search
            pad = [[0, 0], [0, self._k_max - tf.shape(scores)[1]]]
            scores = tf.pad(scores, pad, constant_values=float("-inf"))
            indices = tf.pad(indices, pad, constant_values=self._num_products)
        return {
            "product_ids": tf.ensure_shape(tf.gather(self.product_vocabulary, indices), [None, self._k_max]),
            "scores": tf.ensure_shape(scores, [None, self._k_max]),
        }

    @tf.function(  # type: ignore[untyped-decorator]
        input_signature=[
            tf.TensorSpec([None], tf.string, name="product_ids"),
            tf.TensorSpec([None], tf.float32, name="counts"),
            tf.TensorSpec([None], tf.float32, name="ages_days"),
            tf.TensorSpec([], tf.string, name="country"),
        ]
    )
    def query(
        self, product_ids: tf.Tensor, counts: tf.Tensor, ages_days: tf.Tensor, country: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """The query tower on one purchase history: the mean of the products' history embeddings weighted by
        log(1 + times bought) x 2^(-days since last bought / half-life), plus the country's embedding. Products and
        countries the model does not know add nothing (an all-unknown history gives the country's vector alone).
        Being a weighted mean, it depends only on the ages relative to each other: they are taken from the latest
        purchase, so a history years old is weighted as it was when fresh instead of underflowing to zero."""
        rows = self.product_table.lookup(product_ids)
        is_known = rows < self._num_products
        known = tf.cast(is_known, tf.float32)
        # ages from the latest known purchase: the mean does not change, and old histories do not underflow
        latest = tf.reduce_min(tf.where(is_known, ages_days, float("inf")))
        recency = tf.math.pow(2.0, -tf.maximum(ages_days - latest, 0.0) / self._half_life_days)
        weights = known * tf.math.log1p(counts) * recency
        total = tf.linalg.matvec(tf.gather(self.history_embeddings, rows), weights, transpose_a=True)
        history = total / tf.maximum(tf.reduce_sum(weights), 1e-6)
        return {"query": history + tf.gather(self.country_embeddings, self.country_table.lookup(country))}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="queries")])  # type: ignore[untyped-decorator]
    def recommend(self, queries: tf.Tensor) -> dict[str, tf.Tensor]:
        searcher = scann_ops.searcher_from_module(self.scann)
        indices, scores = _search(searcher, queries, self._params, self._k_search)
        return self._finalise(indices, scores)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="queries")])  # type: ignore[untyped-decorator]
    def recommend_exact(self, queries: tf.Tensor) -> dict[str, tf.Tensor]:
        products = self.product_embeddings[: self._num_products]
        top = tf.math.top_k(tf.matmul(queries, products, transpose_b=True), self._k_search)
        return self._finalise(top.indices, top.values)

    @tf.function(input_signature=[tf.TensorSpec([None, len(FEATURES)], tf.float32, name="features")])  # type: ignore[untyped-decorator]
    def rank_all(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": self.heads["all"](features)}

    @tf.function(input_signature=[tf.TensorSpec([None, len(FEATURES)], tf.float32, name="features")])  # type: ignore[untyped-decorator]
    def rank_new(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": self.heads["new"](features)}

    @tf.function(  # type: ignore[untyped-decorator]
        input_signature=[
            tf.TensorSpec([None], tf.float32, name="query"),
            tf.TensorSpec([None], tf.string, name="product_ids"),
        ]
    )
    def score(self, query: tf.Tensor, product_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        products = tf.gather(self.product_embeddings, self.product_table.lookup(product_ids))
        return {"scores": tf.linalg.matvec(products, query)}


def _ids(ids: Sequence[str], embeddings: Floats, what: str) -> Ids:
    array = np.asarray(ids, dtype=object)
    if array.ndim != 1 or len(array) != len(embeddings):
        raise ValueError(f"{len(array)} {what} ids for {len(embeddings)} {what} embeddings")
    if len(array) == 0:
        raise ValueError(f"no {what}s")
    if len(np.unique(array)) != len(array):
        raise ValueError(f"{what} ids are not unique")
    return array


def export_model(
    out_dir: Path,
    towers: Towers,
    ranking: Ranking,
    *,
    k_max: int = 200,
    index: IndexParams | None = None,
    half_life_days: float = 90.0,
) -> dict[str, Any]:
    """Write ``out_dir/saved_model`` and return the manifest fields it determines: k_max, embedding_dim,
    the index parameters actually served and the measured ScaNN recall@10 against brute force (on the sample
    queries: training customers' queries)."""
    products = np.ascontiguousarray(towers.product_embeddings, dtype=np.float32)
    queries = np.ascontiguousarray(towers.sample_queries, dtype=np.float32)
    if products.ndim != 2 or queries.ndim != 2 or queries.shape[1] != products.shape[1]:
        raise ValueError(f"embedding shapes differ: {queries.shape} vs {products.shape}")
    product_array = _ids(towers.products, products, "product")
    if np.any(product_array == PAD_PRODUCT_ID):
        raise ValueError("the empty product id is reserved for padding")
    if k_max < 1:
        raise ValueError("k_max must be positive")
    params = index or index_params_for(len(products), k_max)
    k_search = min(k_max, len(products))
    if params.kind == "tree_ah" and params.reorder_num_neighbors < k_search:
        raise ValueError("reorder_num_neighbors must be at least k_max, or ScaNN returns fewer rows")

    searcher = _build_searcher(products, params, k_search)
    sample = np.random.default_rng(0).permutation(len(queries))[:RECALL_SAMPLE]
    params, recall = _tune_leaves(searcher, queries[sample], products, params, k_search)

    module = RecommenderModule(towers, ranking, searcher, params, k_max, half_life_days)
    signatures = {
        "query": module.query.get_concrete_function(),
        "recommend": module.recommend.get_concrete_function(),
        "recommend_exact": module.recommend_exact.get_concrete_function(),
        "score": module.score.get_concrete_function(),
        "rank_all": module.rank_all.get_concrete_function(),
        "rank_new": module.rank_new.get_concrete_function(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(
        module,
        str(out_dir / SAVED_MODEL_DIR),
        signatures=signatures,
        options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]),
    )
    return {
        "k_max": k_max,
        "embedding_dim": int(products.shape[1]),
        "index": {"num_products": len(products), **asdict(params)},
        "scann_recall_at_10": round(recall, 4),
        "scann_recall_sample": len(sample),
        "ranking": ranking.info,
    }


def export_artifact(
    path: Path,
    towers: Towers,
    ranking: Ranking,
    *,
    manifest: dict[str, Any],
    catalogue: dict[str, str],
    popular: Sequence[tuple[str, float]],
    k_max: int,
    half_life_days: float,
) -> dict[str, Any]:
    """A complete artifact version in ``path``: the SavedModel (both stages), and the manifest (``manifest`` + what
    the export determined) with the catalogue and the popular list beside it. Returns the manifest written."""
    exported = export_model(path, towers, ranking, k_max=k_max, half_life_days=half_life_days)
    written = {**manifest, **exported}
    artifact.write_artifact(path, manifest=written, catalogue=catalogue, popular=popular)
    return written
