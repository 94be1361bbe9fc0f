"""Model figures: retrieval through the SavedModel signatures (ScaNN vs exact, recall), the Python wrapper,
scoring for the update path, and batch generation throughput."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from recsys.artifact import Artifact
from recsys.bench.timing import Figure, measure, ratio, summarize
from recsys.recommender import Recommender, import_tensorflow

RECALL_K = 10
SCORED_PRODUCTS = 100
BATCH_SIZE = 256
BATCH_K = 20


def load_saved_model(model_dir: Path) -> tuple[Any, float]:
    """The loaded SavedModel (what Recommender loads) and the seconds it took."""
    tf = import_tensorflow()
    start = time.perf_counter()
    loaded = tf.saved_model.load(str(Artifact(model_dir).saved_model_path))
    return loaded, time.perf_counter() - start


def _sample(ids: list[str], n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [ids[i] for i in rng.choice(len(ids), size=min(n, len(ids)), replace=False)]


def _top_ids(signature: Any, customer_ids: list[str], k: int) -> list[set[bytes]]:
    tf = import_tensorflow()

    rows = signature(customer_ids=tf.constant(customer_ids))["product_ids"].numpy()[:, :k]
    return [{p for p in row if p} for row in rows]


def recall_at_k(loaded: Any, customer_ids: list[str], k: int = RECALL_K) -> float:
    """Mean share of the exact top-k that ScaNN's top-k holds, through the two signatures."""
    approximate = _top_ids(loaded.signatures["recommend"], customer_ids, k)
    exact = _top_ids(loaded.signatures["recommend_exact"], customer_ids, k)
    return float(np.mean([len(a & e) / max(1, len(e)) for a, e in zip(approximate, exact, strict=True)]))


def retrieval(model_dir: Path, *, repeat: int, warmup: int, recall_customers: int) -> dict[str, Any]:
    """Single-customer latency of `recommend` (ScaNN) and `recommend_exact`, interleaved, plus recall@10."""
    tf = import_tensorflow()

    model = Artifact(model_dir)
    loaded, load_seconds = load_saved_model(model_dir)
    customers = sorted(model.customers)
    inputs = [tf.constant([c]) for c in _sample(customers, repeat, seed=1)]
    scann, exact = loaded.signatures["recommend"], loaded.signatures["recommend_exact"]
    figures = measure(
        {
            "scann": lambda i: scann(customer_ids=inputs[i % len(inputs)]),
            "exact": lambda i: exact(customer_ids=inputs[i % len(inputs)]),
        },
        repeat,
        warmup,
    )
    recall_sample = _sample(customers, recall_customers, seed=2)
    return {
        "products": len(model.catalogue),
        "customers": len(customers),
        "embedding_dim": model.manifest.get("embedding_dim"),
        "index": model.manifest.get("index"),
        "build_seconds": model.manifest.get("build_seconds"),
        "load_seconds": round(load_seconds, 2),
        **figures,
        "speedup": ratio(figures["exact"], figures["scann"]),
        "recall_at_10": recall_at_k(loaded, recall_sample),
        "recall_customers": len(recall_sample),
    }


def wrapper(model_dir: Path, *, repeat: int, warmup: int) -> dict[str, Figure]:
    """`Recommender.recommend` and the update path: `Recommender.score` and the raw `score` signature, 100 products."""
    tf = import_tensorflow()

    recommender = Recommender(Artifact(model_dir))
    loaded, _ = load_saved_model(model_dir)  # kept alive: its signatures need its variables
    score_signature = loaded.signatures["score"]
    customers = _sample(sorted(recommender.artifact.customers), repeat, seed=3)
    products = _sample(sorted(recommender.artifact.catalogue), SCORED_PRODUCTS, seed=4)
    products_tensor = tf.constant(products)
    customer_tensors = [tf.constant(c) for c in customers]
    return measure(
        {
            "recommend": lambda i: recommender.recommend(customers[i % len(customers)]),
            "score": lambda i: recommender.score(customers[i % len(customers)], products),
            "score_signature": lambda i: score_signature(
                customer_id=customer_tensors[i % len(customers)], product_ids=products_tensor
            ),
        },
        repeat,
        warmup,
    )


def batch_generation(model_dir: Path, *, repeat: int, single_customers: int) -> dict[str, Any]:
    """Top-20 for every customer through `recommend`: in batches of 256 vs one customer per call (customers/s)."""
    tf = import_tensorflow()

    loaded, _ = load_saved_model(model_dir)
    recommend = loaded.signatures["recommend"]
    customers = sorted(Artifact(model_dir).customers)
    single = customers[:single_customers]

    def run(ids: list[str], batch_size: int) -> float:
        start = time.perf_counter()
        for i in range(0, len(ids), batch_size):
            out = recommend(customer_ids=tf.constant(ids[i : i + batch_size]))
            out["product_ids"].numpy()[:, :BATCH_K], out["scores"].numpy()[:, :BATCH_K]
        return len(ids) / (time.perf_counter() - start)

    run(customers[:BATCH_SIZE], BATCH_SIZE)  # warm-up
    batched = [run(customers, BATCH_SIZE) for _ in range(repeat)]
    one_by_one = [run(single, 1) for _ in range(repeat)]
    return {
        "customers": len(customers),
        "batch_size": BATCH_SIZE,
        "k": BATCH_K,
        "batched": summarize(batched, "customers/s"),
        "single_customers": len(single),
        "single": summarize(one_by_one, "customers/s"),
    }
