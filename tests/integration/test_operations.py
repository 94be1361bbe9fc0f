"""The four operations end to end, through each Lambda handler and through the local app, on moto's DynamoDB."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recsys.recommender import Recommender
from recsys.settings import REPO_ROOT
from recsys_tools.bench.handlers import lambda_environment
from tests.support.api import Api, raw_item
from tests.support.data import KNOWN_CUSTOMER, UNKNOWN_CUSTOMER, SliceHistories


def ids(body: dict[str, Any]) -> list[str]:
    return [item["product_id"] for item in body["items"]]


def served(recommender: Recommender, histories: SliceHistories, customer_id: str) -> list[tuple[str, float]]:
    """What the model ranks for the customer's seeded history, every product it ranks."""
    history = histories.by_customer[customer_id]
    ranked = recommender.recommend(history.products, history.country, time.time())
    assert ranked is not None
    return ranked.top(10_000)


def test_generate_stores_and_returns_the_models_top_k(
    recommender: Recommender, histories: SliceHistories, api: Api, aws: Any
) -> None:
    # When the list of a customer with a purchase history is generated
    response = api("POST", KNOWN_CUSTOMER, query={"k": "5"})
    # Then the model's top 5 come back, scored best first, named, versioned, and are stored
    assert response.status == 200, response.body
    body = response.body
    assert len(body["items"]) == 5
    assert {item["source"] for item in body["items"]} == {"model"}
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(item["name"] for item in body["items"])
    assert body["model_version"] == recommender.version
    assert body["version"] == 1
    expected = [p for p, _ in served(recommender, histories, KNOWN_CUSTOMER)[:5]]
    assert ids(body) == expected
    stored = raw_item(aws, KNOWN_CUSTOMER)
    assert stored is not None
    assert [i["product_id"] for i in json.loads(stored["items"]["S"])] == expected
    expires = datetime.fromtimestamp(int(stored["expires_at"]["N"]), UTC)
    assert timedelta(days=89) < expires - datetime.now(UTC) <= timedelta(days=90)


def test_show_returns_the_stored_list_and_404_with_a_hint_when_none(api: Api) -> None:
    missing = api("GET", KNOWN_CUSTOMER)
    assert missing.status == 404
    assert missing.body["error"]["code"] == "not_found"
    assert "POST" in missing.body["error"]["details"]["hint"]

    generated = api("POST", KNOWN_CUSTOMER).body
    shown = api("GET", KNOWN_CUSTOMER)
    assert shown.status == 200
    assert shown.body == generated
    assert len(generated["items"]) == 20  # the default k


def test_unknown_customer_gets_popular_products(recommender: Recommender, api: Api) -> None:
    response = api("POST", UNKNOWN_CUSTOMER, query={"k": "3"})
    assert response.status == 200
    assert {item["source"] for item in response.body["items"]} == {"popular"}
    assert ids(response.body) == [p for p, _ in recommender.popular().top(3)]


def test_regenerate_after_delete_does_not_bring_deleted_products_back(api: Api) -> None:
    first = ids(api("POST", KNOWN_CUSTOMER, query={"k": "10"}).body)
    deleted = first[:3]
    after_delete = api("DELETE", KNOWN_CUSTOMER, body={"product_ids": deleted})
    assert after_delete.status == 200
    assert ids(after_delete.body) == first[3:]

    regenerated = ids(api("POST", KNOWN_CUSTOMER, query={"k": "10"}).body)
    assert not set(deleted) & set(regenerated)
    assert regenerated[:7] == first[3:]
    assert len(regenerated) == 10


def test_update_scores_equal_the_models_scores_and_the_list_stays_sorted(
    recommender: Recommender, histories: SliceHistories, api: Api
) -> None:
    recommended = served(recommender, histories, KNOWN_CUSTOMER)
    history = histories.by_customer[KNOWN_CUSTOMER]
    api("POST", KNOWN_CUSTOMER, query={"k": "5"})
    extra = [p for p, _ in recommended[30:33]]  # ranked lower: not in the top 5

    response = api("PATCH", KNOWN_CUSTOMER, body={"products": [{"product_id": p} for p in extra]})

    assert response.status == 200, response.body
    by_id = {item["product_id"]: item for item in response.body["items"]}
    scores = recommender.score(history.products, history.country, time.time(), extra)
    assert scores is not None
    expected = dict(zip(extra, scores, strict=True))
    for product_id, score in expected.items():
        assert by_id[product_id]["source"] == "model"
        assert math.isclose(by_id[product_id]["score"], score, rel_tol=1e-5)
        assert math.isclose(score, dict(recommended)[product_id], rel_tol=1e-4, abs_tol=1e-5)
    scores = [item["score"] for item in response.body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert len(scores) == 8
    assert response.body["version"] == 2


def test_update_merges_without_duplicates_and_keeps_given_scores(api: Api) -> None:
    top = ids(api("POST", KNOWN_CUSTOMER, query={"k": "4"}).body)
    response = api("PATCH", KNOWN_CUSTOMER, body={"products": [{"product_id": top[0], "score": -100.0}]})
    items = response.body["items"]
    assert ids(response.body).count(top[0]) == 1
    assert items[-1] == {"product_id": top[0], "score": -100.0, "source": "manual", "name": items[-1]["name"]}
    assert len(items) == 4


def test_re_adding_a_deleted_product_lifts_its_exclusion(api: Api) -> None:
    first = ids(api("POST", KNOWN_CUSTOMER, query={"k": "5"}).body)
    api("DELETE", KNOWN_CUSTOMER, body={"product_ids": [first[0]]})
    readded = api("PATCH", KNOWN_CUSTOMER, body={"products": [{"product_id": first[0]}]})
    assert first[0] in ids(readded.body)
    assert ids(api("POST", KNOWN_CUSTOMER, query={"k": "5"}).body) == first


def test_unknown_product_is_422_naming_it_and_nothing_is_written(api: Api, aws: Any) -> None:
    api("POST", KNOWN_CUSTOMER, query={"k": "5"})
    before = raw_item(aws, KNOWN_CUSTOMER)

    response = api("PATCH", KNOWN_CUSTOMER, body={"products": [{"product_id": "85123A"}, {"product_id": "NOPE1"}]})

    assert response.status == 422
    assert response.body["error"]["details"] == {"unknown_product_ids": ["NOPE1"]}
    assert raw_item(aws, KNOWN_CUSTOMER) == before


def test_unknown_product_with_a_score_is_accepted(api: Api) -> None:
    response = api("PATCH", KNOWN_CUSTOMER, body={"products": [{"product_id": "NEW-1", "score": 1.5}]})
    assert response.status == 200
    assert response.body["items"] == [{"product_id": "NEW-1", "score": 1.5, "source": "manual", "name": None}]


def test_delete_without_a_list_is_404_and_update_creates_the_list(api: Api, aws: Any) -> None:
    assert api("DELETE", KNOWN_CUSTOMER, body={"product_ids": ["85123A"]}).status == 404
    assert raw_item(aws, KNOWN_CUSTOMER) is None

    created = api("PATCH", KNOWN_CUSTOMER, body={"products": [{"product_id": "85123A"}]})
    assert created.status == 200
    assert created.body["version"] == 1
    assert ids(created.body) == ["85123A"]
    assert created.body["items"][0]["name"]


def test_exclude_purchased_leaves_out_what_the_customer_bought(histories: SliceHistories, api: Api) -> None:
    purchased = histories.by_customer[KNOWN_CUSTOMER].products
    assert purchased
    response = api("POST", KNOWN_CUSTOMER, query={"k": "20", "exclude_purchased": "true"})
    assert response.status == 200
    assert not set(ids(response.body)) & purchased.keys()


@pytest.mark.parametrize(
    ("method", "customer_id", "request_args", "status"),
    [
        ("POST", KNOWN_CUSTOMER, {"query": {"k": "0"}}, 422),
        ("POST", KNOWN_CUSTOMER, {"query": {"k": "101"}}, 422),
        ("POST", "a" * 65, {}, 422),
        ("GET", "-starts-with-dash", {}, 422),
        ("PATCH", KNOWN_CUSTOMER, {"raw_body": "{not json"}, 400),
        ("PATCH", KNOWN_CUSTOMER, {"body": {"products": []}}, 422),
        (
            "PATCH",
            KNOWN_CUSTOMER,
            {"body": {"products": [{"product_id": f"P{i}", "score": 1} for i in range(101)]}},
            422,
        ),
        ("PATCH", KNOWN_CUSTOMER, {"body": {"products": [{"product_id": "A1"}, {"product_id": "A1"}]}}, 422),
        ("PATCH", KNOWN_CUSTOMER, {"body": {"products": [{"product_id": "A1", "extra": 1}]}}, 422),
        ("PATCH", KNOWN_CUSTOMER, {"body": {"products": [{"product_id": "A1", "score": "high"}]}}, 422),
        ("DELETE", KNOWN_CUSTOMER, {"body": {"product_ids": "85123A"}}, 422),
    ],
)
def test_bad_input_is_a_clear_4xx_with_the_error_shape_and_writes_nothing(
    api: Api, aws: Any, method: str, customer_id: str, request_args: dict[str, Any], status: int
) -> None:
    response = api(method, customer_id, **request_args)
    assert response.status == status, response.body
    assert set(response.body) == {"error"}
    assert response.body["error"]["code"] in {"validation_error", "malformed_json"}
    assert response.body["error"]["message"]
    assert raw_item(aws, customer_id) is None  # no list written


@pytest.mark.parametrize(
    ("operation", "heavy_modules", "light_modules"),
    [
        ("show_recommendations", (), ("tensorflow", "scann", "aws_xray_sdk")),
        ("delete_recommendations", (), ("tensorflow", "scann", "aws_xray_sdk")),
        ("record_purchases", (), ("tensorflow", "scann", "aws_xray_sdk")),
        ("customer_recommendations", ("tensorflow", "scann", "aws_xray_sdk"), ()),
    ],
)
def test_each_handler_imports_only_what_its_template_environment_needs(
    model_dir: Path, operation: str, heavy_modules: tuple[str, ...], light_modules: tuple[str, ...]
) -> None:
    # Given the environment template.yaml gives the function (show and delete: POWERTOOLS_TRACE_DISABLED)
    env = os.environ | lambda_environment(model_dir, operation)
    # When its handler is imported in a fresh interpreter, as Lambda's init does
    watched = heavy_modules + light_modules
    code = f"import sys, functions.{operation}.app; print(sorted(m for m in {watched} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    # Then the model-less functions load neither TensorFlow nor the X-Ray SDK; generate loads both
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == str(sorted(heavy_modules))
