"""Model figures: retrieval as served (one ScaNN search on the SavedModel's index) and through the SavedModel's
signatures, each against exact search in the same run, with recall; the Python wrapper, scoring for the update path
and batch generation throughput."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.artifact import Artifact
from recsys.batch import PAGE_CUSTOMERS
from recsys.domain import PurchaseHistory
from recsys.recommender import Recommender
from recsys.scoring import Bought
from recsys.settings import Settings
from recsys_tools.bench.timing import Figure, measure, ratio, summarize
from recsys_tools.training.params import DEFAULT_DATA

if TYPE_CHECKING:
    from recsys.recommender import Floats

RECALL_K = 10
SCORED_PRODUCTS = 100
BATCH_SIZE = PAGE_CUSTOMERS  # as `recsys batch` pages its customers
BATCH_K = 20
GENERATE_K = 20


def timed_load(model_dir: Path) -> tuple[Recommender, float]:
    """The served model (SavedModel, searcher, vocabularies) and the seconds loading it took."""
    start = time.perf_counter()
    recommender = Recommender(Artifact(model_dir))
    return recommender, time.perf_counter() - start


@dataclass(frozen=True)
class Workload:
    """Customers' purchase histories and the time the model is asked at: what requests carry."""

    histories: list[PurchaseHistory]
    now: float

    def sample(self, n: int, seed: int) -> list[PurchaseHistory]:
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(self.histories), size=min(n, len(self.histories)), replace=False)
        return [self.histories[i] for i in chosen]


def retail_workload(data: Path = DEFAULT_DATA) -> Workload:
    """Every customer's history in the shipped data, as of the data's end."""
    from recsys_tools.history import purchase_histories
    from recsys_tools.training.data import load_purchases

    purchases = load_purchases(data)
    histories = list(purchase_histories(purchases, Settings().max_history_products))
    return Workload(histories, purchases["timestamp"].max().timestamp())


def _queries(recommender: Recommender, histories: list[PurchaseHistory], now: float) -> list[Floats]:
    arrays = [(recommender.history_arrays(h.products, now), h.country) for h in histories]
    return [recommender.query(history, country) for history, country in arrays if history is not None]


def exact_top(recommender: Recommender, queries: list[Floats], k: int = RECALL_K) -> list[set[int]]:
    """Each query's exact top-k product rows (brute force)."""
    return [set(recommender.exact_candidates(query)[0][:k].tolist()) for query in queries]


def recall_at_k(
    recommender: Recommender, queries: list[Floats], k: int = RECALL_K, exact: list[set[int]] | None = None
) -> float:
    """Mean share of the exact top-k (brute force) that the served ScaNN search's top-k holds."""
    exact = exact_top(recommender, queries, k) if exact is None else exact
    shares = []
    for query, expected in zip(queries, exact, strict=True):
        approximate = set(recommender.candidates(query)[0][:k].tolist())
        shares.append(len(approximate & expected) / max(1, len(expected)))
    return float(np.mean(shares))


def retrieval(
    model_dir: Path, workload: Workload, *, repeat: int, warmup: int, recall_customers: int, peers: bool = True
) -> dict[str, Any]:
    """One query per call, top k_max, interleaved: the served ScaNN search and scann's own searcher alone with the same
    settings (what the served path wraps), exact brute force over the same
    embeddings (numpy), the SavedModel's `recommend` / `recommend_exact` signatures and (``peers``) faiss HNSW and
    IVFFlat on the same vectors, one thread; plus each one's recall@10 and the served search's time over the best
    peer's at recall >= 0.99. Queries are customers' (from their histories)."""
    from recsys_tools.bench.peers import best_peer, build_peers

    recommender, load_seconds = timed_load(model_dir)
    model = recommender.artifact
    queries = _queries(recommender, workload.sample(repeat, seed=1), workload.now)
    batches = [q[None] for q in queries]
    run = recommender.run_signature
    recall_queries = _queries(recommender, workload.sample(recall_customers, seed=2), workload.now)
    exact = exact_top(recommender, recall_queries)
    k = min(model.k_max, len(model.catalogue))
    served_vectors = np.ascontiguousarray(recommender._product_columns.T)  # [P, D], as faiss takes them
    built = build_peers(served_vectors, np.stack(recall_queries), exact, k) if peers else []
    settings = recommender.search_settings(k)
    # Two groups, each interleaved in itself: the brute-force passes (exact search streams every product vector, 256 MB
    # at 1M products, through the caches) and then the searches, so that a search is timed as a server running only
    # searches runs it, not right after a brute-force pass.
    figures = measure(
        {
            "exact": lambda i: recommender.exact_candidates(queries[i % len(queries)]),
            "scann_signature": lambda i: run("recommend", queries=batches[i % len(batches)]),
            "exact_signature": lambda i: run("recommend_exact", queries=batches[i % len(batches)]),
        },
        repeat,
        warmup,
    ) | measure(
        {
            "scann": lambda i: recommender.candidates(queries[i % len(queries)]),
            # the same search on scann's pybind searcher alone: what the served path wraps
            "scann_native": lambda i: recommender._searcher.search(queries[i % len(queries)], k, *settings),
            **{peer.name: _cycling(peer.search, queries) for peer in built},
        },
        repeat,
        warmup,
    )
    result: dict[str, Any] = {
        "products": len(model.catalogue),
        "customers": len(workload.histories),
        "k": k,
        "embedding_dim": model.manifest.get("embedding_dim"),
        "index": model.manifest.get("index"),
        "build_seconds": model.manifest.get("build_seconds"),
        "load_seconds": round(load_seconds, 2),
        **{name: figure for name, figure in figures.items() if name not in {peer.name for peer in built}},
        "speedup": ratio(figures["exact"], figures["scann"]),
        "served_vs_native": figures["scann"]["median"] / figures["scann_native"]["median"],
        "signature_speedup": ratio(figures["exact_signature"], figures["scann_signature"]),
        "recall_at_10": recall_at_k(recommender, recall_queries, exact=exact),
        "recall_customers": len(recall_queries),
    }
    if built:
        result["peers"] = {
            peer.name: {
                "description": peer.description,
                "setting": peer.setting,
                "recall_at_10": peer.recall_at_10,
                "build_seconds": peer.build_seconds,
                "search": figures[peer.name],
            }
            for peer in built
        }
        best = best_peer(result["peers"])
        result["best_peer"] = best
        # > 1: the served search is slower than the best peer reaching recall 0.99
        result["served_vs_best_peer"] = (
            None if best is None else figures["scann"]["median"] / result["peers"][best]["search"]["median"]
        )
    return result


def _cycling(search: Callable[[Floats], object], queries: list[Floats]) -> Callable[[int], object]:
    return lambda i: search(queries[i % len(queries)])


def wrapper(model_dir: Path, workload: Workload, *, repeat: int, warmup: int) -> dict[str, Figure]:
    """The model part of generate, `Recommender.recommend(...).top(20)` (query tower from the history, search,
    ranking features and head), and the update path: `Recommender.score` (the same ranking, 100 products) and the
    SavedModel's retrieval `score` signature."""
    recommender, _ = timed_load(model_dir)
    histories = workload.sample(repeat, seed=3)
    now = workload.now
    rng = np.random.default_rng(4)
    catalogue = sorted(recommender.artifact.catalogue)
    products = [catalogue[i] for i in rng.choice(len(catalogue), size=min(SCORED_PRODUCTS, len(catalogue)))]
    queries = _queries(recommender, histories, now)

    def recommend(i: int) -> object:
        h = histories[i % len(histories)]
        ranked = recommender.recommend(h.products, h.country, now)
        return ranked.top(GENERATE_K) if ranked is not None else None

    return measure(
        {
            "recommend": recommend,
            "score": lambda i: recommender.score(
                histories[i % len(histories)].products, histories[i % len(histories)].country, now, products
            ),
            "score_signature": lambda i: recommender.run_signature(
                "score", query=queries[i % len(queries)], product_ids=products
            ),
        },
        repeat,
        warmup,
    )


def batch_generation(model_dir: Path, workload: Workload, *, repeat: int, single_customers: int) -> dict[str, Any]:
    """Top-20 for every customer of the workload, customers per second from the histories (the query computation
    included in all), one thread (BLAS limited to one):

    - ``two_stage``: the served two-stage model in pages (``Recommender.recommend_many``: retrieval and ranking),
      against ``single``: one customer per call as served (``Recommender.recommend``), on the first
      ``single_customers`` customers, taking turns in each round; ``two_stage_speedup`` the ratio of the medians, and
      ``identical`` the share of those customers whose top 20 (ids and scores) is the same both ways;
    - ``profile``: where a batch's time goes, microseconds a customer (``batch_profile``);
    - ``batched``: retrieval only, through the SavedModel's ``recommend`` signature in pages of the same size."""
    recommender, _ = timed_load(model_dir)
    histories, now = workload.histories, workload.now
    single = histories[:single_customers]
    asked = [(h.products, h.country) for h in histories]

    def batched(chosen: list[PurchaseHistory]) -> float:
        start = time.perf_counter()
        for i in range(0, len(chosen), BATCH_SIZE):
            queries = _queries(recommender, chosen[i : i + BATCH_SIZE], now)
            out = recommender.run_signature("recommend", queries=np.stack(queries))
            out["product_ids"][:, :BATCH_K], out["scores"][:, :BATCH_K]
        return len(chosen) / (time.perf_counter() - start)

    def two_stage(count: int) -> tuple[float, list[list[tuple[str, float]] | None]]:
        start = time.perf_counter()
        tops: list[list[tuple[str, float]] | None] = []
        for i in range(0, count, BATCH_SIZE):
            ranked = recommender.recommend_many(asked[i : min(i + BATCH_SIZE, count)], now)
            tops += [None if r is None else r.top(BATCH_K) for r in ranked]
        return count / (time.perf_counter() - start), tops

    def one_by_one(chosen: list[PurchaseHistory]) -> tuple[float, list[list[tuple[str, float]] | None]]:
        start = time.perf_counter()
        tops: list[list[tuple[str, float]] | None] = []
        for h in chosen:
            ranked = recommender.recommend(h.products, h.country, now)
            tops.append(None if ranked is None else ranked.top(BATCH_K))
        return len(chosen) / (time.perf_counter() - start), tops

    with _one_blas_thread() as blas_threads:
        batched(histories[:BATCH_SIZE]), two_stage(BATCH_SIZE), one_by_one(single[:10])  # warm-up
        rates: dict[str, list[float]] = {"batched": [], "two_stage": [], "single": []}
        for _ in range(repeat):
            rates["batched"].append(batched(histories))
            rate, many = two_stage(len(histories))
            rates["two_stage"].append(rate)
            rate, alone = one_by_one(single)
            rates["single"].append(rate)
        profile = batch_profile(recommender, asked, now)
    figures = {name: summarize(values, "customers/s") for name, values in rates.items()}
    return {
        "customers": len(histories),
        "batch_size": BATCH_SIZE,
        "k": BATCH_K,
        "blas_threads": blas_threads,
        "two_stage": figures["two_stage"],
        "single_customers": len(single),
        "single": figures["single"],
        "two_stage_speedup": figures["two_stage"]["median"] / figures["single"]["median"],
        "identical": sum(a == b for a, b in zip(many, alone, strict=False)) / max(1, len(alone)),
        "profile": profile,
        "batched": figures["batched"],
    }


def batch_profile(
    recommender: Recommender, asked: Sequence[tuple[Mapping[str, Bought], str | None]], now: float
) -> dict[str, float]:
    """Microseconds a customer in each step of ``Recommender.recommend_many``, over every customer in pages
    (the steps called one by one, as ``recommend_many`` calls them): history arrays, queries, retrieval (the served
    search, exact or ScaNN, and the candidate rule), features, the ranking head, the per-customer sort."""
    from recsys.scoring import Histories, batch_features, descending_order, sigmoid

    spent = dict.fromkeys(("history_arrays", "queries", "search", "features", "head", "sort"), 0.0)
    head = recommender._heads["all"]
    clock = time.perf_counter
    for i in range(0, len(asked), BATCH_SIZE):
        page = asked[i : i + BATCH_SIZE]
        t0 = clock()
        batch, usable = Histories.read([p for p, _ in page], recommender._product_rows, now)
        t1 = clock()
        if batch is None:
            continue
        queries = recommender.queries(batch, [page[i][1] for i in usable])
        t2 = clock()
        rows, sizes = recommender._candidates_many(batch, queries, exclude_purchased=False)
        t3 = clock()
        x = batch_features(rows, sizes, batch, recommender._tables)
        t4 = clock()
        scores = sigmoid(head.logits(x))
        t5 = clock()
        descending_order(scores, sizes)
        t6 = clock()
        for step, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True):
            spent[step] += seconds
    return {step: round(1e6 * seconds / len(asked), 2) for step, seconds in spent.items()}


@contextmanager
def _one_blas_thread() -> Iterator[int | str]:
    """numpy's BLAS limited to one thread (threadpoolctl, where installed)."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:
        yield "default"
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield 1
