"""The four recommendation-list Lambda handlers end to end: an HTTP API v2 event through Mangum, FastAPI and
Powertools to the store.

Warm latency is measured in this process three ways: with DynamoDB under moto's ``mock_aws``; with DynamoDB replayed
(each operation answered at the HTTP layer with the response moto last gave it, so botocore still serialises, signs
and parses every call but no server runs: DynamoDB at zero latency, without moto's slow response serialiser); and with
the service's store swapped for an in-memory one (no boto3 at all), which leaves the handler, service and model.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from recsys.artifact import Artifact
from recsys.handler import make_handler
from recsys.operations import DELETE, GENERATE, SHOW, UPDATE
from recsys.service import ListStore, RecommendationService, default_service
from recsys.settings import Settings
from recsys_tools.bench.timing import Figure, measure
from recsys_tools.events import FakeLambdaContext, http_api_event
from recsys_tools.fakes import InMemoryStore
from recsys_tools.template import environment, function_for, load_template, table_names

TABLE = "recommendations-bench"
IDEMPOTENCY_TABLE = "recommendations-bench-idempotency"
# record_purchases is not benchmarked yet: its idempotency layer makes its own DynamoDB calls, which the replayed and
# in-memory variants would need a stand-in for (recsys_tools.fakes.InMemoryLedger is one)
BENCHED = (GENERATE, SHOW, UPDATE, DELETE)
REGION = "us-east-1"


def lambda_environment(model_dir: Path, operation: str | None = None) -> dict[str, str]:
    """The environment template.yaml gives the operation's function (only its Globals without ``operation``), on the
    benchmark's table, with MODEL_DIR as the image sets it and moto's fake credentials."""
    template = load_template()
    logical_id = function_for(template, operation).logical_id if operation else None
    return environment(template, logical_id, table_names(template, TABLE, IDEMPOTENCY_TABLE)) | {
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


def request_events(model: Artifact) -> dict[str, dict[str, Any]]:
    """One request per operation for a customer the model knows (update: two products for the model to score)."""
    customer = min(model.customers)
    first, second, third = sorted(model.catalogue)[:3]
    return {
        GENERATE.name: http_api_event(GENERATE, customer, query={"k": "20"}),
        SHOW.name: http_api_event(SHOW, customer),
        UPDATE.name: http_api_event(
            UPDATE, customer, body={"products": [{"product_id": first}, {"product_id": second}]}
        ),
        DELETE.name: http_api_event(DELETE, customer, body={"product_ids": [third]}),
    }


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


@contextlib.contextmanager
def dynamodb_recorded(client: Any) -> Iterator[dict[str, dict[str, Any]]]:
    """The last HTTP response of each DynamoDB operation the client makes, by operation name."""
    recorded: dict[str, dict[str, Any]] = {}

    def record(event_name: str, response_dict: dict[str, Any] | None, **_: Any) -> None:
        if response_dict is not None:
            recorded[event_name.rsplit(".", 1)[-1]] = response_dict

    client.meta.events.register("response-received.dynamodb", record)
    try:
        yield recorded
    finally:
        client.meta.events.unregister("response-received.dynamodb", record)


@contextlib.contextmanager
def dynamodb_replayed(client: Any, recorded: dict[str, dict[str, Any]]) -> Iterator[None]:
    """Answer the client's DynamoDB calls with the recorded responses (an operation not recorded fails)."""
    from botocore.awsrequest import AWSResponse

    def reply(event_name: str, request: Any, **_: Any) -> AWSResponse:
        response = recorded[event_name.rsplit(".", 1)[-1]]
        return AWSResponse(request.url, response["status_code"], response["headers"], _Body(response["body"]))

    client.meta.events.register_first("before-send.dynamodb", reply)
    try:
        yield
    finally:
        client.meta.events.unregister("before-send.dynamodb", reply)


def _handlers(model_dir: Path, store: Callable[[Settings], ListStore]) -> dict[str, Any]:
    """Every operation's handler, each built in its own function's environment (generate/update load the model)."""
    handlers = {}
    for op in BENCHED:
        with patched_environ(lambda_environment(model_dir, op.name)):

            def service(settings: Settings) -> RecommendationService:
                return default_service(settings, store(settings))

            handlers[op.name] = make_handler(op.name, service_factory=service)
    return handlers


def warm_handlers(model_dir: Path, *, repeat: int, warmup: int) -> dict[str, dict[str, Figure]]:
    """Per operation: warm end-to-end latency with DynamoDB under moto, replayed, and with the in-memory store."""
    from moto import mock_aws

    from recsys.store import DynamoDBStore, dynamodb_client
    from recsys_tools.local_stack import create_table

    events = request_events(Artifact(model_dir))
    context = FakeLambdaContext()

    def calls(handlers: dict[str, Any]) -> dict[str, Callable[[int], None]]:
        def invoke(operation: str, _: int) -> None:
            status = handlers[operation](events[operation], context)["statusCode"]
            if status != 200:
                raise RuntimeError(f"{operation} answered {status}")

        return {op.name: partial(invoke, op.name) for op in BENCHED}

    with (
        patched_environ(lambda_environment(model_dir)),
        open(os.devnull, "w") as sink,  # Powertools prints each invocation's metrics (EMF) to stdout
        contextlib.redirect_stdout(sink),
    ):
        settings = Settings()
        client = dynamodb_client(settings)  # one client for every handler, observed by the recorder
        on_dynamodb = _handlers(model_dir, lambda s: DynamoDBStore(s, client))
        with mock_aws():
            create_table(settings)
            with dynamodb_recorded(client) as recorded:
                figures = {"dynamodb_moto": measure(calls(on_dynamodb), repeat, warmup)}
        with dynamodb_replayed(client, recorded):  # moto stopped: its hook passes, the recording answers
            figures["dynamodb_replayed"] = measure(calls(on_dynamodb), repeat, warmup)
        memory = InMemoryStore()
        figures["in_memory_store"] = measure(calls(_handlers(model_dir, lambda _: memory)), repeat, warmup)
    return figures
