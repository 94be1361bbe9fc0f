"""The served two-stage model: the query tower computed from a live purchase history and the ranking heads (both
pinned to the SavedModel's signatures), exclusion of past purchases, customers without a usable history."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from recsys.domain import Purchase, PurchaseHistory
from recsys.recommender import EXACT_SEARCH_MAX_PRODUCTS, Recommender
from recsys.scoring import features, sigmoid
from tests.support.data import KNOWN_CUSTOMER, SliceHistories

DAY = 86_400


def signature_query(model: Recommender, history: PurchaseHistory, now: float) -> npt.NDArray[np.float32]:
    products = list(history.products)
    out = model.run_signature(
        "query",
        product_ids=products,
        counts=np.asarray([history.products[p].purchases for p in products], np.float32),
        ages_days=np.asarray([(now - history.products[p].last_purchased) / DAY for p in products], np.float32),
        country=history.country or "",
    )
    return np.asarray(out["query"], dtype=np.float32)


def served_query(model: Recommender, history: PurchaseHistory, now: float) -> npt.NDArray[np.float32]:
    arrays = model.history_arrays(history.products, now)
    assert arrays is not None
    return model.query(arrays, history.country)


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
        served = served_query(recommender, history, histories.now)
        # Then they agree
        np.testing.assert_allclose(served, signature_query(recommender, history, histories.now), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("exclude_purchased", [False, True])
def test_served_scores_are_the_savedmodels_ranking_head_on_the_served_features(
    recommender: Recommender, histories: SliceHistories, exclude_purchased: bool
) -> None:
    # Given customers' histories
    for history in list(histories.by_customer.values())[:8]:
        # When serving ranks their candidates
        ranked = recommender.recommend(
            history.products, history.country, histories.now, exclude_purchased=exclude_purchased
        )
        assert ranked is not None
        # Then the scores are the SavedModel's ranking head (rank_new without past purchases, else rank_all) on the
        # features of those candidates, best first
        arrays = recommender.history_arrays(history.products, histories.now)
        assert arrays is not None
        rows = np.asarray([recommender._product_rows[p] for p in ranked.product_ids.tolist()], dtype=np.int64)
        x = features(rows, arrays, recommender._tables)
        logits = recommender.run_signature("rank_new" if exclude_purchased else "rank_all", features=x)["logits"]
        np.testing.assert_allclose(ranked.scores, sigmoid(logits), rtol=1e-4, atol=1e-5)
        assert list(ranked.scores) == sorted(ranked.scores, reverse=True)


def test_update_scores_agree_with_generate_and_every_past_purchase_is_ranked(
    recommender: Recommender, histories: SliceHistories
) -> None:
    history = histories.by_customer[KNOWN_CUSTOMER]
    ranked = recommender.recommend(history.products, history.country, histories.now)
    assert ranked is not None
    top = ranked.top(10_000)
    # products of generate's list are scored the same by update's path
    listed = [p for p, _ in top[:20]]
    scores = recommender.score(history.products, history.country, histories.now, listed)
    assert scores is not None
    assert np.allclose(scores, [s for _, s in top[:20]], rtol=1e-4, atol=1e-5)
    # and a product outside it gets a score too (ranked among generate's candidates)
    outside = next(p for p in recommender.artifact.catalogue if p not in {q for q, _ in top})
    assert 0.0 < (recommender.score(history.products, history.country, histories.now, [outside]) or [-1.0])[0] < 1.0
    known = {p for p in history.products if p in recommender.artifact.catalogue}
    assert known <= {p for p, _ in top}  # every past purchase the model knows is ranked


@pytest.fixture(scope="module")
def scann_recommender(model_dir: Path) -> Recommender:
    """The tests' model with ScaNN retrieval (its catalogue is small enough for "auto" to serve exact search)."""
    from recsys.artifact import Artifact

    return Recommender(Artifact(model_dir), retrieval="scann")


def test_small_catalogues_are_served_by_exact_search(recommender: Recommender, scann_recommender: Recommender) -> None:
    assert len(recommender.artifact.catalogue) <= EXACT_SEARCH_MAX_PRODUCTS
    assert recommender.exact_retrieval
    assert not scann_recommender.exact_retrieval


@pytest.mark.parametrize("retrieval", ["auto", "scann"])
def test_exclude_purchased_ranks_only_new_products_even_for_the_heaviest_buyer(
    recommender: Recommender, scann_recommender: Recommender, histories: SliceHistories, retrieval: str
) -> None:
    recommender = scann_recommender if retrieval == "scann" else recommender
    history = heaviest_buyer(histories)
    ranked = recommender.recommend(history.products, history.country, histories.now, exclude_purchased=True)
    assert ranked is not None
    top = ranked.top(10_000)
    assert not {p for p, _ in top} & history.products.keys()
    catalogue = recommender.artifact.catalogue
    # the top k_max never bought: ScaNN is asked for k_max + the history's size, and past purchases dropped
    assert len(top) == min(recommender.artifact.k_max, len(catalogue) - len(history.products.keys() & catalogue))
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
    # Then every product never bought is ranked, by the "new" head, best first
    new = [p for p in recommender.artifact.catalogue if p not in history.products]
    served = [p for p, _ in ranked.top(len(new))]
    assert sorted(served) == sorted(new)
    scores = [s for _, s in ranked.top(len(new))]
    assert all(later <= earlier for earlier, later in itertools.pairwise(scores))


@pytest.mark.parametrize(
    ("method", "signature"), [("candidates", "recommend"), ("exact_candidates", "recommend_exact")]
)
def test_serving_search_returns_what_the_savedmodel_signature_returns(
    recommender: Recommender, histories: SliceHistories, method: str, signature: str
) -> None:
    # Given customers' queries, and the SavedModel's signature called for each alone (ScaNN's answer for a query may
    # change with the batch it comes in: searching 200 customers at once ranked 10 of them differently)
    for history in list(histories.by_customer.values())[:10]:
        query = served_query(recommender, history, histories.now)
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
    usable = [h for h in workload.histories if h.products][:5]
    for query in (served_query(model, h, workload.now) for h in usable):
        # When serving searches
        rows, scores = model.candidates(query)
        # Then it returns what the `recommend` signature returns, without padding
        out = model.run_signature("recommend", queries=query[None])
        expected = [p.decode() for p in out["product_ids"][0] if p]
        assert [model.product_id(int(row)) for row in rows] == expected
        assert np.allclose(scores, out["scores"][0][: len(expected)], atol=1e-5)
        assert len(rows) == min(products, 200)


@pytest.mark.parametrize("exclude_purchased", [False, True])
def test_recommend_many_is_recommend_for_each_customer(
    recommender: Recommender, histories: SliceHistories, exclude_purchased: bool
) -> None:
    # Given every slice customer's history (the heaviest buyer among them), a history the model cannot use and a
    # country it does not know
    samples = list(histories.by_customer.values())
    unusable = PurchaseHistory("c").add([Purchase("NOPE-1", 1, int(histories.now))], 500)
    asked = [(h.products, h.country) for h in samples]
    asked[3:3] = [(unusable.products, None), (samples[0].products, "Atlantis")]
    # When they are recommended for all at once
    many = recommender.recommend_many(asked, histories.now, exclude_purchased=exclude_purchased)
    # Then each customer gets what recommend gives them alone: the same products, scores and order
    assert len(many) == len(asked)
    for (products, country), ranked in zip(asked, many, strict=True):
        alone = recommender.recommend(products, country, histories.now, exclude_purchased=exclude_purchased)
        if alone is None or ranked is None:
            assert alone is ranked is None
            continue
        assert ranked.product_ids.tolist() == alone.product_ids.tolist()
        np.testing.assert_array_equal(ranked.scores, alone.scores)
    assert many[3] is None
    assert many[4] is not None


def test_recommend_many_falls_back_to_exact_scoring_per_customer(
    recommender: Recommender, histories: SliceHistories, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a k_max above twice the products the heaviest buyer never bought (too few new candidates: the exact
    # fallback), and lighter buyers beside them
    heaviest = heaviest_buyer(histories)
    catalogue = recommender.artifact.catalogue
    new = len(catalogue) - len(heaviest.products.keys() & catalogue)
    monkeypatch.setitem(recommender.artifact.manifest, "k_max", 2 * new + 2)
    lighter = sorted(histories.by_customer.values(), key=lambda h: len(h.products))[:2]
    asked = [(h.products, h.country) for h in (lighter[0], heaviest, lighter[1])]
    # When they are recommended at once
    many = recommender.recommend_many(asked, histories.now, exclude_purchased=True)
    # Then the heaviest buyer gets every product never bought, and each customer what recommend gives them alone
    assert many[1] is not None
    assert len(many[1].product_ids) == new
    for (products, country), ranked in zip(asked, many, strict=True):
        alone = recommender.recommend(products, country, histories.now, exclude_purchased=True)
        assert ranked is not None
        assert alone is not None
        assert ranked.product_ids.tolist() == alone.product_ids.tolist()
        np.testing.assert_array_equal(ranked.scores, alone.scores)
