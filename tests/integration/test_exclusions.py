"""Issue 14, item 3: the exclusions are bounded by forgetting the oldest, so removing a listed product always works,
whatever was excluded before; lists stored with the former set of exclusions are still read. Through each Lambda
handler and the local app, on DynamoDB under moto."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from recsys.settings import Settings
from tests.support.api import TABLE, Api, raw_item
from tests.support.data import UNKNOWN_CUSTOMER

CUSTOMER = UNKNOWN_CUSTOMER


def stored_exclusions(aws: Any) -> list[str]:
    item = raw_item(aws, CUSTOMER)
    assert item is not None
    excluded: list[str] = json.loads(item["excluded"]["S"])
    return excluded


def with_list(api: Api, *product_ids: str) -> None:
    body = {"products": [{"product_id": p, "score": float(i)} for i, p in enumerate(product_ids)]}
    assert api("PATCH", CUSTOMER, body=body).status == 200


def test_a_listed_product_can_be_removed_after_the_default_cap_of_exclusions(api: Api, aws: Any) -> None:
    # Given a list and MAX_EXCLUDED (2,000 by default) products excluded that were never in it
    cap, per_request = Settings().max_excluded, Settings().max_products_per_request
    with_list(api, "LISTED-1", "LISTED-2")
    for start in range(0, cap, per_request):
        ids = [f"X-{i}" for i in range(start, start + per_request)]
        assert api("DELETE", CUSTOMER, body={"product_ids": ids}).status == 200
    # When a listed product is removed
    response = api("DELETE", CUSTOMER, body={"product_ids": ["LISTED-1"]})
    # Then it is removed, and the oldest exclusion is forgotten to make room for it
    assert response.status == 200, response.body
    assert [i["product_id"] for i in response.body["items"]] == ["LISTED-2"]
    excluded = stored_exclusions(aws)
    assert len(excluded) == cap
    assert excluded[-1] == "LISTED-1"
    assert excluded[0] == "X-1"  # X-0, the oldest, is forgotten


def test_the_oldest_exclusions_are_forgotten_first(
    build_api: Callable[..., Api], aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_EXCLUDED", "3")
    api = build_api()
    with_list(api, "A", "B", "C", "D")
    assert api("DELETE", CUSTOMER, body={"product_ids": ["A", "B"]}).status == 200
    assert api("DELETE", CUSTOMER, body={"product_ids": ["C"]}).status == 200
    assert api("DELETE", CUSTOMER, body={"product_ids": ["A"]}).status == 200  # named again: now the newest
    assert stored_exclusions(aws) == ["B", "C", "A"]
    assert api("DELETE", CUSTOMER, body={"product_ids": ["D", "E"]}).status == 200
    assert stored_exclusions(aws) == ["A", "D", "E"]
    # re-adding a product lifts its exclusion and keeps the others' order
    assert api("PATCH", CUSTOMER, body={"products": [{"product_id": "D", "score": 1.0}]}).status == 200
    assert stored_exclusions(aws) == ["A", "E"]


def test_lists_stored_with_a_set_of_exclusions_are_still_read(api: Api, aws: Any) -> None:
    # Given a list written in the former format: the exclusions as a string set
    with_list(api, "A", "B")
    aws.update_item(
        TableName=TABLE,
        Key={"customer_id": {"S": CUSTOMER}, "record": {"S": "list"}},
        UpdateExpression="SET excluded = :old",
        ExpressionAttributeValues={":old": {"SS": ["OLD-2", "OLD-1"]}},
    )
    # When a product is removed
    response = api("DELETE", CUSTOMER, body={"product_ids": ["A"]})
    # Then the former exclusions are kept (in a stable order, older than any new one) and written in the new format
    assert response.status == 200, response.body
    assert stored_exclusions(aws) == ["OLD-1", "OLD-2", "A"]
    generated = api("POST", CUSTOMER, query={"k": "100"})
    assert generated.status == 200
    assert not {"OLD-1", "OLD-2", "A"} & {i["product_id"] for i in generated.body["items"]}
