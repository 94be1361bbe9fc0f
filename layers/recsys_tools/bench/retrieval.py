"""Model figures: retrieval as served (one eager ScaNN op on the SavedModel's index) and through the SavedModel's
signatures, each against exact search in the same run, with recall; the Python wrapper, scoring for the update path
and batch generation throughput."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from recsys.artifact import Artifact
from recsys.recommender import Recommender, import_tensorflow
from recsys_tools.bench.timing import Figure, measure, ratio, summarize

RECALL_K = 10
SCORED_PRODUCTS = 100
BATCH_SIZE = 256
BATCH_K = 20


def timed_load(model_dir: Path) -> tuple[Recommender, float]:
    """The served model (SavedModel, searcher, vocabularies) and the seconds loading it took."""
    start = time.perf_counter()
    recommender = Recommender(Artifact(model_dir))
    return recommender, time.perf_counter() - start


def _sample(ids: list[str], n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [ids[i] for i in rng.choice(len(ids), size=min(n, len(ids)), replace=False)]


def recall_at_k(recommender: Recommender, customer_ids: list[str], k: int = RECALL_K) -> float:
    """Mean share of the exact top-k (brute force) that the served ScaNN search's top-k holds."""
    shares = []
    for customer in customer_ids:
        approximate = {p for p, _ in recommender.candidates(customer)[:k]}
        exact = {p for p, _ in recommender.exact_candidates(customer)[:k]}
        shares.append(len(approximate & exact) / max(1, len(exact)))
    return float(np.mean(shares))


def retrieval(model_dir: Path, *, repeat: int, warmup: int, recall_customers: int) -> dict[str, Any]:
    """Single-customer top-k_max, interleaved: the served ScaNN search and exact brute force over the same embeddings
    (numpy), and the SavedModel's `recommend` / `recommend_exact` signatures; plus the served search's recall@10."""
    tf = import_tensorflow()

    recommender, load_seconds = timed_load(model_dir)
    model = recommender.artifact
    customers = sorted(model.customers)
    sample = _sample(customers, repeat, seed=1)
    tensors = [tf.constant([c]) for c in sample]
    signatures = recommender.saved_model.signatures
    scann, exact = signatures["recommend"], signatures["recommend_exact"]
    figures = measure(
        {
            "scann": lambda i: recommender.candidates(sample[i % len(sample)]),
            "exact": lambda i: recommender.exact_candidates(sample[i % len(sample)]),
            "scann_signature": lambda i: scann(customer_ids=tensors[i % len(tensors)]),
            "exact_signature": lambda i: exact(customer_ids=tensors[i % len(tensors)]),
        },
        repeat,
        warmup,
    )
    recall_sample = _sample(customers, recall_customers, seed=2)
    return {
        "products": len(model.catalogue),
        "customers": len(customers),
        "k": min(model.k_max, len(model.catalogue)),
        "embedding_dim": model.manifest.get("embedding_dim"),
        "index": model.manifest.get("index"),
        "build_seconds": model.manifest.get("build_seconds"),
        "load_seconds": round(load_seconds, 2),
        **figures,
        "speedup": ratio(figures["exact"], figures["scann"]),
        "signature_speedup": ratio(figures["exact_signature"], figures["scann_signature"]),
        "recall_at_10": recall_at_k(recommender, recall_sample),
        "recall_customers": len(recall_sample),
    }


def wrapper(model_dir: Path, *, repeat: int, warmup: int) -> dict[str, Figure]:
    """`Recommender.recommend` (search, blend, sort) and the update path: `Recommender.score` and the SavedModel's
    `score` signature, 100 products."""
    tf = import_tensorflow()

    recommender, _ = timed_load(model_dir)
    score_signature = recommender.saved_model.signatures["score"]
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
    """Top-20 for every customer: through the `recommend` signature in batches of 256, and one customer per call as
    served (`Recommender.candidates`); customers per second."""
    tf = import_tensorflow()

    recommender, _ = timed_load(model_dir)
    recommend = recommender.saved_model.signatures["recommend"]
    customers = sorted(recommender.artifact.customers)
    single = customers[:single_customers]

    def batched(ids: list[str]) -> float:
        start = time.perf_counter()
        for i in range(0, len(ids), BATCH_SIZE):
            out = recommend(customer_ids=tf.constant(ids[i : i + BATCH_SIZE]))
            out["product_ids"].numpy()[:, :BATCH_K], out["scores"].numpy()[:, :BATCH_K]
        return len(ids) / (time.perf_counter() - start)

    def one_by_one(ids: list[str]) -> float:
        start = time.perf_counter()
        for customer in ids:
            recommender.candidates(customer)[:BATCH_K]
        return len(ids) / (time.perf_counter() - start)

    batched(customers[:BATCH_SIZE]), one_by_one(single[:10])  # warm-up
    return {
        "customers": len(customers),
        "batch_size": BATCH_SIZE,
        "k": BATCH_K,
        "batched": summarize([batched(customers) for _ in range(repeat)], "customers/s"),
        "single_customers": len(single),
        "single": summarize([one_by_one(single) for _ in range(repeat)], "customers/s"),
    }
