"""The ranking stage's arithmetic (recsys.scoring), which training and serving share: the history as arrays agrees with
the raw purchase events, the features do not depend on the candidates' order, and the two-stage protocol's data
choices (the validation period, too little data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.artifact import Artifact
from recsys.domain import DAY_SECONDS, HALF_LIVES_DAYS, ProductHistory, Purchase, PurchaseHistory
from recsys.recommender import Recommender
from recsys.scoring import (
    FEATURES,
    NEVER_DAYS,
    HistoryArrays,
    descending_keys,
    descending_order,
    exact_top,
    exact_top_many,
    features,
)
from tests.support.data import KNOWN_CUSTOMER, SliceHistories

NOW = 1_700_000_000


def test_history_arrays_are_the_purchase_events_as_of_the_request_time() -> None:
    # Given purchases of two products, out of order, and a request 10 days after the last one
    events = [("A", 3, 40), ("B", 1, 5), ("A", 1, 100), ("A", 2, 12)]  # product, quantity, days before NOW
    history = PurchaseHistory("c").add([Purchase(p, q, NOW - d * DAY_SECONDS) for p, q, d in events], 500)
    now = NOW + 10 * DAY_SECONDS
    arrays = HistoryArrays.of(history.products, {"A": 7, "B": 2, "C": 9}, now)
    assert arrays is not None
    # Then rows are sorted, and counts, quantities, days since and decayed counts are those of the raw events
    assert arrays.rows.tolist() == [2, 7]
    assert arrays.count.tolist() == [1, 3]
    assert arrays.quantity.tolist() == [1, 6]
    np.testing.assert_allclose(arrays.days_since, [15, 22])
    for i, half_life in enumerate(HALF_LIVES_DAYS):
        for column, product in enumerate(("B", "A")):
            ages = [d + 10 for p, _, d in events if p == product]
            np.testing.assert_allclose(arrays.decayed[i, column], sum(2 ** (-a / half_life) for a in ages), rtol=1e-5)
    # and a history of products the model does not know gives nothing
    assert HistoryArrays.of(history.products, {"C": 0}, now) is None


def test_features_do_not_depend_on_the_candidates_order(recommender: Recommender, histories: SliceHistories) -> None:
    history = histories.by_customer[KNOWN_CUSTOMER]
    arrays = recommender.history_arrays(history.products, histories.now)
    assert arrays is not None
    rows = np.arange(len(recommender.artifact.catalogue), dtype=np.int64)[:300]
    shuffled = np.random.default_rng(1).permutation(rows)
    x = features(rows, arrays, recommender._tables)
    y = features(shuffled, arrays, recommender._tables)
    assert x.shape == (300, len(FEATURES))
    np.testing.assert_allclose(x[np.argsort(rows)], y[np.argsort(shuffled)], rtol=1e-6)
    # a never-bought candidate: not bought, no counts, "never" days since
    never = ~np.isin(rows, arrays.rows)
    assert never.any()
    column = {name: i for i, name in enumerate(FEATURES)}
    assert (x[never, column["bought"]] == 0).all()
    assert (x[never, column["log_count"]] == 0).all()
    np.testing.assert_allclose(x[never, column["log_days_since"]], np.log1p(NEVER_DAYS), rtol=1e-6)


def test_the_manifest_records_how_the_ranking_stage_was_made(model_dir: Path) -> None:
    ranking = Artifact(model_dir).manifest["ranking"]
    assert ranking["features"] == list(FEATURES)
    assert ranking["positives"] > 0
    assert ranking["ease_lambda"] in {100.0, 250.0, 500.0, 1000.0, 2000.0}
    assert set(ranking["candidate_coverage"]) == {"all", "new"}
    assert pd.Timestamp(ranking["validation_start"]) < pd.Timestamp("2011-12-10")


def test_the_validation_period_is_the_last_30_days_or_a_tenth_of_the_purchases() -> None:
    from recsys_tools.training.two_stage import validation_start

    days = pd.date_range("2011-01-01", periods=200, freq="D")  # the last 30 days hold 15%
    even = pd.DataFrame({"timestamp": days})
    assert validation_start(even, 30) == days[-1] - pd.Timedelta(days=30)
    # most purchases long ago, few in the last month: the period reaches back to hold a tenth of them
    skewed = pd.DataFrame({"timestamp": [*([days[0]] * 100), *days[-5:]]})
    assert validation_start(skewed, 30) < days[-1] - pd.Timedelta(days=30)


def test_too_little_data_for_the_ranking_stage_is_refused_with_a_reason() -> None:
    from recsys_tools.training.data import synthetic_purchases
    from recsys_tools.training.params import TrainParams
    from recsys_tools.training.two_stage import fit_ranking, validation_start

    # Given purchases where nobody who bought before the validation period buys in it
    purchases = synthetic_purchases(num_customers=12, num_products=6)
    start = validation_start(purchases, TrainParams.tiny().validation_days)
    later = purchases["timestamp"] >= start
    purchases.loc[later, "customer_id"] = "someone-new-" + purchases.loc[later].index.astype(str)
    names = dict.fromkeys(purchases["product_id"], "")
    with pytest.raises(ValueError, match="too little data for the ranking stage"):
        fit_ranking(purchases, TrainParams.tiny(), names, sorted(names))


def test_a_query_has_the_same_exact_top_alone_and_in_a_batch(recommender: Recommender) -> None:
    # Given the model's product vectors, 9 queries (scored QUERY_ROWS at a time: some at every position of a product,
    # the last padded) and past purchases to leave out, one query's leaving fewer than k products
    columns = recommender._product_columns
    vectors = columns.T
    queries = np.random.default_rng(3).normal(size=(9, len(columns))).astype(np.float32)
    k = 50
    excluded = {1: np.asarray([3, 9]), 4: np.arange(len(vectors) - k // 2)}
    pairs = [(i, row) for i, rows in excluded.items() for row in rows.tolist()]
    query_of, rows = np.asarray(pairs).T
    # When their top k is searched for all at once and for each alone
    top, scores = exact_top_many(columns, queries, k, (query_of, rows))
    for i, query in enumerate(queries):
        alone_rows, alone_scores = exact_top(columns, query, k, excluded.get(i))
        # Then each query gets the same rows and score bits both ways
        found = np.isfinite(scores[i])
        assert top[i][found].tolist() == alone_rows.tolist()
        np.testing.assert_array_equal(scores[i][found], alone_scores)
        # the best products not excluded, best first
        left = np.setdiff1d(np.arange(len(vectors)), excluded.get(i, []))
        assert len(alone_rows) == min(k, len(left))
        assert np.isin(alone_rows, left).all()
        assert (np.diff(alone_scores) <= 0).all()
        np.testing.assert_allclose(alone_scores, vectors[alone_rows] @ query, rtol=1e-5, atol=1e-5)
        others = np.setdiff1d(left, alone_rows)
        assert (vectors[others] @ query <= alone_scores[-1] + 1e-5).all()


def test_a_candidates_logit_is_the_same_alone_and_in_a_batch(
    recommender: Recommender, histories: SliceHistories
) -> None:
    # Given features of 300 candidates for a customer
    arrays = recommender.history_arrays(histories.by_customer[KNOWN_CUSTOMER].products, histories.now)
    assert arrays is not None
    x = features(np.arange(300, dtype=np.int64), arrays, recommender._tables)
    rng = np.random.default_rng(5)
    pieces = [(0, 1), (1, 3), (3, 260), (260, 300)]
    for size in range(1, 70):
        start = int(rng.integers(0, len(x) - size + 1))
        pieces.append((start, start + size))
    for head in recommender._heads.values():
        # When the ranking head scores them all at once, and in pieces of 1 to 69 rows at random offsets
        together = head.logits(x)
        for a, b in pieces:
            # Then each row's logit has the same bits
            np.testing.assert_array_equal(head.logits(x[a:b]), together[a:b])


@pytest.mark.parametrize("customers", [3, 1 << 20])
def test_descending_order_is_a_stable_sort_of_each_segments_values_largest_first(customers: int) -> None:
    # Given segments of values with ties (0.0 and -0.0 among them), one segment empty (more customers than fit the
    # fast path's keys: the stable sort)
    values = np.asarray([0.5, -0.0, 0.5, 0.0, 2.0, -1.0, 3.0, 3.0, -np.inf], np.float32)
    sizes = np.zeros(customers, np.int64)
    sizes[:3] = [4, 0, 5]
    # When ordered, then it is a stable sort of (segment, -value)
    segment = np.repeat(np.arange(customers), sizes)
    expected = np.argsort(descending_keys(values, segment), kind="stable")
    assert descending_order(values, sizes).tolist() == expected.tolist() == [0, 2, 1, 3, 6, 7, 4, 5, 8]


def test_catalogues_too_large_for_ease_get_zero_ease_features(monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys_tools.training import ease
    from recsys_tools.training.data import synthetic_purchases
    from recsys_tools.training.two_stage import product_tables

    purchases = synthetic_purchases(num_customers=12, num_products=6)
    products = sorted(purchases["product_id"].unique())
    pruned = product_tables(purchases, products, 100.0, 3)
    assert pruned.ease_columns.shape == (len(products), 3)
    # the 3 largest weights of each product, not any 3 of the 100 kept by default
    weights = ease.ease_weights(ease.gram(ease_matrix(purchases, products)), 100.0)
    np.testing.assert_allclose(np.sort(pruned.ease_values, axis=1), np.sort(weights, axis=1)[:, -3:], rtol=1e-5)
    monkeypatch.setattr(ease, "MAX_PRODUCTS", 5)  # no dense [P, P] inverse above it
    tables = product_tables(purchases, products, 100.0, 3)
    assert tables.ease_columns.shape == (len(products), 0)
    history = HistoryArrays.of({products[0]: _bought_once()}, {p: i for i, p in enumerate(products)}, NOW)
    assert history is not None
    x = features(np.arange(len(products), dtype=np.int64), history, tables)
    column = {name: i for i, name in enumerate(FEATURES)}
    assert (x[:, column["ease_raw"]] == 0).all()


def ease_matrix(purchases: pd.DataFrame, products: list[str]) -> object:
    import scipy.sparse as sp

    customers = pd.Index(purchases["customer_id"].unique())
    rows = customers.get_indexer(purchases["customer_id"])
    columns = pd.Index(products).get_indexer(purchases["product_id"])
    return sp.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(customers), len(products)))


def _bought_once() -> ProductHistory:
    return PurchaseHistory("c").add([Purchase("x", 1, NOW - DAY_SECONDS)], 500).products["x"]
