"""The Lambda handlers end to end: an HTTP API v2 event through Mangum, FastAPI and Powertools to the store.

Warm latency is measured in this process three ways: with DynamoDB under moto's ``mock_aws``; with DynamoDB replayed
(each operation answered at the HTTP layer with the response moto last gave it, so botocore still serialises, signs
and parses every call but no server runs: DynamoDB at zero latency, without moto's slow response serialiser); and with
the service's store swapped for an in-memory one (no boto3 at all), which leaves the handler, service and model.
record_purchases records a new order on every call (the order remembered in the history item, written with its
purchases: a redelivery would be a cheaper path), for the next of BUYERS customers in turn, each seeded with the
benchmark history: a few orders remembered per customer, as in a day of a shop. One customer taking every order (the
other operations' customer) would carry MAX_REMEMBERED_ORDERS orders in its item after a few hundred calls.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from recsys.artifact import Artifact
from recsys.domain import Purchase, PurchaseHistory
from recsys.handler import make_handler
from recsys.operations import DELETE, GENERATE, OPERATIONS, RECORD_PURCHASES, SHOW, UPDATE
from recsys.service import RecommendationService, default_service
from recsys.settings import Settings
from recsys_tools.bench.timing import Figure, measure
from recsys_tools.events import FakeLambdaContext, http_api_event
from recsys_tools.fakes import InMemoryStore
from recsys_tools.template import environment, function_for, load_template, table_names

TABLE = "recommendations-bench"
REGION = "us-east-1"


def lambda_environment(model_dir: Path, operation: str | None = None) -> dict[str, str]:
    """The environment template.yaml gives the operation's function (only its Globals without ``operation``), on the
    benchmark's table, with MODEL_DIR as the image sets it and moto's fake credentials."""
    template = load_template()
    logical_id = function_for(template, operation).logical_id if operation else None
    return environment(template, logical_id, table_names(template, TABLE)) | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # nosec B105 - moto's dummy credentials
        "AWS_SESSION_TOKEN": "testing",  # nosec B105
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "MODEL_DIR": str(model_dir),
        "POWERTOOLS_METRICS_NAMESPACE": "RecsysBench",
    }


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str], remove: tuple[str, ...] = ("DYNAMODB_ENDPOINT_URL",)) -> Iterator[None]:
    saved = dict(os.environ)
    for name in remove:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


BENCH_CUSTOMER = "bench-customer"
HISTORY_PRODUCTS = 50  # distinct products in the benchmark customer's history (the retail median is about 40)
BUYERS = [f"bench-buyer-{i:03d}" for i in range(100)]  # record_purchases' customers, in turn


def bench_history(model: Artifact, now: int, customer: str = BENCH_CUSTOMER) -> PurchaseHistory:
    """The benchmark customer's history: HISTORY_PRODUCTS products of the catalogue, bought over the last year."""
    products = sorted(model.catalogue)[3 : 3 + HISTORY_PRODUCTS]
    purchases = [Purchase(p, 1 + i % 4, now - (i * 7 + 1) * 86_400) for i, p in enumerate(products)]
    return PurchaseHistory(customer).add(purchases, len(products), "United Kingdom")


def request_events(model: Artifact) -> dict[str, dict[str, Any]]:
    """One request per operation for the benchmark customer, whose history ``bench_history`` seeds (update: two
    products for the model to score; record_purchases: an order of two products, see ``with_order_id``)."""
    customer = BENCH_CUSTOMER
    first, second, third = sorted(model.catalogue)[:3]
    order = {"order_id": "bench-0", "purchases": [{"product_id": first, "quantity": 2}, {"product_id": second}]}
    return {
        GENERATE.name: http_api_event(GENERATE, customer, query={"k": "20"}),
        SHOW.name: http_api_event(SHOW, customer),
        UPDATE.name: http_api_event(
            UPDATE, customer, body={"products": [{"product_id": first}, {"product_id": second}]}
        ),
        DELETE.name: http_api_event(DELETE, customer, body={"product_ids": [third]}),
        RECORD_PURCHASES.name: http_api_event(RECORD_PURCHASES, customer, body=order),
    }


def with_order_id(event: dict[str, Any], order_id: str) -> dict[str, Any]:
    """A record_purchases event for another order (the same order again would be a redelivery: nothing recorded)."""
    return event | {"body": json.dumps(json.loads(event["body"]) | {"order_id": order_id})}


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def _request_key(caller: str, event_name: str, request: Any) -> str:
    """Who calls (the handler being benchmarked), the DynamoDB operation and, for item operations, the item's
    ``record`` (a customer's list and history both answer GetItem, in one call of generate)."""
    body = json.loads(request.body or b"{}")
    record = body.get("Key", body.get("Item", {})).get("record", {}).get("S", "")
    return f"{caller} {event_name.rsplit('.', 1)[-1]} {record}"


@contextlib.contextmanager
def dynamodb_recorded(client: Any, caller: Callable[[], str]) -> Iterator[dict[str, dict[str, Any]]]:
    """The last HTTP response to each kind of DynamoDB request the client makes (``_request_key``; ``caller()`` says
    who calls at the time)."""
    recorded: dict[str, dict[str, Any]] = {}
    sent = [""]  # the key of the request in flight (calls are sequential)

    def remember(event_name: str, request: Any, **_: Any) -> None:
        sent[0] = _request_key(caller(), event_name, request)

    def record(response_dict: dict[str, Any] | None, **_: Any) -> None:
        if response_dict is not None:
            recorded[sent[0]] = response_dict

    client.meta.events.register("before-send.dynamodb", remember)
    client.meta.events.register("response-received.dynamodb", record)
    try:
        yield recorded
    finally:
        client.meta.events.unregister("before-send.dynamodb", remember)
        client.meta.events.unregister("response-received.dynamodb", record)


@contextlib.contextmanager
def dynamodb_replayed(client: Any, recorded: dict[str, dict[str, Any]], caller: Callable[[], str]) -> Iterator[None]:
    """Answer the client's DynamoDB calls with the responses recorded for the same caller and operation (one not
    recorded fails)."""
    from botocore.awsrequest import AWSResponse

    def reply(event_name: str, request: Any, **_: Any) -> AWSResponse:
        response = recorded[_request_key(caller(), event_name, request)]
        return AWSResponse(request.url, response["status_code"], response["headers"], _Body(response["body"]))

    client.meta.events.register_first("before-send.dynamodb", reply)
    try:
        yield
    finally:
        client.meta.events.unregister("before-send.dynamodb", reply)


def _handlers(model_dir: Path, service: Callable[[Settings], RecommendationService]) -> dict[str, Any]:
    """Every operation's handler, each built in its own function's environment (generate/update load the model)."""
    handlers = {}
    for op in OPERATIONS:
        with patched_environ(lambda_environment(model_dir, op.name)):
            handlers[op.name] = make_handler(op.name, service_factory=service)
    return handlers


def warm_handlers(model_dir: Path, *, repeat: int, warmup: int) -> dict[str, dict[str, Figure]]:
    """Per operation: warm end-to-end latency with DynamoDB under moto, replayed, and with the in-memory store."""
    from moto import mock_aws

    from recsys.store import DynamoDBStore, dynamodb_client
    from recsys_tools.local_stack import create_table

    model = Artifact(model_dir)
    events = request_events(model)
    record = events[RECORD_PURCHASES.name]
    orders_by_buyer = [http_api_event(RECORD_PURCHASES, buyer, body=json.loads(record["body"])) for buyer in BUYERS]
    context = FakeLambdaContext()
    orders = itertools.count(1)  # a new order per record_purchases call, in every variant
    current = [""]  # the operation being invoked: the recording and the replay are kept per operation

    def calls(handlers: dict[str, Any]) -> dict[str, Callable[[int], None]]:
        def invoke(operation: str, _: int) -> None:
            current[0] = operation
            event = events[operation]
            if operation == RECORD_PURCHASES.name:
                order = next(orders)
                event = with_order_id(orders_by_buyer[order % len(BUYERS)], f"bench-{order}")
            status = handlers[operation](event, context)["statusCode"]
            if status != 200:
                raise RuntimeError(f"{operation} answered {status}")

        return {op.name: partial(invoke, op.name) for op in OPERATIONS}

    with (
        patched_environ(lambda_environment(model_dir)),
        open(os.devnull, "w") as sink,  # Powertools prints each invocation's metrics (EMF) to stdout
        contextlib.redirect_stdout(sink),
    ):
        settings = Settings()
        client = dynamodb_client(settings)  # one client for every handler, observed by the recorder
        on_dynamodb = _handlers(model_dir, lambda s: default_service(s, client=client))
        now = int(time.time())
        histories = [bench_history(model, now, customer) for customer in (BENCH_CUSTOMER, *BUYERS)]
        with mock_aws():
            create_table(settings)
            for history in histories:
                DynamoDBStore(settings).put_history(history)
            with dynamodb_recorded(client, lambda: current[0]) as recorded:
                figures = {"dynamodb_moto": measure(calls(on_dynamodb), repeat, warmup)}
        # moto stopped: its hook passes, the recording answers
        with dynamodb_replayed(client, recorded, lambda: current[0]):
            figures["dynamodb_replayed"] = measure(calls(on_dynamodb), repeat, warmup)
        memory = InMemoryStore()
        for history in histories:
            memory.put_history(history)
        in_memory = _handlers(model_dir, lambda s: default_service(s, memory))
        figures["in_memory_store"] = measure(calls(in_memory), repeat, warmup)
    return figures
