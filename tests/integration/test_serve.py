"""`recsys serve` (the README's first command, after set-up): /docs and a generate/show round trip over HTTP."""

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

    status, shown = request("GET", f"{served}/customers/{KNOWN_CUSTOMER}/recommendations")
    assert status == 200
    assert shown == generated
