"""Issue 14, items 1, 4 and 5: every error, the framework's own included, has the documented shape with ``details``
always an object; validation errors are bounded (the first few problems and a count, nothing of the input echoed);
query parameters are as strict as bodies. Through each Lambda handler and the local app (``api``), and the composed
app for what only it can see (unknown routes, other methods on a route, raw bytes)."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recsys.api import MAX_ERRORS_SHOWN, create_app
from recsys.service import RecommendationService
from recsys.settings import load_settings
from tests.support.api import TABLE, Api, Response
from tests.support.data import UNKNOWN_CUSTOMER

LIST_PATH = f"/customers/{UNKNOWN_CUSTOMER}/recommendations"
MAX_ERROR_BYTES = 8_000  # far below Lambda's 6 MB synchronous response limit, whatever the request


def assert_error_shape(status: int, body: Any, code: str | None = None) -> None:
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str)
    assert isinstance(error["details"], dict), error
    if code is not None:
        assert error["code"] == code, (status, body)


@pytest.fixture
def app_client(service: RecommendationService) -> TestClient:
    return TestClient(create_app(load_settings(), lambda: service))


def no_list_written(aws: Any) -> None:
    key = {"customer_id": {"S": UNKNOWN_CUSTOMER}, "record": {"S": "list"}}
    assert "Item" not in aws.get_item(TableName=TABLE, Key=key)


# --- item 4: the framework's errors in the one shape


def test_unknown_route_is_a_404_in_the_error_shape(app_client: TestClient) -> None:
    response = app_client.get("/no/such/route")
    assert response.status_code == 404
    assert_error_shape(404, response.json(), "not_found")


def test_other_methods_are_a_405_naming_every_method_of_the_route(app_client: TestClient) -> None:
    response = app_client.put(LIST_PATH, json={})
    assert response.status_code == 405
    assert_error_shape(405, response.json(), "method_not_allowed")
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "POST", "PATCH", "DELETE"} <= allowed, allowed
    purchases = app_client.get(f"/customers/{UNKNOWN_CUSTOMER}/purchases")
    assert purchases.status_code == 405
    assert purchases.headers["allow"] == "POST"


DEEP = "[" * 10_000 + "]" * 10_000
HUGE_NUMBER = '{"products": [{"product_id": "P-1", "score": 1' + "0" * 5_000 + "}]}"


@pytest.mark.parametrize(
    "raw_body", [DEEP, HUGE_NUMBER, '{"products": [', "\x00"], ids=["deep", "digits", "cut", "nul"]
)
def test_unparseable_bodies_are_malformed_json_with_details(api: Api, aws: Any, raw_body: str) -> None:
    response = api("PATCH", UNKNOWN_CUSTOMER, raw_body=raw_body)
    assert response.status == 400, response.body
    assert_error_shape(400, response.body, "malformed_json")
    no_list_written(aws)


@pytest.mark.parametrize(
    "content",
    [b'{"products": [{"product_id": "\xff\xfe"}]}', gzip.compress(b'{"products": [{"product_id": "P-1"}]}')],
    ids=["invalid-utf8", "gzip"],
)
def test_undecodable_bytes_are_malformed_json_with_details(app_client: TestClient, aws: Any, content: bytes) -> None:
    response = app_client.patch(LIST_PATH, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert_error_shape(400, response.json(), "malformed_json")
    no_list_written(aws)


def test_domain_errors_without_details_carry_an_empty_object(api: Api) -> None:
    missing = api("GET", "nobody-here")  # has details (a hint); the shape holds either way
    assert_error_shape(missing.status, missing.body, "not_found")
    invalid = api("GET", "a" * 65)
    assert invalid.status == 422
    assert_error_shape(422, invalid.body, "validation_error")


# --- item 1: bounded validation errors


def test_many_unknown_fields_give_a_small_bounded_422(api: Api, aws: Any) -> None:
    # 20,000 unknown keys with long names and values: each would be an error echoing its input
    body: dict[str, Any] = {f"unknown-{i}-{'k' * 40}": "v" * 50 for i in range(20_000)}
    body["products"] = [{"product_id": "P-1", "score": 1.0}]
    response = api("PATCH", UNKNOWN_CUSTOMER, body=body)
    assert response.status == 422
    assert_error_shape(422, response.body, "validation_error")
    details = response.body["error"]["details"]
    assert details["error_count"] == 20_000
    assert len(details["errors"]) == MAX_ERRORS_SHOWN
    assert all(set(e) == {"location", "message", "type"} for e in details["errors"])
    assert len(json.dumps(response.body)) < MAX_ERROR_BYTES
    no_list_written(aws)


def test_echoed_text_is_truncated(api: Api) -> None:
    body = {"products": [{"product_id": "P-1", "score": 1.0}], "x" * 100_000: 1}
    response = api("PATCH", UNKNOWN_CUSTOMER, body=body)
    assert response.status == 422
    assert len(json.dumps(response.body)) < MAX_ERROR_BYTES
    problem = response.body["error"]["details"]["errors"][0]
    assert set(problem) == {"location", "message", "type"}
    assert len(problem["location"][-1]) <= 200


# --- item 5: strict query parameters


@pytest.mark.parametrize("k", ["1_0", "+5", "5.0", " 5", "5 ", "0x5", "\u0665", "", "-1"])
def test_k_must_be_a_plain_decimal_integer(api: Api, aws: Any, k: str) -> None:
    response = api("POST", UNKNOWN_CUSTOMER, query={"k": k})
    assert response.status == 422, (k, response.body)
    assert_error_shape(422, response.body, "validation_error")
    no_list_written(aws)


def test_a_plain_k_passes(api: Api) -> None:
    response = api("POST", UNKNOWN_CUSTOMER, query={"k": "5"})
    assert response.status == 200, response.body
    assert len(response.body["items"]) == 5


@pytest.mark.parametrize("value", ["1", "0", "yes", "on", "True", "t", ""])
def test_exclude_purchased_is_true_or_false_only(api: Api, value: str) -> None:
    response = api("POST", UNKNOWN_CUSTOMER, query={"k": "3", "exclude_purchased": value})
    assert response.status == 422, (value, response.body)


@pytest.mark.parametrize("value", ["true", "false"])
def test_exclude_purchased_true_and_false_pass(api: Api, value: str) -> None:
    assert api("POST", UNKNOWN_CUSTOMER, query={"k": "3", "exclude_purchased": value}).status == 200


@pytest.mark.parametrize(
    "query", [{"k": ["5", "7"]}, {"k": ["5", "5"]}, {"k": "3", "exclude_purchased": ["true", "false"]}]
)
def test_a_repeated_query_parameter_is_a_422(api: Api, aws: Any, query: dict[str, Any]) -> None:
    response: Response = api("POST", UNKNOWN_CUSTOMER, query=query)
    assert response.status == 422, response.body
    assert_error_shape(422, response.body, "validation_error")
    assert response.body["error"]["details"]["errors"][0]["type"] == "repeated_parameter"
    no_list_written(aws)
