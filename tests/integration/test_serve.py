"""`recsys serve` (the README's first command, after set-up): /docs, a generate/show round trip and an order recorded
once over HTTP (the embedded DynamoDB has both tables)."""

from __future__ import annotations

import pytest

from tests.support.data import KNOWN_CUSTOMER
from tests.support.local_server import request


@pytest.mark.slow
def test_serve_answers_docs_and_a_generate_show_round_trip(served: str) -> None:
    status, docs = request("GET", f"{served}/docs")
    assert status == 200
    assert b"swagger" in docs.lower()

    status, generated = request("POST", f"{served}/customers/{KNOWN_CUSTOMER}/recommendations?k=5")
    assert status == 200
    assert len(generated["items"]) == 5
    assert {item["source"] for item in generated["items"]} == {"model"}  # the seeded history personalises

    status, shown = request("GET", f"{served}/customers/{KNOWN_CUSTOMER}/recommendations")
    assert status == 200
    assert shown == generated

    order = {"order_id": "serve-1", "purchases": [{"product_id": "85123A", "quantity": 2}]}
    recorded = [request("POST", f"{served}/customers/{KNOWN_CUSTOMER}/purchases", order) for _ in range(2)]
    assert recorded[0][0] == 200
    assert recorded[0][1]["version"] == 2  # the seeded history was version 1
    assert recorded[1] == recorded[0]  # the redelivery: same answer, nothing written
