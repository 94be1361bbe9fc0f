"""The served model: the only serving module that imports TensorFlow and scann.

Loaded once per process (``load_recommender``); ids are checked against the artifact's vocabularies before they reach
the model, because inside it unknown ids map to an untrained out-of-vocabulary row.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from recsys.artifact import Artifact
from recsys.errors import ModelUnavailableError
from recsys.observability import logger


class Recommender:
    def __init__(self, artifact: Artifact) -> None:
        import scann  # noqa: F401 - registers the Scann ops the SavedModel needs
        import tensorflow as tf

        self._tf = tf
        self.artifact = artifact
        model = tf.saved_model.load(str(artifact.saved_model_path))
        self._model = model  # keeps the signatures' variables alive
        self._recommend = model.signatures["recommend"]
        self._score = model.signatures["score"]

    @property
    def version(self) -> str:
        return self.artifact.version

    def knows_customer(self, customer_id: str) -> bool:
        return customer_id in self.artifact.customers

    def unknown_products(self, product_ids: list[str]) -> list[str]:
        return [p for p in product_ids if p not in self.artifact.catalogue]

    def name(self, product_id: str) -> str | None:
        return self.artifact.catalogue.get(product_id)

    def purchased(self, customer_id: str) -> frozenset[str]:
        return self.artifact.purchases.get(customer_id, frozenset())

    def popular(self) -> list[tuple[str, float]]:
        return self.artifact.popular

    def recommend(self, customer_id: str) -> list[tuple[str, float]]:
        """Up to K_MAX (product_id, score) for a known customer, best first, without padding or duplicates."""
        out = self._recommend(customer_ids=self._tf.constant([customer_id]))
        ids = out["product_ids"].numpy()[0]
        scores = out["scores"].numpy()[0]
        seen: set[str] = set()
        ranked: list[tuple[str, float]] = []
        for raw_id, score in zip(ids, scores, strict=True):
            product_id = raw_id.decode()
            if product_id and score == score and score != float("-inf") and product_id not in seen:
                seen.add(product_id)
                ranked.append((product_id, float(score)))
        return ranked

    def score(self, customer_id: str, product_ids: list[str]) -> list[float]:
        """The model's scores of known products for a known customer (exact dot products)."""
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
