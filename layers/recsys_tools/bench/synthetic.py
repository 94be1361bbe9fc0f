"""Synthetic catalogues exported exactly like a trained model (same `export_model`, same `artifact.write_artifact`).

Embeddings are a clustered Gaussian mixture, so nearest neighbours are meaningful and ANN recall is informative
(an isotropic Gaussian has no neighbourhood structure at all): ``CLUSTERS`` centres drawn from N(0, I_d); every
product and customer is a random centre plus N(0, SPREAD^2 I_d) noise. Customers thus prefer one cluster's products
and rank them by the noise terms, the way a trained two-tower model ranks products within a taste.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recsys import artifact

CLUSTERS = 256
SPREAD = 0.5
POPULAR = 100
PURCHASES_PER_CUSTOMER = 5


def clustered_embeddings(rng: np.random.Generator, centres: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.float32]:
    chosen = centres[rng.integers(len(centres), size=n)]
    noise = rng.standard_normal(size=chosen.shape, dtype=np.float32)
    return np.asarray(chosen + SPREAD * noise, dtype=np.float32)


def build_artifact(out_dir: Path, products: int, customers: int, dim: int, *, seed: int = 0) -> dict[str, Any]:
    """Write a complete artifact to ``out_dir``; returns its manifest (with ``build_seconds``: the export time)."""
    from recsys_tools.training.export import export_model  # imports TensorFlow

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal(size=(CLUSTERS, dim), dtype=np.float32)
    product_ids = [f"P{i:07d}" for i in range(products)]
    customer_ids = [f"C{i:07d}" for i in range(customers)]
    customer_vectors = clustered_embeddings(rng, centres, customers)
    product_vectors = clustered_embeddings(rng, centres, products)

    start = time.perf_counter()
    info = export_model(out_dir, customer_ids, customer_vectors, product_ids, product_vectors)
    manifest = {
        "version": f"synthetic-{products}",
        "created_at": datetime.now(UTC).isoformat(),
        "data_sha256": None,
        "parameters": {"synthetic": {"clusters": CLUSTERS, "spread": SPREAD, "seed": seed}},
        "vocabulary": {"customers": customers, "products": products},
        **info,
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    bought = rng.integers(products, size=(customers, PURCHASES_PER_CUSTOMER))
    artifact.write_artifact(
        out_dir,
        manifest=manifest,
        customers=customer_ids,
        catalogue={p: f"Synthetic product {p}" for p in product_ids},
        popular=[(p, 1.0 / (rank + 1)) for rank, p in enumerate(product_ids[:POPULAR])],
        purchases={c: {product_ids[i]: 1 for i in row} for c, row in zip(customer_ids, bought, strict=True)},
    )
    return manifest
