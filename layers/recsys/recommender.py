"""The served model: the only serving module that imports TensorFlow and scann.

Loaded once per process (``load_recommender``). It holds nothing per customer: a customer's query is computed from
their purchase history at request time. Product ids are checked against the model's vocabulary first (unknown ones
are left out of a query and cannot be scored).
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from recsys.artifact import Artifact
from recsys.errors import ModelUnavailableError
from recsys.observability import logger
from recsys.scoring import (
    VIEWS,
    Bought,
    Head,
    Histories,
    HistoryArrays,
    ProductTables,
    batch_features,
    descending_order,
    exact_top,
    exact_top_many,
    features,
    query_embeddings,
    sigmoid,
    with_histories,
)

if TYPE_CHECKING:  # numpy is loaded with TensorFlow: show and delete import this module without either
    import numpy as np
    import numpy.typing as npt

    Floats = npt.NDArray[np.float32]
    Ints = npt.NDArray[np.int64]
    Ids = npt.NDArray[np.object_]

KERAS_EAGER_IMPORT = "keras.src.optimizers"
# Exact search finds the candidates up to this many products, ScaNN above: on the retail catalogue (3,659 products)
# numpy's exact top 200 took 0.042 ms against ScaNN's 0.038 ms (README, Served search vs faiss), and its candidates
# were worth +0.002-0.007 Recall@20 on new products at three split dates (README, The model); exact search grows
# with the catalogue (0.81-0.88 ms at 100k products, 12-18 ms at 1M), ScaNN hardly (0.044-0.048, 0.078 ms).
EXACT_SEARCH_MAX_PRODUCTS = 10_000
Retrieval = Literal["auto", "exact", "scann"]
SKIP_MEASURED_ON = "2.20."  # the TensorFlow release whose import the Keras skip was measured and tested on


def _tensorflow_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for distribution in ("tensorflow-cpu", "tensorflow"):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    return "unknown"


def import_tensorflow() -> Any:
    """`import scann, tensorflow`, skipping TensorFlow's eager import of Keras' optimizers (a third of its import
    time; TensorFlow ignores an ImportError there, and the SavedModel is a plain tf.Module that needs no Keras).
    The skip relies on a private module path, so it applies only on the TensorFlow release it was measured on."""
    skip = "tensorflow" not in sys.modules and KERAS_EAGER_IMPORT not in sys.modules
    if skip and not (tf_version := _tensorflow_version()).startswith(SKIP_MEASURED_ON):
        logger.info("TensorFlow %s: imported as is (the Keras skip is for %sx only)", tf_version, SKIP_MEASURED_ON)
        skip = False
    if skip:
        sys.modules[KERAS_EAGER_IMPORT] = None  # type: ignore[assignment]  # makes that import raise ImportError
    try:
        import scann  # noqa: F401 - registers the Scann ops the SavedModel needs
        import tensorflow as tf
    finally:
        if skip:
            del sys.modules[KERAS_EAGER_IMPORT]  # Keras stays importable for whoever wants it later
    return tf


@dataclass(frozen=True)
class Ranked:
    """Products best first, as arrays until the final k are chosen."""

    product_ids: Ids
    scores: Floats

    def top(self, k: int, exclude: Collection[str] = ()) -> list[tuple[str, float]]:
        """The best ``k`` (product_id, score), leaving out ``exclude``."""
        import numpy as np

        ids, scores = self.product_ids, self.scores
        if exclude:
            keep = ~np.isin(ids, np.fromiter(exclude, dtype=object, count=len(exclude)))
            ids, scores = ids[keep], scores[keep]
        return list(zip(ids[:k].tolist(), scores[:k].tolist(), strict=True))


class Recommender:
    """The served two-stage model. Retrieval: a customer's query from their live purchase history (the query tower's
    arithmetic on the SavedModel's tables) and the SavedModel's ScaNN index give candidates. Ranking: the candidates
    and the customer's past purchases are re-scored by a ranking head from features of the live history and product
    tables (``recsys.scoring``); the head "new" when past purchases are excluded, else "all".

    A request runs numpy and one ScaNN search through scann's own pybind searcher (built from the SavedModel's index
    once, at load, see ``native_searcher``); no TensorFlow op and no tf.function is called, because here dispatching
    them costs more than the search itself (README, Performance). The SavedModel's signatures compute the same
    (pinned by tests).

    ``recommend_many`` runs the same two stages for many customers at once (batch generation): the queries, the
    search (exact: matrix products of a few queries at a time; ScaNN: one search per customer, ``search_many``), the
    candidates' features and one pass of the ranking head for all of them.
    ``recommend`` is ``recommend_many`` of one customer, and no number depends on the customers computed with it, so a
    customer gets the same list either way."""

    def __init__(self, artifact: Artifact, *, retrieval: Retrieval = "auto") -> None:
        """``retrieval``: how candidates are found; "auto" is exact search up to EXACT_SEARCH_MAX_PRODUCTS products,
        ScaNN above (evaluation forces either to measure the gap)."""
        import numpy as np

        tf = import_tensorflow()

        self._tf = tf
        self.artifact = artifact
        model = tf.saved_model.load(str(artifact.saved_model_path))
        self._model = model  # keeps the searcher's and the signatures' variables alive
        self._searcher = native_searcher(model.scann)
        product_ids = _strings(model.product_vocabulary.numpy())[:-1]  # the last is the padding id
        countries = _strings(model.country_vocabulary.numpy())
        self._product_ids: Ids = np.asarray(product_ids, dtype=object)
        small = len(product_ids) <= EXACT_SEARCH_MAX_PRODUCTS
        self.exact_retrieval = retrieval == "exact" or (retrieval == "auto" and small)
        self._product_rows = {product_id: row for row, product_id in enumerate(product_ids)}
        self._country_rows = {country: row for row, country in enumerate(countries)}
        # [D, P]: a product's vector is a column (what exact search multiplies by, see exact_top_many)
        self._product_columns = np.ascontiguousarray(model.product_embeddings.numpy()[: len(product_ids)].T)
        self._history_vectors = np.ascontiguousarray(model.history_embeddings.numpy()[: len(product_ids)].T)  # [D, P]
        self._country_vectors: Floats = model.country_embeddings.numpy()[: len(countries)]
        dimensions = self._country_vectors.shape[1]  # the last row: zeros, the vector of an unknown country
        self._country_table: Floats = np.concatenate([self._country_vectors, np.zeros((1, dimensions), np.float32)])
        self._half_life_days = float(model.recency_half_life_days.numpy())
        index = artifact.manifest["index"]
        tree = index["kind"] == "tree_ah"
        self._leaves_to_search: int = index["leaves_to_search"] if tree else -1  # -1: as built
        self._reorder: int = index["reorder_num_neighbors"] if tree else -1
        self._tables = ProductTables(
            log_popularity=model.log_popularity.numpy(),
            log_popularity_recent=model.log_popularity_recent.numpy(),
            ease_columns=model.ease_columns.numpy(),
            ease_values=model.ease_values.numpy(),
        )
        self._heads = {view: _head(model.heads[view]) for view in VIEWS}
        popular = artifact.popular
        self._popular = Ranked(
            np.asarray([p for p, _ in popular], dtype=object), np.asarray([s for _, s in popular], np.float32)
        )

    @property
    def version(self) -> str:
        return self.artifact.version

    @property
    def _k_max(self) -> int:
        return min(self.artifact.k_max, len(self._product_ids))

    def product_id(self, row: int) -> str:
        """The id of a product row (as ``candidates`` returns them)."""
        product_id: str = self._product_ids[row]
        return product_id

    def unknown_products(self, product_ids: list[str]) -> list[str]:
        return [p for p in product_ids if p not in self._product_rows]

    def name(self, product_id: str) -> str | None:
        return self.artifact.catalogue.get(product_id)

    def popular(self) -> Ranked:
        return self._popular

    def history_arrays(self, history: Mapping[str, Bought], now: float) -> HistoryArrays | None:
        """The products of ``history`` the model knows, as arrays as of ``now`` (epoch seconds); None if none."""
        return HistoryArrays.of(history, self._product_rows, now)

    def query(self, history: HistoryArrays, country: str | None) -> Floats:
        """The customer's query embedding: what the SavedModel's ``query`` signature computes."""
        query: Floats = self.queries(Histories.of([history]), [country])[0]
        return query

    def queries(self, histories: Histories, countries: Sequence[str | None]) -> Floats:
        """[customers, D] the customers' query embeddings (``query`` of each)."""
        import numpy as np

        unknown = len(self._country_vectors)
        rows = np.fromiter((self._country_rows.get(c or "", unknown) for c in countries), np.int64, len(countries))
        return query_embeddings(histories, self._history_vectors, self._half_life_days, self._country_table[rows])

    def candidates(self, query: Floats, k: int | None = None) -> tuple[Ints, Floats]:
        """ScaNN's top ``k`` (default k_max) product rows by model score for ``query``, best first (approximate)."""
        import numpy as np

        k = self._k_max if k is None else min(k, len(self._product_ids))
        rows, scores = self._searcher.search(query, k, *self.search_settings(k))
        if len(scores) and not np.isfinite(scores[-1]):  # a row it cannot fill: index 0 and NaN (tests pin it)
            valid = np.isfinite(scores)
            rows, scores = rows[valid], scores[valid]
        return rows.astype(np.int64), scores

    def search_settings(self, k: int) -> tuple[int, int]:
        """(re-ordered neighbours, leaves to search) of a ScaNN search for the top ``k``: the exported ones, re-ordering
        at least ``k`` (ScaNN returns at most the re-ordered ones); -1 leaves them as built (brute-force index)."""
        reorder = max(k, self._reorder) if self._reorder > 0 else -1
        return reorder, self._leaves_to_search

    def exact_candidates(self, query: Floats, exclude_rows: Ints | None = None) -> tuple[Ints, Floats]:
        """The exact top k_max product rows by model score, best first, leaving out ``exclude_rows`` (brute force)."""
        return exact_top(self._product_columns, query, self._k_max, exclude_rows)

    def _candidates(self, history: HistoryArrays, country: str | None, *, exclude_purchased: bool) -> Ints:
        """One customer's ``_candidates_many``."""
        batch = Histories.of([history])
        rows, _ = self._candidates_many(batch, self.queries(batch, [country]), exclude_purchased=exclude_purchased)
        return rows

    def _candidates_many(self, histories: Histories, queries: Floats, *, exclude_purchased: bool) -> tuple[Ints, Ints]:
        """Retrieval for the ranking stage, customer by customer (rows in customer order, and how many each): the top
        k_max products the customer never bought (ScaNN's top k_max + the history's size, past purchases dropped; when
        fewer than k_max / 2 are left, the exact top k_max among never-bought products), then, unless
        ``exclude_purchased``, the history."""
        import numpy as np

        if self.exact_retrieval:  # the page's top k at once
            top, scores = exact_top_many(
                self._product_columns, queries, self._k_max, (histories.customer, histories.rows)
            )
            found = np.isfinite(scores)
            return with_histories(top[found], found.sum(axis=1), histories, exclude_purchased=exclude_purchased)
        bought = np.split(histories.rows, histories.starts[1:])
        fresh = self._never_bought(queries, histories)
        for i in [i for i, rows in enumerate(fresh) if len(rows) < self._k_max // 2]:
            fresh[i] = self.exact_candidates(queries[i], bought[i])[0]
        sizes = np.fromiter((len(rows) for rows in fresh), np.int64, len(fresh))
        return with_histories(np.concatenate(fresh), sizes, histories, exclude_purchased=exclude_purchased)

    def _never_bought(self, queries: Floats, histories: Histories) -> list[Ints]:
        """Per customer: ScaNN's top k_max + the history's size (``search_many``), past purchases dropped, at most
        k_max left."""
        import numpy as np

        found, scores = self.search_many(queries, self._k_max + histories.sizes)
        products = len(self._product_ids)
        bought_keys = histories.customer * products + histories.rows  # ascending
        keys = np.arange(len(found))[:, None] * products + found
        at = np.minimum(np.searchsorted(bought_keys, keys), len(bought_keys) - 1)
        keep = np.isfinite(scores) & (bought_keys[at] != keys)
        keep &= np.cumsum(keep, axis=1) <= self._k_max
        return np.split(found[keep], np.cumsum(keep.sum(axis=1))[:-1])

    def search_many(self, queries: Floats, ks: Ints) -> tuple[Ints, Floats]:
        """[customers, max k] ``candidates(query, k)`` of each query, padded with row 0 and NaN.

        One ScaNN search per query, as ``recommend`` searches: scann's batched search (``search_batched``) is not used
        because on the retail model it answers differently (at k 400 of 4,334 customers' queries: scores in the last
        bits for 1,670, the top 200 rows for 49, 197-199 of them shared) and even a query's own answer changes with
        the batch it comes in (135 of 4,334 alone vs all at once), and it is no faster (22,100 vs 22,800 queries/s on
        one thread)."""
        import numpy as np

        width = int(np.minimum(ks, len(self._product_ids)).max(initial=0))
        found: Ints = np.zeros((len(ks), width), np.int64)
        scores: Floats = np.full((len(ks), width), np.nan, np.float32)
        for i, (query, k) in enumerate(zip(queries, ks.tolist(), strict=True)):
            rows, values = self.candidates(query, k)
            found[i, : len(rows)], scores[i, : len(rows)] = rows, values
        return found, scores

    def _rank(self, rows: Ints, history: HistoryArrays, view: str) -> Floats:
        """The ranking head's scores (probabilities) of product ``rows``, all ranked together."""
        return sigmoid(self._heads[view].logits(features(rows, history, self._tables)))

    def recommend(
        self, history: Mapping[str, Bought], country: str | None, now: float, *, exclude_purchased: bool = False
    ) -> Ranked | None:
        """Up to k_max + the history's size products for a customer with a usable history, best first, without
        duplicates; None without. With ``exclude_purchased`` only products the customer never bought are ranked."""
        return self.recommend_many([(history, country)], now, exclude_purchased=exclude_purchased)[0]

    def recommend_many(
        self,
        histories: Sequence[tuple[Mapping[str, Bought], str | None]],
        now: float,
        *,
        exclude_purchased: bool = False,
    ) -> list[Ranked | None]:
        """``recommend`` for each (history, country), computed together: the queries, each customer's candidates (the
        same rule and search), the features of all candidates and one pass of the ranking head, then each customer's
        candidates sorted by score."""
        import numpy as np

        batch, usable = Histories.read([products for products, _ in histories], self._product_rows, now)
        ranked: list[Ranked | None] = [None] * len(histories)
        if batch is None:
            return ranked
        queries = self.queries(batch, [histories[i][1] for i in usable])
        rows, sizes = self._candidates_many(batch, queries, exclude_purchased=exclude_purchased)
        head = self._heads["new" if exclude_purchased else "all"]
        scores = sigmoid(head.logits(batch_features(rows, sizes, batch, self._tables)))
        order = descending_order(scores, sizes)  # by customer, best first, ties in candidate order
        ids, scores = self._product_ids[rows[order]], scores[order]
        ends = np.cumsum(sizes).tolist()
        for i, start, end in zip(usable, [0, *ends[:-1]], ends, strict=True):
            ranked[i] = Ranked(ids[start:end], scores[start:end])
        return ranked

    def score(
        self, history: Mapping[str, Bought], country: str | None, now: float, product_ids: list[str]
    ) -> list[float] | None:
        """Scores of known products for a customer with a usable history (None without), comparable with
        ``recommend``'s: the "all" head, with the products ranked among generate's candidates (the features
        normalise per candidate set)."""
        import numpy as np

        arrays = self.history_arrays(history, now)
        if arrays is None:
            return None
        asked = np.fromiter((self._product_rows[p] for p in product_ids), np.int64, len(product_ids))
        rows = self._candidates(arrays, country, exclude_purchased=False)
        rows = np.concatenate([rows, np.setdiff1d(asked, rows)])
        scores = self._rank(rows, arrays, "all")
        at = {int(row): i for i, row in enumerate(rows)}
        values: list[float] = scores[[at[int(row)] for row in asked]].tolist()
        return values

    def run_signature(self, name: str, **inputs: Any) -> dict[str, Any]:
        """Call the SavedModel's signature ``name`` (batch use and tests: ``query``, ``recommend``, ``recommend_exact``,
        ``score``, ``rank_all``, ``rank_new``, see recsys.artifact) and return its outputs as numpy arrays."""
        outputs = self._model.signatures[name](**{key: self._tf.constant(value) for key, value in inputs.items()})
        return {key: value.numpy() for key, value in outputs.items()}


def native_searcher(index: Any) -> Any:
    """ScaNN's own (pybind) searcher on the SavedModel's index: the same C++ search as the TensorFlow op, without
    TensorFlow's eager op dispatch around each call (a third of the op's time, more than the search at 1M products).
    scann loads a searcher only from files, so the index's variables are written to a temporary directory in its
    serialization format (what ``ScannSearcher.serialize`` writes), loaded (read into memory) and the directory removed.
    The index stays in the SavedModel too: its signatures use it."""
    import tempfile

    import numpy as np
    from scann.scann_ops.py import scann_ops_pybind, scann_ops_pybind_backcompat

    with tempfile.TemporaryDirectory(prefix="recsys-scann-") as directory:
        for name in ("scann_config", "serialized_partitioner", "ah_codebook"):  # serialized protos
            value = getattr(index, name).numpy()  # bytes, or an array of one bytes (empty: not in this index)
            data = value if isinstance(value, bytes) else b"".join(value.reshape(-1)[:1].tolist())
            if data:
                Path(directory, f"{name}.pb").write_bytes(data)
        for name in ("datapoint_to_token", "hashed_dataset", "int8_dataset", "int8_multipliers", "dp_norms", "dataset"):
            value = getattr(index, name).numpy()
            if value.ndim:  # a scalar: not part of this index
                np.save(Path(directory, f"{name}.npy"), value)
        scann_ops_pybind_backcompat.populate_and_save_assets_proto(directory)  # lists the files written
        return scann_ops_pybind.load_searcher(directory).searcher


def _head(module: Any) -> Head:
    """A ranking head's weights from the SavedModel (export.HeadModule), for numpy."""
    return Head(
        mean=module.mean.numpy(),
        std=module.std.numpy(),
        kernels=tuple(kernel.numpy() for kernel in module.kernels),
        biases=tuple(bias.numpy() for bias in module.biases),
    )


def _strings(values: Any) -> list[str]:
    return [value.decode() for value in values.tolist()]


@lru_cache(maxsize=2)
def load_recommender(model_dir: Path) -> Recommender:
    """Load (once per process and directory) the model; a clear error when it is missing or corrupt."""
    try:
        artifact = Artifact(model_dir)
        # read every file now (before TensorFlow starts), not mid-request or outside this error handling
        _ = artifact.version, artifact.catalogue, artifact.popular
        recommender = Recommender(artifact)
    except Exception as error:
        logger.exception("Cannot load the model from %s (set MODEL_DIR or model_artifacts/CURRENT)", model_dir)
        raise ModelUnavailableError(f"The recommendation model is not available: {type(error).__name__}") from error
    logger.info("Loaded model %s from %s", recommender.version, model_dir)
    return recommender
