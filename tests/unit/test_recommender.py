"""The served model: the query tower computed from a live purchase history (pinned to the SavedModel's signature),
the buy-again blend, exclusion of past purchases, customers without a usable history."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from recsys.domain import Purchase, PurchaseHistory
from recsys.recommender import Recommender
from tests.support.data import KNOWN_CUSTOMER, SliceHistories

DAY = 86_400


def model_scores(
    model: Recommender, history: PurchaseHistory, now: float, products: list[str]
) -> npt.NDArray[np.float64]:
    """The SavedModel's own arithmetic: its `query` signature on the history, then its `score` signature."""
    query = signature_query(model, history, now)
    out = model.run_signature("score", query=query, product_ids=products)
    return np.asarray(out["scores"], dtype=np.float64)


def signature_query(model: Recommender, history: PurchaseHistory, now: float) -> npt.NDArray[np.float32]:
    products = list(history.products)
    out = model.run_signature(
        "query",
        product_ids=products,
        counts=np.asarray([history.products[p].count for p in products], np.float32),
        ages_days=np.asarray([(now - history.products[p].last_purchased) / DAY for p in products], np.float32),
        country=history.country or "",
    )
    return np.asarray(out["query"], dtype=np.float32)


def heaviest_buyer(histories: SliceHistories) -> PurchaseHistory:
    return max(histories.by_customer.values(), key=lambda h: len(h.products))


def test_the_served_query_is_the_savedmodels_query_signature(
    recommender: Recommender, histories: SliceHistories
) -> None:
    # Given customers' histories, one of them with a product and a country the model does not know
    samples = list(histories.by_customer.values())[:10]
    odd = samples[0].add([Purchase("NOT-IN-MODEL", 2, int(histories.now) - 3 * DAY)], 500, "Atlantis")
    for history in [*samples, odd]:
        # When serving computes the query (numpy) and the SavedModel's signature does
        served = recommender.query(history.products, history.country, histories.now)
        # Then they agree
        assert served is not None
        np.testing.assert_allclose(served, signature_query(recommender, history, histories.now), rtol=1e-4, atol=1e-5)


def test_served_score_is_the_model_score_plus_the_log_count_blend(
    recommender: Recommender, histories: SliceHistories
) -> None:
    history = histories.by_customer[KNOWN_CUSTOMER]
    assert recommender.buy_again_weight > 0
    bought = list(history.products)[:5]
    products = [*bought, *[p for p in recommender.artifact.catalogue if p not in history.products][:5]]
    counts = [history.products[p].count if p in history.products else 0 for p in products]
    expected = model_scores(recommender, history, histories.now, products) + [
        recommender.buy_again_weight * math.log1p(n) for n in counts
    ]
    served = recommender.score(history.products, history.country, histories.now, products)
    assert served is not None
    assert np.allclose(served, expected, rtol=1e-4, atol=1e-4)


def test_recommend_ranks_like_exact_blended_scores_over_the_whole_catalogue(
    recommender: Recommender, histories: SliceHistories
) -> None:
    history = histories.by_customer[KNOWN_CUSTOMER]
    catalogue = list(recommender.artifact.catalogue)
    scores = recommender.score(history.products, history.country, histories.now, catalogue)
    assert scores is not None
    exact = dict(zip(catalogue, scores, strict=True))
    ranked = recommender.recommend(history.products, history.country, histories.now)
    assert ranked is not None
    top = ranked.top(len(catalogue))
    for product_id, score in top[:50]:
        assert math.isclose(score, exact[product_id], rel_tol=1e-4, abs_tol=1e-4)
    best = sorted(exact, key=exact.__getitem__, reverse=True)[:20]
    assert len(set(best) & {p for p, _ in top[:20]}) >= 18  # ScaNN is approximate
    known = {p for p in history.products if p in exact}
    assert known <= {p for p, _ in top}  # every past purchase the model knows is ranked


def test_exclude_purchased_ranks_only_new_products_even_for_the_heaviest_buyer(
    recommender: Recommender, histories: SliceHistories
) -> None:
    history = heaviest_buyer(histories)
    ranked = recommender.recommend(history.products, history.country, histories.now, exclude_purchased=True)
    assert ranked is not None
    top = ranked.top(10_000)
    assert not {p for p, _ in top} & history.products.keys()
    catalogue = recommender.artifact.catalogue
    assert len(top) >= min(recommender.artifact.k_max // 2, len(catalogue) - len(history.products))
    scores = [s for _, s in top]
    assert scores == sorted(scores, reverse=True)


def test_a_history_the_model_cannot_use_gets_nothing_and_unknown_products_are_detected(
    recommender: Recommender, histories: SliceHistories
) -> None:
    unusable = PurchaseHistory("c").add([Purchase("NOPE-1", 1, int(histories.now))], 500)
    assert recommender.recommend(unusable.products, None, histories.now) is None
    assert recommender.recommend({}, "United Kingdom", histories.now) is None
    assert recommender.unknown_products(["85123A", "NOPE", "71053"]) == ["NOPE"]


def test_top_leaves_out_exclusions_and_keeps_the_order(recommender: Recommender, histories: SliceHistories) -> None:
    history = histories.by_customer[KNOWN_CUSTOMER]
    ranked = recommender.recommend(history.products, history.country, histories.now)
    assert ranked is not None
    first = ranked.top(5)
    without = ranked.top(4, exclude={first[0][0], "NOT-THERE"})
    assert without == first[1:]


def test_too_few_new_candidates_fall_back_to_exact_scoring_of_the_catalogue(
    recommender: Recommender, histories: SliceHistories, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a customer for whom ScaNN's K_MAX candidates hold fewer new products than K_MAX / 2
    history = heaviest_buyer(histories)
    monkeypatch.setitem(recommender.artifact.manifest, "k_max", 4 * len(recommender.artifact.catalogue))
    # When only new products are asked for
    ranked = recommender.recommend(history.products, history.country, histories.now, exclude_purchased=True)
    assert ranked is not None
    # Then every product never bought is ranked by its exact score
    new = [p for p in recommender.artifact.catalogue if p not in history.products]
    exact = dict(zip(new, model_scores(recommender, history, histories.now, new).tolist(), strict=True))
    served = [p for p, _ in ranked.top(len(new))]
    assert sorted(served) == sorted(new)
    # best first by the SavedModel's scores (numpy's and TensorFlow's dot products may swap exact near-ties)
    in_order = [exact[p] for p in served]
    assert all(later <= earlier + 1e-5 for earlier, later in itertools.pairwise(in_order))


@pytest.mark.parametrize(
    ("method", "signature"), [("candidates", "recommend"), ("exact_candidates", "recommend_exact")]
)
def test_serving_search_returns_what_the_savedmodel_signature_returns(
    recommender: Recommender, histories: SliceHistories, method: str, signature: str
) -> None:
    # Given customers' queries, and the SavedModel's signature called for each alone (ScaNN's answer for a query may
    # change with the batch it comes in: searching 200 customers at once ranked 10 of them differently)
    for history in list(histories.by_customer.values())[:10]:
        query = recommender.query(history.products, history.country, histories.now)
        assert query is not None
        out = recommender.run_signature(signature, queries=query[None])
        ids, scores = out["product_ids"][0], out["scores"][0]
        expected = [(p.decode(), float(s)) for p, s in zip(ids, scores, strict=True) if p]
        # When serving searches
        rows, values = getattr(recommender, method)(query)
        served = [(recommender.product_id(int(r)), float(v)) for r, v in zip(rows, values, strict=True)]
        # Then it finds the same products with the same scores, best first (numpy's and TensorFlow's dot products may
        # differ in the last bits, so near-ties may swap places)
        assert np.allclose([s for _, s in served], [s for _, s in expected], rtol=1e-5, atol=1e-5)
        common = dict(served).keys() & dict(expected).keys()
        assert len(common) >= len(expected) - 2
        assert all(math.isclose(dict(served)[p], dict(expected)[p], rel_tol=1e-5, abs_tol=1e-5) for p in common)


@pytest.mark.parametrize("products", [150, 500])
def test_the_served_search_on_a_brute_force_index_is_the_signatures(tmp_path: Path, products: int) -> None:
    # Given a catalogue small enough for the export to build a brute-force ScaNN index (fewer or more than k_max
    # products), served through scann's pybind searcher built from the SavedModel's index variables
    from recsys.artifact import Artifact
    from recsys_tools.bench.synthetic import build_artifact

    workload = build_artifact(tmp_path, products, customers=10, dim=16)
    model = Recommender(Artifact(tmp_path))
    assert model.artifact.manifest["index"]["kind"] == "brute_force"
    queries = [model.query(h.products, h.country, workload.now) for h in workload.histories]
    for query in [q for q in queries if q is not None][:5]:
        # When serving searches
        rows, scores = model.candidates(query)
        # Then it returns what the `recommend` signature returns, without padding
        out = model.run_signature("recommend", queries=query[None])
        expected = [p.decode() for p in out["product_ids"][0] if p]
        assert [model.product_id(int(row)) for row in rows] == expected
        assert np.allclose(scores, out["scores"][0][: len(expected)], atol=1e-5)
        assert len(rows) == min(products, 200)
