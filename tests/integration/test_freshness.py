"""Freshness end to end, through the API: purchases recorded now change the next generated list, for a customer the
model was trained on and for one it never saw (recommendations follow live history, not a snapshot)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from recsys.domain import Purchase
from recsys.operations import RECORD_PURCHASES
from recsys.recommender import Recommender
from tests.support.api import Api
from tests.support.data import KNOWN_CUSTOMER, SliceHistories

NEW_CUSTOMER = "never-seen-in-training"


def ids(body: dict[str, Any]) -> list[str]:
    return [item["product_id"] for item in body["items"]]


def record(api: Api, customer_id: str, order_id: str, products: list[str], times: int = 1) -> None:
    now = datetime.now(UTC).isoformat()
    purchases = [{"product_id": p, "quantity": 1, "purchased_at": now} for p in products for _ in range(times)]
    response = api(RECORD_PURCHASES, customer_id, body={"order_id": order_id, "purchases": purchases})
    assert response.status == 200, response.body


def not_bought(recommender: Recommender, histories: SliceHistories, customer_id: str, ranked: list[str]) -> list[str]:
    """Products the customer never bought that the model ranks low for them (from position 100 on)."""
    bought = histories.by_customer[customer_id].products
    return [p for p in ranked[100:] if p not in bought][:3]


def test_recorded_purchases_are_excluded_ranked_by_buy_again_and_move_the_model_part(
    api: Api, recommender: Recommender, histories: SliceHistories
) -> None:
    # Given a customer of the training data, their list before, and three products they never bought, ranked low
    before = api("POST", KNOWN_CUSTOMER, query={"k": "100"}).body
    history = histories.by_customer[KNOWN_CUSTOMER]
    ranked = recommender.recommend(history.products, history.country, time.time())
    assert ranked is not None
    fresh = not_bought(recommender, histories, KNOWN_CUSTOMER, [p for p, _ in ranked.top(1000)])
    assert len(fresh) == 3
    assert not set(fresh) & set(ids(before))
    # When they buy those three products, five times each, today
    record(api, KNOWN_CUSTOMER, "fresh-1", fresh, times=5)
    # Then (a) a list without past purchases leaves them out
    excluded = api("POST", KNOWN_CUSTOMER, query={"k": "100", "exclude_purchased": "true"}).body
    assert not set(fresh) & set(ids(excluded))
    # (b) otherwise the ranking stage lifts them into the list (bought five times today), scored as update scores them
    after = api("POST", KNOWN_CUSTOMER, query={"k": "100"}).body
    scores = {item["product_id"]: item["score"] for item in after["items"]}
    assert set(fresh) <= scores.keys()
    now = int(time.time())
    live_history = history.add([Purchase(p, 1, now) for p in fresh for _ in range(5)], 500)
    live = recommender.score(live_history.products, history.country, now, fresh)
    assert live is not None
    for product_id, expected in zip(fresh, live, strict=True):
        assert math.isclose(scores[product_id], expected, rel_tol=1e-4, abs_tol=1e-4)
    # (c) and the model part moved too: the query now leans to what was just bought
    model_part_before = [p for p in ids(before) if p not in fresh][:50]
    model_part_after = [p for p in ids(after) if p not in fresh][:50]
    assert model_part_after != model_part_before


def test_a_customer_the_model_never_saw_is_personalised_from_recorded_purchases(
    api: Api, recommender: Recommender
) -> None:
    # Given a customer unknown to the training data: the popular list
    first = api("POST", NEW_CUSTOMER, query={"k": "10"}).body
    assert {item["source"] for item in first["items"]} == {"popular"}
    # When they buy a few products (one the model does not know)
    catalogue = sorted(recommender.artifact.catalogue)
    record(api, NEW_CUSTOMER, "first-order", [catalogue[10], catalogue[500], "NOT-IN-MODEL-1"])
    # Then their next list is the model's, for them, and not the popular one
    second = api("POST", NEW_CUSTOMER, query={"k": "10"}).body
    assert {item["source"] for item in second["items"]} == {"model"}
    assert ids(second) != ids(first)
    # And another new customer with other purchases gets another list
    record(api, "another-new-one", "order-2", [catalogue[1000], catalogue[1500]])
    assert ids(api("POST", "another-new-one", query={"k": "10"}).body) != ids(second)
