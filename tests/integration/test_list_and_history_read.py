"""generate and update read the customer's list and history with one consistent Query (issue 12): the same items
as the two GetItems, one DynamoDB read per attempt, a lost race re-read by the same Query, and the same 503s."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.retries.standard import ExponentialBackoff
from botocore.stub import Stubber
from moto.dynamodb.models import DynamoDBBackend

from recsys import budget
from recsys.domain import Purchase, PurchaseHistory, Recommendation, RecommendationList
from recsys.errors import UnavailableError
from recsys.handler import make_handler
from recsys.operations import GENERATE, UPDATE
from recsys.service import default_service
from recsys.settings import load_settings
from recsys.store import DynamoDBStore, dynamodb_client
from recsys_tools.events import FakeLambdaContext, http_api_event
from recsys_tools.fakes import InMemoryStore
from tests.support.api import raw_item
from tests.support.data import KNOWN_CUSTOMER
from tests.support.moto_dynamodb import throttled


def calls(client: Any) -> list[str]:
    """The DynamoDB operations ``client`` makes from now on, in order (one entry per call, not per attempt)."""
    made: list[str] = []
    client.meta.events.register("before-parameter-build.dynamodb", lambda model, **_: made.append(model.name))
    return made


def stored_list(store: DynamoDBStore | InMemoryStore, customer_id: str) -> RecommendationList:
    items = (Recommendation("MANUAL-1", 2.0, "manual"), Recommendation("MANUAL-2", 1.0, "manual", "a name"))
    return store.put(RecommendationList(customer_id, items=items, excluded=("GONE-1",), model_version="m1"))


def stored_history(store: DynamoDBStore | InMemoryStore, customer_id: str) -> PurchaseHistory:
    purchases = [Purchase("85123A", 6, 1_700_000_000), Purchase("71053", 1, 1_700_100_000)]
    return store.put_history(PurchaseHistory(customer_id).add(purchases, 500, "United Kingdom"))


@pytest.mark.parametrize("store_kind", ["dynamodb", "in_memory"])
@pytest.mark.parametrize(("has_list", "has_history"), [(False, False), (True, False), (False, True), (True, True)])
def test_the_list_and_the_history_read_together_are_what_each_read_alone_gives(
    aws: Any, store_kind: str, has_list: bool, has_history: bool
) -> None:
    # Given a customer with or without a list and a history (the DynamoDB store and its in-memory fake)
    store = DynamoDBStore(load_settings()) if store_kind == "dynamodb" else InMemoryStore()
    customer = f"both-{has_list}-{has_history}"
    listed = stored_list(store, customer) if has_list else None
    history = stored_history(store, customer) if has_history else None
    stored_list(store, f"{customer}-other")  # another customer's items are not read
    # When both are read together
    both = store.get_with_history(customer)
    # Then they are what was written, and what the single reads give
    assert both == (listed, history)
    assert both == (store.get(customer), store.get_history(customer))


def test_the_query_follows_every_page(aws: Any) -> None:
    # Given DynamoDB answering the customer's Query in two pages (it pages at 1 MB), with the items as stored
    settings = load_settings()
    store = DynamoDBStore(settings, dynamodb_client(settings))
    listed, history = stored_list(store, "c-1"), stored_history(store, "c-1")
    list_item, history_item = raw_item(aws, "c-1", "list"), raw_item(aws, "c-1", "history")
    assert list_item is not None
    assert history_item is not None
    query = {
        "TableName": settings.table_name,
        "KeyConditionExpression": "customer_id = :c",
        "ExpressionAttributeValues": {":c": {"S": "c-1"}},
        "ConsistentRead": True,
    }
    last = {"customer_id": history_item["customer_id"], "record": history_item["record"]}
    with Stubber(store.client) as stub:
        stub.add_response("query", {"Items": [history_item], "LastEvaluatedKey": last}, query)
        stub.add_response("query", {"Items": [list_item]}, query | {"ExclusiveStartKey": last})
        # When both are read
        both = store.get_with_history("c-1")
        stub.assert_no_pending_responses()
    # Then the items of both pages are read
    assert both == (listed, history)


@pytest.mark.parametrize("operation", [GENERATE, UPDATE])
def test_generate_and_update_read_once_with_one_query_and_write_once(aws: Any, operation: Any) -> None:
    # Given a customer with a history and a list, and the function's handler on a client the test watches
    settings = load_settings()
    client = dynamodb_client(settings)
    stored_list(DynamoDBStore(settings), KNOWN_CUSTOMER)
    handler = make_handler(operation.name, service_factory=lambda s: default_service(s, client=client))
    body = {"products": [{"product_id": "MANUAL-3", "score": 0.5}]} if operation is UPDATE else None
    made = calls(client)
    # When the list is generated / updated
    context: Any = FakeLambdaContext()
    response = handler(http_api_event(operation, KNOWN_CUSTOMER, body=body), context)
    # Then one Query read the list and the history, and one conditional put wrote the list
    assert response["statusCode"] == 200, response
    assert made == ["Query", "PutItem"]


def test_a_lost_race_rereads_with_the_query_and_keeps_the_other_writers_change(aws: Any) -> None:
    # Given a stored list, and another writer that excludes a product between generate's read and its write
    settings = load_settings()
    client = dynamodb_client(settings)
    store = DynamoDBStore(settings)
    stored_list(store, KNOWN_CUSTOMER)
    service = default_service(settings, client=client)
    first = service.generate(KNOWN_CUSTOMER, k=3).items[0].product_id
    interfered: list[bool] = []

    def other_writer(model: Any, **_: Any) -> None:
        if model.name == "PutItem" and not interfered:
            interfered.append(True)
            current = store.get(KNOWN_CUSTOMER)
            assert current is not None
            store.put(current.evolve(excluded=(*current.excluded, first)))

    client.meta.events.register("before-parameter-build.dynamodb", other_writer)
    made = calls(client)
    # When the list is generated again
    generated = service.generate(KNOWN_CUSTOMER, k=3)
    # Then the first write lost the race, the list was read again by the same Query, and the other writer's
    # exclusion holds in what was written
    assert made == ["Query", "PutItem", "Query", "PutItem"]
    assert first not in [item.product_id for item in generated.items]
    assert first in generated.excluded
    assert generated.version == 4  # stored_list, the first generate, the other writer, this generate


@pytest.mark.parametrize("operation", [GENERATE, UPDATE])
def test_a_throttled_query_answers_503_with_retry_after_after_every_attempt(
    aws: Any, monkeypatch: pytest.MonkeyPatch, operation: Any
) -> None:
    # Given DynamoDB throttling every Query, botocore's back-off made instant
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    settings = load_settings()
    client = dynamodb_client(settings)
    attempts: list[int] = []
    client.meta.events.register("before-send.dynamodb.Query", lambda **_: attempts.append(1))
    monkeypatch.setattr(DynamoDBBackend, "query", throttled)
    handler = make_handler(operation.name, service_factory=lambda s: default_service(s, client=client))
    body = {"products": [{"product_id": "MANUAL-3", "score": 0.5}]} if operation is UPDATE else None
    # When the list is generated / updated
    context: Any = FakeLambdaContext()
    response = handler(http_api_event(operation, KNOWN_CUSTOMER, body=body), context)
    # Then 503 with Retry-After, after every configured attempt, and nothing written
    assert response["statusCode"] == 503, response
    assert int(response["headers"]["retry-after"]) >= 1
    assert len(attempts) == settings.dynamodb_max_attempts
    assert DynamoDBStore(settings).get(KNOWN_CUSTOMER) is None


def test_the_query_is_not_attempted_when_the_request_budget_has_no_room_for_it(aws: Any) -> None:
    # Given a request whose time budget is smaller than one DynamoDB attempt
    settings = load_settings()
    client = dynamodb_client(settings)
    sent: list[int] = []
    client.meta.events.register("before-send.dynamodb", lambda **_: sent.append(1))  # after the budget's hook
    store = DynamoDBStore(settings, client)
    # When the list and history are read; Then the store answers unavailable without sending the Query
    with budget.within(settings.dynamodb_attempt_seconds / 2), pytest.raises(UnavailableError, match="in time"):
        store.get_with_history(KNOWN_CUSTOMER)
    assert sent == []
