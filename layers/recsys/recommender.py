"""The served model: the only serving module that imports TensorFlow and scann.

Loaded once per process (``load_recommender``); ids are checked against the artifact's vocabularies before they reach
the model, because inside it unknown ids map to an untrained out-of-vocabulary row.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Collection, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.artifact import Artifact
from recsys.errors import ModelUnavailableError
from recsys.observability import logger

if TYPE_CHECKING:  # numpy is loaded with TensorFlow: show and delete import this module without either
    import numpy as np
    import numpy.typing as npt

    Floats = npt.NDArray[np.float32]

KERAS_EAGER_IMPORT = "keras.src.optimizers"
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


class Recommender:
    """The served model: retrieval by the SavedModel's ScaNN index, scoring by the dot products of its embeddings.

    A request runs one eager ScaNN op (the searcher is rebuilt from the SavedModel's index once, at load) and numpy
    on the embedding tables; no tf.function is called, because here calling one costs more than the search itself
    (README, Performance). The SavedModel's signatures compute the same and serve batch use."""

    def __init__(self, artifact: Artifact) -> None:
        tf = import_tensorflow()
        from scann.scann_ops.py import scann_ops

        self._tf = tf
        self.artifact = artifact
        model = tf.saved_model.load(str(artifact.saved_model_path))
        self._model = model  # keeps the searcher's and the signatures' variables alive
        self._searcher = scann_ops.searcher_from_module(model.scann)
        customers = _strings(model.customer_vocabulary.numpy())
        self._product_ids = _strings(model.product_vocabulary.numpy())[:-1]  # the last is the padding id
        self._customer_rows = {customer_id: row for row, customer_id in enumerate(customers)}
        self._product_rows = {product_id: row for row, product_id in enumerate(self._product_ids)}
        self._customer_vectors: Floats = model.customer_embeddings.numpy()[: len(customers)]
        self._product_vectors: Floats = model.product_embeddings.numpy()[: len(self._product_ids)]
        index = artifact.manifest["index"]
        self._leaves_to_search: int | None = index["leaves_to_search"] if index["kind"] == "tree_ah" else None
        self.buy_again_weight = float(artifact.manifest.get("parameters", {}).get("buy_again_weight", 0.0))

    @property
    def version(self) -> str:
        return self.artifact.version

    def run_signature(self, name: str, **inputs: Any) -> dict[str, Any]:
        """Call the SavedModel's signature ``name`` (batch use: ``recommend``, ``recommend_exact``, ``score``, see
        recsys.artifact) and return its outputs as numpy arrays."""
        outputs = self._model.signatures[name](**{key: self._tf.constant(value) for key, value in inputs.items()})
        return {key: value.numpy() for key, value in outputs.items()}

    @property
    def _k_max(self) -> int:
        return min(self.artifact.k_max, len(self._product_ids))

    def knows_customer(self, customer_id: str) -> bool:
        return customer_id in self._customer_rows

    def unknown_products(self, product_ids: list[str]) -> list[str]:
        return [p for p in product_ids if p not in self._product_rows]

    def name(self, product_id: str) -> str | None:
        return self.artifact.catalogue.get(product_id)

    def purchased(self, customer_id: str) -> Mapping[str, int]:
        """How many times the customer bought each product (training data)."""
        return self.artifact.purchases.get(customer_id, {})

    def popular(self) -> list[tuple[str, float]]:
        return self.artifact.popular

    def candidates(self, customer_id: str) -> list[tuple[str, float]]:
        """ScaNN's top k_max products for a known customer by model score, best first (approximate)."""
        # tf.constant: half the cost of letting the op convert the numpy row (~0.02 vs ~0.04 ms here)
        query = self._tf.constant(self._query(customer_id)[None])
        indices, scores = self._searcher.search_batched(
            query, final_num_neighbors=self._k_max, leaves_to_search=self._leaves_to_search
        )
        # ScaNN pads rows it cannot fill with index 0 and a NaN score (pinned by tests/unit/test_export.py)
        hits = zip(indices.numpy()[0].tolist(), scores.numpy()[0].tolist(), strict=True)
        return [(self._product_ids[row], score) for row, score in hits if math.isfinite(score)]

    def exact_candidates(self, customer_id: str, exclude: Collection[str] = ()) -> list[tuple[str, float]]:
        """The exact top k_max products by model score, best first, leaving out ``exclude`` (brute force)."""
        import numpy as np

        scores = self._product_vectors @ self._query(customer_id)
        excluded = [self._product_rows[p] for p in exclude if p in self._product_rows]
        scores[excluded] = -np.inf
        k = min(self._k_max, len(scores) - len(excluded))
        top = np.argpartition(scores, -k)[-k:] if 0 < k < len(scores) else np.arange(k)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self._product_ids[row], score) for row, score in zip(top.tolist(), scores[top].tolist(), strict=True)]

    def recommend(self, customer_id: str, *, exclude_purchased: bool = False) -> list[tuple[str, float]]:
        """Up to k_max (product_id, score) for a known customer, best first, without duplicates.

        Scores are the served blend (see ``score``); with ``exclude_purchased`` only products the customer never
        bought are ranked, by the model alone (the blend adds nothing to them)."""
        ranked = dict(self.candidates(customer_id))
        bought = self.purchased(customer_id)
        if exclude_purchased:
            fresh = [(p, s) for p, s in ranked.items() if p not in bought]
            return fresh if len(fresh) >= self.artifact.k_max // 2 else self.exact_candidates(customer_id, bought)
        if self.buy_again_weight and bought:  # rank every past purchase too, not only those ScaNN returned
            past = [p for p in bought if p not in ranked]
            ranked |= dict(zip(past, self._model_scores(customer_id, past), strict=True))
            ranked = {p: s + self._bonus(bought, p) for p, s in ranked.items()}
        return sorted(ranked.items(), key=lambda item: item[1], reverse=True)

    def score(self, customer_id: str, product_ids: list[str]) -> list[float]:
        """Served scores of known products for a known customer: the model's dot product plus
        ``buy_again_weight * log(1 + times the customer bought the product)`` (the manifest's blend)."""
        bought = self.purchased(customer_id)
        scores = self._model_scores(customer_id, product_ids)
        return [s + self._bonus(bought, p) for p, s in zip(product_ids, scores, strict=True)]

    def _bonus(self, bought: Mapping[str, int], product_id: str) -> float:
        return self.buy_again_weight * math.log1p(bought.get(product_id, 0))

    def _model_scores(self, customer_id: str, product_ids: list[str]) -> list[float]:
        """The model's dot products (what the SavedModel's ``score`` signature computes)."""
        if not product_ids:
            return []
        rows = [self._product_rows[p] for p in product_ids]
        scores: list[float] = (self._product_vectors[rows] @ self._query(customer_id)).tolist()
        return scores

    def _query(self, customer_id: str) -> Floats:
        """The customer's query embedding (a view into the table)."""
        query: Floats = self._customer_vectors[self._customer_rows[customer_id]]
        return query


def _strings(values: Any) -> list[str]:
    return [value.decode() for value in values.tolist()]


@lru_cache(maxsize=2)
def load_recommender(model_dir: Path) -> Recommender:
    """Load (once per process and directory) the model; a clear error when it is missing or corrupt."""
    try:
        artifact = Artifact(model_dir)
        # read every file now (before TensorFlow starts), not mid-request or outside this error handling
        _ = artifact.version, artifact.customers, artifact.catalogue, artifact.popular, artifact.purchases
        recommender = Recommender(artifact)
    except Exception as error:
        logger.exception("Cannot load the model from %s (set MODEL_DIR or model_artifacts/CURRENT)", model_dir)
        raise ModelUnavailableError(f"The recommendation model is not available: {type(error).__name__}") from error
    logger.info("Loaded model %s from %s", recommender.version, model_dir)
    return recommender
