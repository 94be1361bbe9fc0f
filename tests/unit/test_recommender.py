"""The served model wrapper: the buy-again blend, exclusion of past purchases, unknown ids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from recsys.recommender import Recommender, load_recommender
from tests.support.data import KNOWN_CUSTOMER


@pytest.fixture(scope="module")
def model(model_dir: Path) -> Recommender:
    return load_recommender(model_dir)


def raw_scores(model: Recommender, customer_id: str, product_ids: list[str]) -> npt.NDArray[np.float64]:
    out = model.run_signature("score", customer_id=customer_id, product_ids=product_ids)
    return np.asarray(out["scores"], dtype=np.float64)


def heaviest_buyer(model: Recommender) -> str:
    return max(model.artifact.customers, key=lambda c: len(model.purchased(c)))


def test_served_score_is_the_model_score_plus_the_log_count_blend(model: Recommender) -> None:
    assert model.buy_again_weight > 0
    bought = model.purchased(KNOWN_CUSTOMER)
    products = [*list(bought)[:5], *[p for p in model.artifact.catalogue if p not in bought][:5]]
    expected = raw_scores(model, KNOWN_CUSTOMER, products) + [
        model.buy_again_weight * math.log1p(bought.get(p, 0)) for p in products
    ]
    assert np.allclose(model.score(KNOWN_CUSTOMER, products), expected, rtol=1e-5, atol=1e-5)


def test_recommend_ranks_like_exact_blended_scores_over_the_whole_catalogue(model: Recommender) -> None:
    catalogue = list(model.artifact.catalogue)
    exact = dict(zip(catalogue, model.score(KNOWN_CUSTOMER, catalogue), strict=True))
    ranked = model.recommend(KNOWN_CUSTOMER)
    for product_id, score in ranked[:50]:
        assert math.isclose(score, exact[product_id], rel_tol=1e-4, abs_tol=1e-4)
    best = sorted(exact, key=exact.__getitem__, reverse=True)[:20]
    assert len(set(best) & {p for p, _ in ranked[:20]}) >= 18  # ScaNN is approximate
    assert set(model.purchased(KNOWN_CUSTOMER)) <= {p for p, _ in ranked}  # every past purchase is ranked


def test_exclude_purchased_ranks_only_new_products_even_for_the_heaviest_buyer(model: Recommender) -> None:
    customer = heaviest_buyer(model)
    bought = model.purchased(customer)
    ranked = model.recommend(customer, exclude_purchased=True)
    assert not {p for p, _ in ranked} & bought.keys()
    assert len(ranked) >= min(model.artifact.k_max // 2, len(model.artifact.catalogue) - len(bought))
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True)


def test_vocabularies_detect_unknown_ids(model: Recommender) -> None:
    assert model.knows_customer(KNOWN_CUSTOMER)
    assert not model.knows_customer("new-customer-1")
    assert model.unknown_products(["85123A", "NOPE", "71053"]) == ["NOPE"]


def test_too_few_new_candidates_fall_back_to_exact_scoring_of_the_catalogue(
    model: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a customer for whom ScaNN's K_MAX candidates hold fewer new products than K_MAX / 2
    customer = heaviest_buyer(model)
    bought = model.purchased(customer)
    monkeypatch.setitem(model.artifact.manifest, "k_max", 4 * len(model.artifact.catalogue))
    # When only new products are asked for
    ranked = model.recommend(customer, exclude_purchased=True)
    # Then every product never bought is ranked by its exact score
    new = [p for p in model.artifact.catalogue if p not in bought]
    exact = sorted(zip(new, raw_scores(model, customer, new), strict=True), key=lambda i: i[1], reverse=True)
    assert [p for p, _ in ranked] == [p for p, _ in exact]


@pytest.mark.parametrize(
    ("method", "signature"), [("candidates", "recommend"), ("exact_candidates", "recommend_exact")]
)
def test_serving_search_returns_what_the_savedmodel_signature_returns(
    model: Recommender, method: str, signature: str
) -> None:
    # Given customers, and the SavedModel's signature called for each alone (ScaNN's answer for a query may change
    # with the batch it comes in: searching 200 customers at once ranked 10 of them differently than one by one)
    for customer in sorted(model.artifact.customers)[:10]:
        out = model.run_signature(signature, customer_ids=[customer])
        ids, scores = out["product_ids"][0], out["scores"][0]
        expected = [(p.decode(), float(s)) for p, s in zip(ids, scores, strict=True) if p]
        # When serving searches
        served = getattr(model, method)(customer)
        # Then it finds the same products with the same scores, best first (numpy's and TensorFlow's dot products may
        # differ in the last bits, so near-ties may swap places)
        assert np.allclose([s for _, s in served], [s for _, s in expected], rtol=1e-5, atol=1e-5)
        common = dict(served).keys() & dict(expected).keys()
        assert len(common) >= len(expected) - 2
        assert all(math.isclose(dict(served)[p], dict(expected)[p], rel_tol=1e-5, abs_tol=1e-5) for p in common)
