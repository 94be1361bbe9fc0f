"""The served model: the only serving module that imports TensorFlow and scann.

Loaded once per process (``load_recommender``); ids are checked against the artifact's vocabularies before they reach
the model, because inside it unknown ids map to an untrained out-of-vocabulary row.
"""

from __future__ import annotations

import heapq
import math
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from recsys.artifact import Artifact
from recsys.errors import ModelUnavailableError
from recsys.observability import logger

KERAS_EAGER_IMPORT = "keras.src.optimizers"


def import_tensorflow() -> Any:
    """`import scann, tensorflow`, skipping TensorFlow's eager import of Keras' optimizers (a third of its import
    time; TensorFlow ignores an ImportError there, and the SavedModel is a plain tf.Module that needs no Keras)."""
    skip = "tensorflow" not in sys.modules and KERAS_EAGER_IMPORT not in sys.modules
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
    def __init__(self, artifact: Artifact) -> None:
        tf = import_tensorflow()
        self._tf = tf
        self.artifact = artifact
        model = tf.saved_model.load(str(artifact.saved_model_path))
        self._model = model  # keeps the signatures' variables alive
        self._recommend = model.signatures["recommend"]
        self._score = model.signatures["score"]
        self.buy_again_weight = float(artifact.manifest.get("parameters", {}).get("buy_again_weight", 0.0))

    @property
    def version(self) -> str:
        return self.artifact.version

    def knows_customer(self, customer_id: str) -> bool:
        return customer_id in self.artifact.customers

    def unknown_products(self, product_ids: list[str]) -> list[str]:
        return [p for p in product_ids if p not in self.artifact.catalogue]

    def name(self, product_id: str) -> str | None:
        return self.artifact.catalogue.get(product_id)

    def purchased(self, customer_id: str) -> Mapping[str, int]:
        """How many times the customer bought each product (training data)."""
        return self.artifact.purchases.get(customer_id, {})

    def popular(self) -> list[tuple[str, float]]:
        return self.artifact.popular

    def recommend(self, customer_id: str, *, exclude_purchased: bool = False) -> list[tuple[str, float]]:
        """Up to K_MAX (product_id, score) for a known customer, best first, without padding or duplicates.

        Scores are the served blend (see ``score``); with ``exclude_purchased`` only products the customer never
        bought are ranked, by the model alone (the blend adds nothing to them)."""
        out = self._recommend(customer_ids=self._tf.constant([customer_id]))
        ids = out["product_ids"].numpy()[0]
        scores = out["scores"].numpy()[0]
        bought = self.purchased(customer_id)
        ranked: dict[str, float] = {}
        for raw_id, score in zip(ids, scores, strict=True):
            product_id = raw_id.decode()
            if product_id and math.isfinite(score) and product_id not in ranked:
                ranked[product_id] = float(score)
        if exclude_purchased:
            fresh = [(p, s) for p, s in ranked.items() if p not in bought]
            return fresh if len(fresh) >= self.artifact.k_max // 2 else self._exact_top(customer_id, bought)
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

    def _exact_top(self, customer_id: str, bought: Mapping[str, int]) -> list[tuple[str, float]]:
        """Top K_MAX of every product the customer never bought, by exact scores: for customers who bought so much
        that ScaNN's K_MAX candidates are mostly past purchases."""
        candidates = [p for p in self.artifact.catalogue if p not in bought]
        scored = zip(candidates, self._model_scores(customer_id, candidates), strict=True)
        return heapq.nlargest(self.artifact.k_max, scored, key=lambda item: item[1])

    def _bonus(self, bought: Mapping[str, int], product_id: str) -> float:
        return self.buy_again_weight * math.log1p(bought.get(product_id, 0))

    def _model_scores(self, customer_id: str, product_ids: list[str]) -> list[float]:
        if not product_ids:
            return []
        out = self._score(customer_id=self._tf.constant(customer_id), product_ids=self._tf.constant(product_ids))
        scores: Any = out["scores"].numpy()
        return [float(s) for s in scores]


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
