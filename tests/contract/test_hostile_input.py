"""Hostile input through each Lambda handler and the local app: bad ids, bodies and sizes get a clear 4xx in the one
error shape and write nothing; valid ids that happen to be DynamoDB reserved words work."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.operations import RECORD_PURCHASES
from recsys.schemas import ID_PATTERN
from recsys.settings import Settings
from tests.support.api import TABLE, Api, Response
from tests.support.data import UNKNOWN_CUSTOMER

MAX_PRODUCTS_PER_REQUEST = Settings().max_products_per_request  # the default limit
MAX_PURCHASES_PER_ORDER = Settings().max_purchases_per_order

EXAMPLES = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None
)
CUSTOMER = "hostile-1"
VALID: dict[str, dict[str, Any]] = {
    "POST": {"query": {"k": "3"}},
    "GET": {},
    "PATCH": {"body": {"products": [{"product_id": "P-1", "score": 1.0}]}},
    "DELETE": {"body": {"product_ids": ["P-1"]}},
}
PATH_TRICKS = [
    "",
    ".",
    "..",
    "../recommendations",
    "a/../b",
    "a/b",
    "a%2Fb",
    "%2e%2e",
    "a\x00b",
    "\x00",
    "a b",
    "a?b=1",
    "a#b",
    "a;b",
    "a\\b",
    "a\nb",
    "-leading-dash",
    "x" * 65,
    "Ωmega",
    "数字",
    "emoji-🙂",
    "a" * 10_000,
]
RESERVED_WORDS = ["size", "name", "items", "version", "customer_id", "excluded", "key", "value", "S", "N", "L", "M"]


def _invalid(customer_id: str) -> bool:
    return re.fullmatch(ID_PATTERN, customer_id) is None


hostile_ids = st.one_of(st.sampled_from(PATH_TRICKS), st.text(max_size=80).filter(_invalid))
product_ids = st.integers(0, 10_000).map(lambda i: f"P-{i}")
products = st.builds(lambda product_id: {"product_id": product_id, "score": 1.0}, product_ids)
wrong_types = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5))
not_numbers: st.SearchStrategy[Any] = st.one_of(
    st.booleans(), st.text(max_size=5), st.lists(st.integers(), max_size=2), st.just({})
)
malformed_json = st.text(max_size=40).filter(lambda text: not _parses(text))
update_bodies = st.one_of(
    st.fixed_dictionaries({"products": wrong_types}),
    st.fixed_dictionaries({"products": st.lists(wrong_types, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"products": st.just([])}),
    st.fixed_dictionaries({"products": st.lists(products, min_size=1, max_size=3), "extra": wrong_types}),
    st.fixed_dictionaries({"products": st.lists(products, min_size=1, max_size=3).map(lambda ps: ps + ps[:1])}),
    st.fixed_dictionaries(
        {"products": st.lists(products, min_size=MAX_PRODUCTS_PER_REQUEST + 1, max_size=150, unique_by=str)}
    ),
    st.fixed_dictionaries({"products": st.just([{"product_id": "P-1", "score": 1.0, "source": "model"}])}),
    st.fixed_dictionaries(
        {"products": st.lists(st.fixed_dictionaries({"product_id": hostile_ids, "score": st.just(1.0)}), min_size=1)}
    ),
    st.fixed_dictionaries(
        {"products": st.lists(st.fixed_dictionaries({"product_id": product_ids, "score": not_numbers}), min_size=1)}
    ),
    st.fixed_dictionaries({"products": st.just([{"product_id": "P-1", "score": 1e300}])}),
    wrong_types,
    st.lists(products),
)
delete_bodies = st.one_of(
    st.fixed_dictionaries({"product_ids": wrong_types}),
    st.fixed_dictionaries({"product_ids": st.just([])}),
    st.fixed_dictionaries({"product_ids": st.lists(wrong_types, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"product_ids": st.lists(hostile_ids, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"product_ids": st.just(["P-1", "P-1"])}),
    st.fixed_dictionaries({"product_ids": st.just([f"P-{i}" for i in range(MAX_PRODUCTS_PER_REQUEST + 1)])}),
    st.fixed_dictionaries({"product_ids": st.just(["P-1"]), "extra": wrong_types}),
    wrong_types,
)
raw_bodies = st.one_of(
    malformed_json,
    st.sampled_from(["[" * 100_000, '{"products": [', '{"products": NaN}', "\x00", '{"a": 1}{"b": 2}']),
)


purchases = st.builds(lambda product_id: {"product_id": product_id}, product_ids)
not_ids = st.one_of(hostile_ids, wrong_types.filter(lambda value: not isinstance(value, str) or _invalid(value)))
not_null = wrong_types.filter(lambda value: value is not None)  # null is a valid purchased_at (now) and country
bad_purchases = st.one_of(
    wrong_types,
    st.fixed_dictionaries({"product_id": hostile_ids}),
    st.fixed_dictionaries({"product_id": product_ids, "quantity": st.one_of(not_numbers, st.integers(max_value=0))}),
    st.fixed_dictionaries({"product_id": product_ids, "quantity": st.integers(min_value=Settings().max_quantity + 1)}),
    st.fixed_dictionaries({"product_id": product_ids, "purchased_at": st.one_of(not_null, st.just("2026-13-01"))}),
    st.fixed_dictionaries({"product_id": product_ids, "purchased_at": st.just("2026-11-01T10:00:00")}),  # no zone
    st.fixed_dictionaries({"product_id": product_ids, "purchased_at": st.just("2999-01-01T00:00:00Z")}),
    st.fixed_dictionaries({"product_id": product_ids, "price": wrong_types}),
)
order_bodies = st.one_of(
    st.fixed_dictionaries({"order_id": not_ids, "purchases": st.lists(purchases, min_size=1)}),
    st.fixed_dictionaries({"order_id": st.just("o-1"), "purchases": st.one_of(wrong_types, st.just([]))}),
    st.fixed_dictionaries({"order_id": st.just("o-1"), "purchases": st.lists(bad_purchases, min_size=1, max_size=3)}),
    st.fixed_dictionaries(
        {"order_id": st.just("o-1"), "purchases": st.lists(purchases, min_size=MAX_PURCHASES_PER_ORDER + 1)}
    ),
    st.fixed_dictionaries({"order_id": st.just("o-1"), "purchases": st.lists(purchases, min_size=1), "x": wrong_types}),
    st.fixed_dictionaries(
        {"order_id": st.just("o-1"), "purchases": st.lists(purchases, min_size=1), "country": not_null}
    ).filter(lambda body: not isinstance(body["country"], str) or body["country"] == ""),
    st.fixed_dictionaries({"purchases": st.lists(purchases, min_size=1)}),
    wrong_types,
)


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def stored(aws: Any) -> list[dict[str, Any]]:
    """The stored recommendation lists (the table also holds the seeded purchase histories, which the list
    operations never write)."""
    items: list[dict[str, Any]] = aws.scan(
        TableName=TABLE,
        ConsistentRead=True,
        FilterExpression="#r = :list",
        ExpressionAttributeNames={"#r": "record"},
        ExpressionAttributeValues={":list": {"S": "list"}},
    )["Items"]
    return items


def assert_rejected(response: Response, *statuses: int) -> None:
    assert response.status in statuses, (response.status, response.body)
    assert set(response.body) == {"error"}, response.body
    assert response.body["error"]["code"]
    assert response.body["error"]["message"]


@given(customer_id=hostile_ids, method=st.sampled_from(sorted(VALID)))
@EXAMPLES
def test_hostile_customer_ids_are_rejected_and_nothing_is_written(
    api: Api, aws: Any, customer_id: str, method: str
) -> None:
    # Given an id that breaks the documented pattern (path tricks, NUL, unicode, over-long)
    # When any operation is called for it (percent-encoded into the path, as a client must)
    response = api(method, quote(customer_id, safe=""), **VALID[method])
    # Then a 4xx in the error shape (404 when the id splits the path), and nothing is stored
    assert_rejected(response, 404, 422)
    assert stored(aws) == []


@given(body=update_bodies)
@EXAMPLES
def test_invalid_update_bodies_are_rejected_and_nothing_is_written(api: Api, aws: Any, body: Any) -> None:
    # Given a body with wrong types, extra fields, duplicate, invalid or too many products, or out-of-range scores
    # When it is sent as an update
    response = api("PATCH", CUSTOMER, body=body)
    # Then 422 in the error shape, and nothing is stored
    assert_rejected(response, 422)
    assert stored(aws) == []


@given(body=delete_bodies)
@EXAMPLES
def test_invalid_delete_bodies_are_rejected_and_nothing_is_written(api: Api, aws: Any, body: Any) -> None:
    # Given a stored list, and a delete body with wrong types, extra fields, duplicate, invalid or too many ids
    if not stored(aws):
        assert api("PATCH", CUSTOMER, **VALID["PATCH"]).status == 200
    before = stored(aws)
    # When it is sent
    response = api("DELETE", CUSTOMER, body=body)
    # Then 422 in the error shape, and the table is as it was
    assert_rejected(response, 422)
    assert stored(aws) == before


@given(body=order_bodies)
@EXAMPLES
def test_invalid_orders_are_rejected_and_nothing_is_written(api: Api, aws: Any, body: Any) -> None:
    # Given an order with a bad or missing order_id, no, too many or malformed purchases (hostile product ids, zero,
    # huge or non-integer quantities, dates without a zone, far in the future or not dates), extra fields
    # When it is recorded
    response = api(RECORD_PURCHASES, CUSTOMER, body=body)
    # Then 422 in the error shape, and nothing is stored: no history (nor order)
    assert_rejected(response, 422)
    assert stored(aws) == []


@given(raw=raw_bodies, method=st.sampled_from(["PATCH", "DELETE"]))
@EXAMPLES
def test_malformed_json_is_a_400_and_nothing_is_written(api: Api, aws: Any, raw: str, method: str) -> None:
    # Given a body that is not JSON (or JSON no parser should accept); When it is sent
    response = api(method, CUSTOMER, raw_body=raw)
    # Then 400 (or 422 for what parses but is not a valid request) in the error shape, and nothing is stored
    assert_rejected(response, 400, 422)
    assert stored(aws) == []


@pytest.mark.parametrize("word", RESERVED_WORDS)
def test_ids_that_are_dynamodb_reserved_words_work(api: Api, word: str) -> None:
    # Given a customer and a product whose ids are DynamoDB reserved words (valid under the pattern)
    # When the customer's list is generated, shown, updated with the product and the product deleted again
    generated = api("POST", word, query={"k": "3"})
    shown = api("GET", word)
    updated = api("PATCH", word, body={"products": [{"product_id": word, "score": 1e6}]})
    deleted = api("DELETE", word, body={"product_ids": [word]})
    # Then every step works on that customer's list
    assert [r.status for r in (generated, shown, updated, deleted)] == [200, 200, 200, 200]
    assert generated.body["customer_id"] == word
    assert updated.body["items"][0]["product_id"] == word
    assert word not in [item["product_id"] for item in deleted.body["items"]]
    assert deleted.body["version"] == 3


def test_a_list_at_its_size_limit_takes_no_new_product(
    build_api: Callable[..., Api], aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAX_ITEMS=5 and a list of 5 products
    monkeypatch.setenv("MAX_ITEMS", "5")
    api = build_api()
    full = [{"product_id": f"P-{i}", "score": float(i)} for i in range(5)]
    assert api("PATCH", UNKNOWN_CUSTOMER, body={"products": full}).status == 200
    before = stored(aws)
    # When a sixth product is added, and when an existing one is rescored
    over = api("PATCH", UNKNOWN_CUSTOMER, body={"products": [{"product_id": "P-5", "score": 9.0}]})
    rescored = api("PATCH", UNKNOWN_CUSTOMER, body={"products": [{"product_id": "P-0", "score": 9.0}]})
    # Then the first is a 422 naming the limit and writes nothing; the second still works
    assert_rejected(over, 422)
    assert over.body["error"]["details"] == {"max_items": 5}
    assert rescored.status == 200, rescored.body
    assert rescored.body["items"][0] == {"product_id": "P-0", "score": 9.0, "source": "manual", "name": None}
    assert stored(aws) != before  # the rescore was written ...
    assert rescored.body["version"] == 2  # ... as the only write after the first
