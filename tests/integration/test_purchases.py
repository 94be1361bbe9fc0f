"""record_purchases end to end, through its Lambda handler and through the local app, on moto's DynamoDB: the history
item it builds, once per order (the orders remembered in the history item, within ORDER_MEMORY_SECONDS and
MAX_REMEMBERED_ORDERS), bounded, under concurrency (threads, and processes on a moto server), on bad input and under
DynamoDB faults."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.retries.standard import ExponentialBackoff
from moto.dynamodb.models import DynamoDBBackend

import recsys.service
from recsys.domain import from_micros
from recsys.errors import ConflictError
from recsys.operations import RECORD_PURCHASES
from recsys.schemas import RecordPurchasesRequest
from recsys.service import RecommendationService, default_service
from recsys.settings import REPO_ROOT, load_settings
from recsys.store import DynamoDBStore, dynamodb_client
from tests.support.api import TABLE, Api, raw_item
from tests.support.data import KNOWN_CUSTOMER
from tests.support.moto_dynamodb import make_conditional_writes_atomic, moto_server, throttled

CUSTOMER = "buyer-1"
MONDAY = datetime(2026, 9, 21, 9, 0, tzinfo=UTC)  # 30 days later is still in the past


def order(order_id: str, *purchases: dict[str, Any], country: str | None = None) -> dict[str, Any]:
    return {"order_id": order_id, "purchases": list(purchases)} | ({"country": country} if country else {})


def bought(product_id: str, at: datetime | None = None, quantity: int | None = None) -> dict[str, Any]:
    return (
        {"product_id": product_id}
        | ({"purchased_at": at.isoformat()} if at else {})
        | ({"quantity": quantity} if quantity is not None else {})
    )


PRODUCT_FIGURES = ("n", "q", "t", "ref", "d30", "d90")  # a stored product's array: purchases, quantity, times, decay


def stored_history(aws: Any, customer_id: str = CUSTOMER) -> dict[str, Any] | None:
    """The history item's attributes and its ``history`` document decoded (each product's figures named)."""
    item = raw_item(aws, customer_id, "history")
    if item is None:
        return None
    assert set(item) == {"customer_id", "record", "history", "version", "expires_at"}
    document = json.loads(item["history"]["S"])
    return {
        "products": {p: dict(zip(PRODUCT_FIGURES, row, strict=True)) for p, row in document["products"].items()},
        "orders": document.get("orders", []),
        "version": int(item["version"]["N"]),
        "country": document.get("country"),
        "updated_at": from_micros(document["updated_at"]),
        "expires_at": int(item["expires_at"]["N"]),
    }


def remembered(aws: Any, customer_id: str = CUSTOMER) -> list[str]:
    """The order ids the customer's history remembers, oldest first."""
    history = stored_history(aws, customer_id)
    return [o[0] for o in history["orders"]] if history else []


def test_recording_creates_then_extends_the_history(api: Api, aws: Any) -> None:
    # When a first order of two products is recorded, one of them twice
    first = api(
        RECORD_PURCHASES,
        CUSTOMER,
        body=order("o-1", bought("A1", MONDAY, 2), bought("A1", MONDAY), bought("B2", MONDAY), country="France"),
    )
    # Then the answer summarises it and the history holds counts, quantities, last times and decayed counts
    assert first.status == 200, first.body
    assert first.body | {"updated_at": None} == {
        "customer_id": CUSTOMER,
        "order_id": "o-1",
        "purchases_recorded": 3,
        "products_in_history": 2,
        "version": 1,
        "updated_at": None,
    }
    t0 = int(MONDAY.timestamp())
    history = stored_history(aws)
    assert history is not None
    assert history["products"]["A1"] == {"n": 2, "q": 3, "t": t0, "d30": 2.0, "d90": 2.0, "ref": t0}
    assert history["country"] == "France"
    assert timedelta(days=89) < datetime.fromtimestamp(history["expires_at"], UTC) - datetime.now(UTC)
    # When a second order, 30 days later, buys A1 again (purchased_at left out: now) and a new product
    later = MONDAY + timedelta(days=30)
    second = api(RECORD_PURCHASES, CUSTOMER, body=order("o-2", bought("A1", later), bought("C3")))
    # Then A1's counts grow and decay exactly, C3 is bought now, the country is kept
    assert second.status == 200, second.body
    assert second.body["version"] == 2
    assert second.body["products_in_history"] == 3
    history = stored_history(aws)
    assert history is not None
    a1 = history["products"]["A1"]
    assert (a1["n"], a1["q"], a1["t"], a1["ref"]) == (3, 4, int(later.timestamp()), int(later.timestamp()))
    assert a1["d30"] == pytest.approx(2.0 * 0.5 + 1)
    assert a1["d90"] == pytest.approx(2.0 * 2 ** (-1 / 3) + 1)
    assert abs(history["products"]["C3"]["t"] - datetime.now(UTC).timestamp()) < 60
    assert history["country"] == "France"
    # And the history remembers both orders with their answers
    # [order_id, payload hash, purchases recorded, products in history, version, recorded at (epoch microseconds)]
    assert [(o[0], *o[2:5], from_micros(o[5])) for o in history["orders"]] == [
        ("o-1", 3, 2, 1, datetime.fromisoformat(first.body["updated_at"])),
        ("o-2", 2, 3, 2, datetime.fromisoformat(second.body["updated_at"])),
    ]
    # And the customer's list item is untouched (there is none)
    assert raw_item(aws, CUSTOMER) is None


def test_a_redelivered_order_is_counted_once_and_gets_the_same_answer(api: Api, aws: Any) -> None:
    body = order("o-7", bought("A1", MONDAY, 5), bought("B2"))  # B2's purchased_at left out: now, each time
    first = api(RECORD_PURCHASES, CUSTOMER, body=body)
    assert first.status == 200, first.body
    item = raw_item(aws, CUSTOMER, "history")
    # When the same order is delivered again, and again
    again = [api(RECORD_PURCHASES, CUSTOMER, body=body) for _ in range(2)]
    # Then each redelivery gets the first answer and nothing is written: the item is as the first delivery left it
    assert [(r.status, r.body) for r in again] == [(200, first.body)] * 2
    assert raw_item(aws, CUSTOMER, "history") == item
    history = stored_history(aws)
    assert history is not None
    assert history["version"] == 1
    assert history["products"]["A1"]["n"] == 1
    # And the same order_id for another customer is another order
    other = api(RECORD_PURCHASES, "buyer-2", body=body)
    assert other.status == 200
    assert other.body["customer_id"] == "buyer-2"
    assert remembered(aws, "buyer-2") == remembered(aws) == ["o-7"]


def test_a_known_order_id_with_other_purchases_is_refused(api: Api, aws: Any) -> None:
    assert api(RECORD_PURCHASES, CUSTOMER, body=order("o-9", bought("A1", MONDAY))).status == 200
    before = raw_item(aws, CUSTOMER, "history")
    # When the order_id comes again with another quantity, another country, or a purchase time it left out
    for body in (
        order("o-9", bought("A1", MONDAY, 2)),
        order("o-9", bought("A1", MONDAY), country="Spain"),
        order("o-9", bought("A1")),
    ):
        response = api(RECORD_PURCHASES, CUSTOMER, body=body)
        # Then it is a 409 naming the order, and nothing changes
        assert response.status == 409, response.body
        assert response.body["error"]["code"] == "order_mismatch"
        assert response.body["error"]["details"] == {"order_id": "o-9"}
    assert raw_item(aws, CUSTOMER, "history") == before


def test_a_new_order_is_one_read_and_one_write_and_a_redelivery_one_read(aws: Any) -> None:
    # Given the service on a DynamoDB client whose calls are counted
    settings = load_settings()
    client = dynamodb_client(settings)
    calls: list[str] = []
    client.meta.events.register("before-parameter-build.dynamodb", lambda model, **_: calls.append(model.name))
    service = default_service(settings, client=client)
    request = RecordPurchasesRequest.model_validate(order("o-1", bought("A1", MONDAY)))
    # When a new order is recorded, then delivered again
    first = service.record_purchases(CUSTOMER, request)
    recorded_with = list(calls)
    again = service.record_purchases(CUSTOMER, request)
    # Then the new order cost a GetItem and a PutItem, the redelivery a GetItem only
    assert recorded_with == ["GetItem", "PutItem"]
    assert calls[len(recorded_with) :] == ["GetItem"]
    assert again == first


def test_a_history_stored_in_the_former_layout_is_still_read(api: Api, aws: Any) -> None:
    # Given a history item written before the ``history`` document: products, orders, country and updated_at as
    # attributes of their own, one order remembered
    body = order("o-1", bought("A1", MONDAY, 2), country="France")
    first = api(RECORD_PURCHASES, CUSTOMER, body=body)
    assert first.status == 200, first.body
    recorded = stored_history(aws)
    assert recorded is not None
    t0 = int(MONDAY.timestamp())
    old = {
        "products": json.dumps({"A1": {"n": 1, "q": 2, "t": t0, "d30": 1.0, "d90": 1.0, "ref": t0}}),
        "orders": json.dumps(recorded["orders"]),
        "country": "France",
        "updated_at": first.body["updated_at"],
    }
    aws.put_item(
        TableName=TABLE,
        Item={"customer_id": {"S": CUSTOMER}, "record": {"S": "history"}, "version": {"N": "1"}}
        | {"expires_at": {"N": "4102444800"}}
        | {name: {"S": value} for name, value in old.items()},
    )
    before = raw_item(aws, CUSTOMER, "history")
    # When its order is delivered again: the first answer, nothing written
    again = api(RECORD_PURCHASES, CUSTOMER, body=body)
    assert (again.status, again.body) == (200, first.body)
    assert raw_item(aws, CUSTOMER, "history") == before
    # And batch generation's Scan reads it
    histories = list(DynamoDBStore(load_settings()).histories())
    assert [(h.products["A1"].quantity, h.country, h.version) for h in histories if h.customer_id == CUSTOMER] == [
        (2, "France", 1)
    ]
    # When a new order comes: it extends the former products, remembers both orders, and is written as a document
    second = api(RECORD_PURCHASES, CUSTOMER, body=order("o-2", bought("A1", MONDAY)))
    assert second.status == 200, second.body
    history = stored_history(aws)
    assert history is not None
    assert history["products"]["A1"] == {"n": 2, "q": 3, "t": t0, "d30": 2.0, "d90": 2.0, "ref": t0}
    assert (history["country"], history["version"]) == ("France", 2)
    assert [o[0] for o in history["orders"]] == ["o-1", "o-2"]
    assert history["updated_at"] == datetime.fromisoformat(second.body["updated_at"])


@pytest.mark.parametrize(
    ("customer_id", "request_args", "status"),
    [
        (CUSTOMER, {"body": order("o-1")}, 422),  # no purchases
        (CUSTOMER, {"body": order("o-1", bought("A1", quantity=0))}, 422),
        (CUSTOMER, {"body": order("o-1", bought("A1", quantity=1_000_001))}, 422),
        (CUSTOMER, {"body": order("o-1", bought("A1")) | {"extra": 1}}, 422),
        (CUSTOMER, {"body": order("o-1", bought("A1") | {"price": 2.5})}, 422),
        (CUSTOMER, {"body": order("o-1", bought("../A1"))}, 422),
        (CUSTOMER, {"body": order("-o", bought("A1"))}, 422),
        (CUSTOMER, {"body": {"purchases": [bought("A1")]}}, 422),  # no order_id
        (CUSTOMER, {"body": order("o-1", bought("A1", datetime.now(UTC) + timedelta(days=2)))}, 422),
        (CUSTOMER, {"body": order("o-1", {"product_id": "A1", "purchased_at": "2026-11-23T09:00:00"})}, 422),  # no zone
        (CUSTOMER, {"body": order("o-1", {"product_id": "A1", "purchased_at": 1700000000})}, 422),
        (CUSTOMER, {"body": order("o-1", {"product_id": "A1", "quantity": "2"})}, 422),
        (CUSTOMER, {"body": order("o-1", bought("A1"), country="x" * 65)}, 422),
        (CUSTOMER, {"body": order("o-1", *[bought(f"P{i}") for i in range(101)])}, 422),
        ("a" * 65, {"body": order("o-1", bought("A1"))}, 422),
        (CUSTOMER, {"raw_body": "{not json"}, 400),
    ],
)
def test_bad_input_is_a_clear_4xx_and_writes_nothing(
    api: Api, aws: Any, customer_id: str, request_args: dict[str, Any], status: int
) -> None:
    response = api(RECORD_PURCHASES, customer_id, **request_args)
    assert response.status == status, response.body
    assert set(response.body) == {"error"}
    assert response.body["error"]["code"] in {"validation_error", "malformed_json"}
    assert response.body["error"]["message"]
    # nothing written: no history (nor order)
    assert stored_history(aws) is None  # CUSTOMER has none seeded


def test_unknown_products_are_recorded_and_generation_still_works(api: Api, aws: Any) -> None:
    # When a known customer buys a product the model has never seen (the catalogue grows between retrains)
    response = api(RECORD_PURCHASES, KNOWN_CUSTOMER, body=order("o-1", bought("NEW-PRODUCT-1"), bought("85123A")))
    # Then it is recorded with the others, beside the customer's seeded history
    assert response.status == 200, response.body
    history = stored_history(aws, KNOWN_CUSTOMER)
    assert history is not None
    assert {"NEW-PRODUCT-1", "85123A"} <= set(history["products"])
    # And the customer's recommendations are generated as before, beside the history
    generated = api("POST", KNOWN_CUSTOMER, query={"k": "5"})
    assert generated.status == 200, generated.body
    assert len(generated.body["items"]) == 5
    assert stored_history(aws, KNOWN_CUSTOMER) == history


def test_the_history_keeps_the_configured_number_of_most_recent_products(
    build_api: Callable[..., Api], aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAX_HISTORY_PRODUCTS=3
    monkeypatch.setenv("MAX_HISTORY_PRODUCTS", "3")
    api = build_api()
    # When 5 products are bought on 5 days, in two orders
    days = [MONDAY + timedelta(days=i) for i in range(5)]
    api(RECORD_PURCHASES, CUSTOMER, body=order("o-1", *[bought(f"P{i}", days[i]) for i in (4, 0, 2)]))
    response = api(RECORD_PURCHASES, CUSTOMER, body=order("o-2", *[bought(f"P{i}", days[i]) for i in (1, 3)]))
    # Then the 3 most recently bought are kept
    assert response.body["products_in_history"] == 3
    history = stored_history(aws)
    assert history is not None
    assert set(history["products"]) == {"P2", "P3", "P4"}


def test_the_history_remembers_the_configured_number_of_most_recent_orders(
    build_api: Callable[..., Api], aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAX_REMEMBERED_ORDERS=3
    monkeypatch.setenv("MAX_REMEMBERED_ORDERS", "3")
    api = build_api()
    # When 4 orders are recorded
    answers = [api(RECORD_PURCHASES, CUSTOMER, body=order(f"o-{i}", bought("A1", MONDAY))).body for i in range(4)]
    # Then the 3 most recent are remembered: a redelivery of one of them gets its first answer
    assert remembered(aws) == ["o-1", "o-2", "o-3"]
    assert api(RECORD_PURCHASES, CUSTOMER, body=order("o-1", bought("A1", MONDAY))).body == answers[1]
    # And a redelivery of the forgotten one counts again, as a new order
    again = api(RECORD_PURCHASES, CUSTOMER, body=order("o-0", bought("A1", MONDAY)))
    assert again.status == 200, again.body
    assert again.body["version"] == 5
    history = stored_history(aws)
    assert history is not None
    assert history["products"]["A1"]["n"] == 5
    assert remembered(aws) == ["o-2", "o-3", "o-0"]


def test_an_order_is_remembered_for_the_configured_time(
    build_api: Callable[..., Api], aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given ORDER_MEMORY_SECONDS=3600, and a clock the test moves
    monkeypatch.setenv("ORDER_MEMORY_SECONDS", "3600")
    api = build_api()
    now = [datetime.now(UTC)]
    monkeypatch.setattr(recsys.service, "utc_now", lambda: now[0])
    body = order("o-1", bought("A1", MONDAY))
    first = api(RECORD_PURCHASES, CUSTOMER, body=body)
    # When it is redelivered just within the hour
    now[0] += timedelta(seconds=3600)
    within = api(RECORD_PURCHASES, CUSTOMER, body=body)
    # Then it gets the first answer
    assert (within.status, within.body) == (200, first.body)
    # When it is redelivered a second later
    now[0] += timedelta(seconds=1)
    later = api(RECORD_PURCHASES, CUSTOMER, body=body)
    # Then it counts again, as a new order, remembered in place of the forgotten one
    assert later.status == 200, later.body
    assert later.body["version"] == 2
    assert datetime.fromisoformat(later.body["updated_at"]) == now[0]
    assert remembered(aws) == ["o-1"]
    # And an order recorded meanwhile forgets the orders recorded before its hour
    now[0] += timedelta(seconds=3601)
    assert api(RECORD_PURCHASES, CUSTOMER, body=order("o-2", bought("B2", MONDAY))).status == 200
    assert remembered(aws) == ["o-2"]


def test_16_concurrent_orders_each_delivered_twice_are_each_counted_once(
    service: RecommendationService, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given moto's conditional writes made atomic, as DynamoDB's are, and enough retries for 16 writers
    make_conditional_writes_atomic(monkeypatch)
    monkeypatch.setenv("WRITE_RETRIES", "20")
    contended = default_service(load_settings())
    orders = [RecordPurchasesRequest.model_validate(order(f"o-{i}", bought("A1"), bought(f"B{i}"))) for i in range(16)]

    # When 16 threads record 16 different orders at once, each delivered twice
    def record(request: RecordPurchasesRequest) -> dict[str, Any] | str:
        try:
            return contended.record_purchases(CUSTOMER, request)
        except ConflictError as error:  # lost every race (20 retries are enough here)
            return error.code

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(record, orders + orders))
    # Then every delivery got an answer, both deliveries of an order the same one, and every order is in the history
    # exactly once: one write each, none lost
    assert all(isinstance(a, dict) for a in answers), answers
    assert answers[:16] == answers[16:]
    assert [a["order_id"] for a in answers[:16] if isinstance(a, dict)] == [f"o-{i}" for i in range(16)]
    history = stored_history(aws)
    assert history is not None
    assert history["products"]["A1"]["n"] == 16 == history["version"]
    assert set(history["products"]) == {"A1"} | {f"B{i}" for i in range(16)}
    assert sorted(remembered(aws)) == sorted(f"o-{i}" for i in range(16))
    # And each answer's version is the write that recorded its order: 16 distinct versions
    assert sorted(a["version"] for a in answers[:16] if isinstance(a, dict)) == list(range(1, 17))


PROCESSES, THREADS = 4, 4


@pytest.fixture
def moto_server_with_atomic_writes(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's DynamoDB server in this process (its conditional writes atomic, as DynamoDB's), the environment pointing
    the service (and child processes) at it."""
    make_conditional_writes_atomic(monkeypatch)
    env = {"TABLE_NAME": TABLE, "MODEL_DIR": str(model_dir), "POWERTOOLS_TRACE_DISABLED": "true"}
    with moto_server(monkeypatch, env) as endpoint:
        yield endpoint


def test_deliveries_of_one_order_racing_in_several_processes_count_it_once(
    moto_server_with_atomic_writes: str,
) -> None:
    # Given 4 processes, each about to deliver the same order from 4 threads, on one DynamoDB (a moto server)
    body = json.dumps(order("o-race", bought("A1", MONDAY, 3), bought("B2", MONDAY)))
    command = [sys.executable, "-m", "tests.support.deliveries", CUSTOMER, body, str(THREADS)]
    children = [
        subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(PROCESSES)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        # When they are released together
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = [json.loads(child.communicate(timeout=120)[0].splitlines()[-1]) for child in children]
    finally:
        for child in children:
            child.kill()
    # Then the deliveries raced, and all 16 got the one answer of the one write that recorded the order
    answers = [answer for result in results for answer in result["answers"]]
    assert sum(result["lost_races"] for result in results), "the deliveries never raced"
    assert len(answers) == PROCESSES * THREADS
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0]["version"] == 1
    assert answers[0]["purchases_recorded"] == 2
    service = default_service(load_settings())
    history = service.store.get_history(CUSTOMER)
    assert history is not None
    assert history.version == 1
    assert (history.products["A1"].purchases, history.products["A1"].quantity) == (1, 3)
    assert [o.order_id for o in history.orders] == ["o-race"]


@pytest.mark.parametrize("failing", ["get_item", "put_item"])
def test_a_failing_dynamodb_is_a_503_records_nothing_and_the_order_can_be_retried(
    api: Api, aws: Any, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    # Given DynamoDB throttling every GetItem (the history's read) or every PutItem (its write), botocore's back-off
    # made instant
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    body = order("o-1", bought("A1", MONDAY))
    with monkeypatch.context() as patch:
        patch.setattr(DynamoDBBackend, failing, throttled)
        # When an order is recorded
        response = api(RECORD_PURCHASES, CUSTOMER, body=body)
    # Then it is a 503 with Retry-After, and neither the purchases nor the order are recorded
    assert response.status == 503, response.body
    assert response.body["error"]["code"] == "unavailable"
    assert int(response.headers["retry-after"]) >= 1
    assert stored_history(aws) is None
    # And once DynamoDB recovers, the client's retry records the order, once
    retried = [api(RECORD_PURCHASES, CUSTOMER, body=body) for _ in range(2)]
    assert [(r.status, r.body["version"]) for r in retried] == [(200, 1), (200, 1)]
    history = stored_history(aws)
    assert history is not None
    assert history["products"]["A1"]["n"] == 1
