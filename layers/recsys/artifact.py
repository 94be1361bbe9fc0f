"""The on-disk model artifact: what training writes and serving reads, both here (``write_artifact``, ``Artifact``).
No TensorFlow here.

Layout of ``model_artifacts/<version>/``::

    saved_model/     SavedModel (TensorFlow + scann only), nothing per customer, with the signatures
                     query(product_ids: string[N], counts: float32[N], ages_days: float32[N], country: string[])
                         -> {query: float32[D]}: the query tower on one purchase history (times bought and days
                         since last bought per product); unknown products and countries add nothing
                     recommend(queries: float32[B, D]) -> {product_ids: string[B, K_MAX], scores: float32[B, K_MAX]}
                         ScaNN top-K_MAX; rows padded with product_id "" and score -inf when fewer results exist
                     recommend_exact(queries: float32[B, D]) -> same, by brute-force dot products
                     score(query: float32[D], product_ids: string[N]) -> {scores: float32[N]} (unknown ids: 0):
                         the retrieval stage's score
                     rank_all(features: float32[N, F]), rank_new(...) -> {logits: float32[N]}: the ranking heads
                         (recsys.scoring.FEATURES; "new" ranks never-bought products), served as sigmoid(logits)
                     and the objects serving uses directly (one request = numpy + one ScaNN op, no tf.function):
                     scann (the index: scann_ops.searcher_from_module); product_embeddings, history_embeddings
                     (float32[P + 1, D]) and country_embeddings (float32[C + 1, D]), each with a last all-zero OOV
                     row; product_vocabulary (string[P + 1], last the padding id "") and country_vocabulary
                     (string[C]): the ids of the rows, in order; recency_half_life_days (float32); the ranking stage's
                     product tables log_popularity, log_popularity_recent (float32[P]), ease_columns (int32[P, N]),
                     ease_values (float32[P, N]) and heads["all" | "new"] (mean, std, kernels, biases).
    manifest.json    version, created_at, data_sha256, parameters, vocabulary sizes, k_max, embedding_dim,
                     index parameters, scann_recall_at_10, ranking (how the ranking stage was made), metrics
    catalogue.json   {product_id: name} for every product in the model's vocabulary
    popular.json     [{product_id, score}] most popular first (for customers without a usable history)

``model_artifacts/CURRENT`` holds the name of the version that is served.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

SAVED_MODEL_DIR = "saved_model"
MANIFEST = "manifest.json"
CATALOGUE = "catalogue.json"
POPULAR = "popular.json"
CURRENT = "CURRENT"


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return json.load(f)


@dataclass(frozen=True)
class Artifact:
    """Lazy reader of one artifact version directory."""

    path: Path

    @property
    def saved_model_path(self) -> Path:
        return self.path / SAVED_MODEL_DIR

    @cached_property
    def manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = _read_json(self.path / MANIFEST)
        return manifest

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def k_max(self) -> int:
        return int(self.manifest["k_max"])

    @cached_property
    def catalogue(self) -> dict[str, str]:
        catalogue: dict[str, str] = _read_json(self.path / CATALOGUE)
        return catalogue

    @cached_property
    def popular(self) -> list[tuple[str, float]]:
        return [(row["product_id"], float(row["score"])) for row in _read_json(self.path / POPULAR)]


def staging_dir(artifacts_root: Path, version: str) -> Path:
    """An empty directory (left over ones are cleared) to export ``version`` into before it is published."""
    staging = artifacts_root / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def write_artifact(
    path: Path,
    *,
    manifest: dict[str, Any],
    catalogue: dict[str, str],
    popular: Sequence[tuple[str, float]],
) -> None:
    """Write the files of the layout above beside the SavedModel already exported to ``path/saved_model``; each
    argument is in the form the reader above returns (``popular`` most popular first)."""
    path.mkdir(parents=True, exist_ok=True)
    _write_json(path / MANIFEST, manifest)
    _write_json(path / CATALOGUE, catalogue)
    _write_json(path / POPULAR, [{"product_id": product, "score": score} for product, score in popular])


def publish(staging: Path, artifacts_root: Path, version: str, *, make_current: bool = True) -> Path:
    """Rename a written staging directory to ``artifacts_root/<version>`` (a reader never sees a half-written
    version) and, by default, mark it current; returns the version's directory."""
    final = artifacts_root / version
    staging.replace(final)
    if make_current:
        mark_current(artifacts_root, version)
    return final


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


def mark_current(artifacts_root: Path, version: str) -> None:
    """Make ``version`` the served one (atomic rename, so a reader never sees a half-written name)."""
    tmp = artifacts_root / f".{CURRENT}.tmp"
    tmp.write_text(version + "\n", encoding="utf-8")
    tmp.replace(artifacts_root / CURRENT)
