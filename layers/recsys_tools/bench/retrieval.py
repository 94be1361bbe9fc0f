"""Model figures: retrieval as served (one eager ScaNN op on the SavedModel's index) and through the SavedModel's
signatures, each against exact search in the same run, with recall; the Python wrapper, scoring for the update path
and batch generation throughput."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from recsys.artifact import Artifact
from recsys.recommender import Recommender
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
    recommender, load_seconds = timed_load(model_dir)
    model = recommender.artifact
    customers = sorted(model.customers)
    sample = _sample(customers, repeat, seed=1)
    batches = [[c] for c in sample]
    run = recommender.run_signature
    figures = measure(
        {
            "scann": lambda i: recommender.candidates(sample[i % len(sample)]),
            "exact": lambda i: recommender.exact_candidates(sample[i % len(sample)]),
            "scann_signature": lambda i: run("recommend", customer_ids=batches[i % len(batches)]),
            "exact_signature": lambda i: run("recommend_exact", customer_ids=batches[i % len(batches)]),
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
    recommender, _ = timed_load(model_dir)
    customers = _sample(sorted(recommender.artifact.customers), repeat, seed=3)
    products = _sample(sorted(recommender.artifact.catalogue), SCORED_PRODUCTS, seed=4)
    return measure(
        {
            "recommend": lambda i: recommender.recommend(customers[i % len(customers)]),
            "score": lambda i: recommender.score(customers[i % len(customers)], products),
            "score_signature": lambda i: recommender.run_signature(
                "score", customer_id=customers[i % len(customers)], product_ids=products
            ),
        },
        repeat,
        warmup,
    )


def batch_generation(model_dir: Path, *, repeat: int, single_customers: int) -> dict[str, Any]:
    """Top-20 for every customer: through the `recommend` signature in batches of 256, and one customer per call as
    served (`Recommender.candidates`); customers per second."""
    recommender, _ = timed_load(model_dir)
    customers = sorted(recommender.artifact.customers)
    single = customers[:single_customers]

    def batched(ids: list[str]) -> float:
        start = time.perf_counter()
        for i in range(0, len(ids), BATCH_SIZE):
            out = recommender.run_signature("recommend", customer_ids=ids[i : i + BATCH_SIZE])
            out["product_ids"][:, :BATCH_K], out["scores"][:, :BATCH_K]
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
