"""General-purpose ANN libraries next to the served search: faiss HNSW and IVFFlat on the same product vectors,
searched with the same queries, one query per call and one thread, top k_max by inner product; each tuned to the
smallest setting reaching recall@10 >= PEER_RECALL against exact search on the recall sample.

faiss is a benchmark-only dependency (the `bench` dependency group), never in the Lambda image."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from recsys.recommender import Floats

PEER_RECALL = 0.99  # the recall the peers are tuned to, and the bar for "best peer"
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40  # faiss' default
HNSW_EF_SEARCH = (16, 32, 64, 128, 256, 512)  # faiss searches max(efSearch, k): below k_max they are all k_max
IVF_NPROBE = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass
class Peer:
    """A built faiss index with its tuned setting: ``search(query)`` is one timed call."""

    name: str
    description: str
    search: Callable[[Floats], object]
    setting: dict[str, int]
    recall_at_10: float
    build_seconds: float


def _recall(found: Sequence[Sequence[int]], exact: Sequence[set[int]]) -> float:
    return float(np.mean([len(set(f[:10]) & e) / max(1, len(e)) for f, e in zip(found, exact, strict=True)]))


def _tune(
    set_value: Callable[[int], None], values: Sequence[int], index: Any, queries: Floats, exact: list[set[int]], k: int
) -> tuple[int, float]:
    """The smallest value reaching PEER_RECALL (else the largest tried) and its recall@10."""
    recall = 0.0
    for value in values:
        set_value(value)
        _, found = index.search(queries, k)
        recall = _recall(found.tolist(), exact)
        if recall >= PEER_RECALL:
            return value, recall
    return values[-1], recall


def build_peers(vectors: Floats, recall_queries: Floats, exact_top10: list[set[int]], k: int) -> list[Peer]:
    """faiss HNSW (M=32) and IVFFlat (~sqrt(N) lists) on ``vectors``: built with every core, tuned on
    ``recall_queries`` against ``exact_top10``, then set to search with one thread."""
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)  # building is not timed against the served path
    dim = vectors.shape[1]
    k = min(k, len(vectors))
    peers = []

    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    hnsw.add(vectors)
    hnsw_seconds = time.perf_counter() - start

    def set_ef(value: int) -> None:
        hnsw.hnsw.efSearch = value

    faiss.omp_set_num_threads(1)
    ef, recall = _tune(set_ef, HNSW_EF_SEARCH, hnsw, recall_queries, exact_top10, k)
    set_ef(ef)
    peers.append(
        Peer(
            "faiss_hnsw",
            f"faiss HNSW (M={HNSW_M}, efSearch={ef})",
            lambda q: hnsw.search(q[None], k),
            {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": ef},
            recall,
            round(hnsw_seconds, 1),
        )
    )

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    lists = max(1, round(math.sqrt(len(vectors))))
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
    ivf.train(vectors)
    ivf.add(vectors)
    ivf_seconds = time.perf_counter() - start

    def set_nprobe(value: int) -> None:
        ivf.nprobe = value

    faiss.omp_set_num_threads(1)
    nprobe, recall = _tune(set_nprobe, [n for n in IVF_NPROBE if n <= lists], ivf, recall_queries, exact_top10, k)
    set_nprobe(nprobe)
    peers.append(
        Peer(
            "faiss_ivf",
            f"faiss IVFFlat ({lists} lists, nprobe {nprobe})",
            lambda q: ivf.search(q[None], k),
            {"lists": lists, "nprobe": nprobe},
            recall,
            round(ivf_seconds, 1),
        )
    )
    return peers


def best_peer(peers: dict[str, dict[str, Any]]) -> str | None:
    """The fastest peer (by median) whose recall@10 reaches PEER_RECALL; None when none does."""
    good = {name: p for name, p in peers.items() if p["recall_at_10"] >= PEER_RECALL}
    return min(good, key=lambda name: good[name]["search"]["median"], default=None)
