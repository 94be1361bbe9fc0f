"""Synthetic catalogues exported exactly like a trained model (same `export_model`, same `artifact.write_artifact`).

Embeddings are a clustered Gaussian mixture, so nearest neighbours are meaningful and ANN recall is informative
(an isotropic Gaussian has no neighbourhood structure at all): ``CLUSTERS`` centres drawn from N(0, I_d); every
product is a random centre plus N(0, SPREAD^2 I_d) noise. Each customer bought a few products of one cluster, and the
history table is the product table, so a customer's query lands among the products of their taste and ranks them,
the way a trained two-tower model ranks products within a taste.
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from recsys import artifact
from recsys.domain import Purchase, PurchaseHistory
from recsys.scoring import FEATURES, VIEWS, Head, ProductTables
from recsys_tools.bench.retrieval import Workload

if TYPE_CHECKING:
    from recsys_tools.training.export import Ranking
from recsys_tools.training.params import K_MAX

CLUSTERS = 256
SPREAD = 0.5
POPULAR = 100
PURCHASES_PER_CUSTOMER = 5


def clustered_embeddings(rng: np.random.Generator, centres: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.float32]:
    chosen = centres[rng.integers(len(centres), size=n)]
    noise = rng.standard_normal(size=chosen.shape, dtype=np.float32)
    return np.asarray(chosen + SPREAD * noise, dtype=np.float32)


def build_artifact(out_dir: Path, products: int, customers: int, dim: int, *, seed: int = 0) -> Workload:
    """Write a complete artifact to ``out_dir`` (its manifest has ``build_seconds``: the export time); returns the
    customers' histories (each bought PURCHASES_PER_CUSTOMER products of one cluster) to query it with."""
    from recsys_tools.training.export import Towers, export_artifact  # imports TensorFlow

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal(size=(CLUSTERS, dim), dtype=np.float32)
    cluster = rng.integers(CLUSTERS, size=products)
    product_ids = [f"P{i:07d}" for i in range(products)]
    product_vectors = np.asarray(centres[cluster] + SPREAD * rng.standard_normal((products, dim), np.float32))
    members = [np.flatnonzero(cluster == c) for c in range(CLUSTERS)]
    now = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    histories = []
    for c in range(customers):
        taste = members[int(rng.integers(CLUSTERS))]
        bought = rng.choice(taste, size=min(PURCHASES_PER_CUSTOMER, len(taste)), replace=False)
        events = [Purchase(product_ids[i], 1, now - int(rng.integers(0, 90 * 86_400))) for i in bought]
        histories.append(PurchaseHistory(f"C{c:07d}").add(events, PURCHASES_PER_CUSTOMER))
    # the history table is the product table: a customer's query lands among the products of their taste
    towers = Towers(
        products=product_ids,
        product_embeddings=product_vectors,
        history_embeddings=product_vectors,
        countries=["Synthetia"],
        country_embeddings=np.zeros((1, dim), np.float32),
        sample_queries=clustered_embeddings(rng, centres, customers),
    )
    start = time.perf_counter()
    manifest = {
        "version": f"synthetic-{products}",
        "created_at": datetime.now(UTC).isoformat(),
        "data_sha256": None,
        "parameters": {"synthetic": {"clusters": CLUSTERS, "spread": SPREAD, "seed": seed}},
        "vocabulary_sizes": {"products": products},
    }
    export_artifact(
        out_dir,
        towers,
        synthetic_ranking(products, rng),
        manifest=manifest,
        catalogue={p: f"Synthetic product {p}" for p in product_ids},
        popular=[(p, 1.0 / (rank + 1)) for rank, p in enumerate(product_ids[:POPULAR])],
        k_max=K_MAX,
        half_life_days=90.0,
    )
    written = json.loads((out_dir / artifact.MANIFEST).read_text(encoding="utf-8"))
    written["build_seconds"] = round(time.perf_counter() - start, 1)
    (out_dir / artifact.MANIFEST).write_text(json.dumps(written), encoding="utf-8")
    return Workload(histories, float(now))


def synthetic_ranking(products: int, rng: np.random.Generator, neighbours: int = 4, width: int = 8) -> Ranking:
    """A ranking stage of the right shapes with random weights (for benchmarks and export tests: the time a request
    spends ranking does not depend on the weights' values)."""
    features = len(FEATURES)
    widths = (features, width, width // 2, 1)
    head = Head(
        mean=np.zeros(features, np.float32),
        std=np.ones(features, np.float32),
        kernels=tuple(rng.normal(0, 0.3, (a, b)).astype(np.float32) for a, b in itertools.pairwise(widths)),
        biases=tuple(np.zeros(b, np.float32) for b in widths[1:]),
    )
    tables = ProductTables(
        log_popularity=rng.uniform(0, 5, products).astype(np.float32),
        log_popularity_recent=rng.uniform(0, 3, products).astype(np.float32),
        ease_columns=rng.integers(0, products, (products, neighbours)).astype(np.int32),
        ease_values=rng.uniform(0, 0.1, (products, neighbours)).astype(np.float32),
    )
    from recsys_tools.training.export import Ranking  # imports TensorFlow

    return Ranking(tables, dict.fromkeys(VIEWS, head), {"synthetic": True})
