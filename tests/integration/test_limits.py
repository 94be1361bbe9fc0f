"""Every limit of the API comes from Settings: change the variable and the API follows (200 inside, 422 outside)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.api import Api
from tests.support.data import KNOWN_CUSTOMER, UNKNOWN_CUSTOMER


def configured(build_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch, **variables: int) -> Api:
    for name, value in variables.items():
        monkeypatch.setenv(name, str(value))
    return build_api()


@pytest.mark.parametrize("max_k", [3, 150])
def test_k_is_bounded_by_max_k(build_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch, max_k: int) -> None:
    # Given MAX_K (below and above the default of 100)
    api = configured(build_api, monkeypatch, MAX_K=max_k, DEFAULT_K=min(20, max_k))
    # When k = MAX_K and k = MAX_K + 1 are asked for
    at_limit = api("POST", UNKNOWN_CUSTOMER, query={"k": str(max_k)})
    over = api("POST", UNKNOWN_CUSTOMER, query={"k": str(max_k + 1)})
    # Then the first returns exactly MAX_K products (popular ones: the catalogue has enough), the second is a 422
    assert at_limit.status == 200, at_limit.body
    assert len(at_limit.body["items"]) == max_k
    assert over.status == 422, over.body
    assert over.body["error"]["code"] == "validation_error"


def test_k_defaults_to_default_k(build_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch) -> None:
    api = configured(build_api, monkeypatch, DEFAULT_K=7)
    response = api("POST", KNOWN_CUSTOMER)
    assert response.status == 200, response.body
    assert len(response.body["items"]) == 7


def test_products_per_request_follow_the_setting(
    build_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAX_PRODUCTS_PER_REQUEST=3
    api = configured(build_api, monkeypatch, MAX_PRODUCTS_PER_REQUEST=3)
    products: list[dict[str, Any]] = [{"product_id": f"P-{i}", "score": float(i)} for i in range(4)]
    # When 3 and then 4 products are sent to update and delete
    three = api("PATCH", UNKNOWN_CUSTOMER, body={"products": products[:3]})
    four = api("PATCH", UNKNOWN_CUSTOMER, body={"products": products})
    delete_four = api("DELETE", UNKNOWN_CUSTOMER, body={"product_ids": [p["product_id"] for p in products]})
    # Then 3 pass and 4 are a 422, for both operations
    assert three.status == 200, three.body
    assert (four.status, delete_four.status) == (422, 422)


def test_exclusions_are_bounded_by_max_excluded(build_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given MAX_EXCLUDED=2 and a list
    api = configured(build_api, monkeypatch, MAX_EXCLUDED=2)
    assert api("PATCH", UNKNOWN_CUSTOMER, body={"products": [{"product_id": "P-0", "score": 1.0}]}).status == 200
    # When 2, then a third product are excluded
    two = api("DELETE", UNKNOWN_CUSTOMER, body={"product_ids": ["X-1", "X-2"]})
    third = api("DELETE", UNKNOWN_CUSTOMER, body={"product_ids": ["X-3"]})
    # Then both succeed: the oldest exclusion is forgotten (tests/integration/test_exclusions.py has the policy)
    assert two.status == 200, two.body
    assert third.status == 200, third.body
