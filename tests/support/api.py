"""One way to call the service in tests: through each operation's Lambda handler (an API Gateway v2 event) or
through the composed local app (``TestClient``); plus a raw look at the stored item."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from recsys.handler import LambdaHandler
from recsys.operations import OPERATIONS, Operation
from recsys_tools.events import FakeLambdaContext, http_api_event

TABLE = "recommendations-test"
LIST_OPERATIONS = {op.method: op for op in OPERATIONS if op.route.endswith("/recommendations")}


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]


Api = Callable[..., Response]


def raw_item(client: Any, customer_id: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = client.get_item(
        TableName=TABLE, Key={"customer_id": {"S": customer_id}}, ConsistentRead=True
    ).get("Item")
    return item


def via_lambda(handlers: dict[str, LambdaHandler]) -> Api:
    def call(method: str, customer_id: str, **request: Any) -> Response:
        op: Operation = LIST_OPERATIONS[method]
        context: Any = FakeLambdaContext()
        result = handlers[op.name](http_api_event(op, customer_id, **request), context)
        headers = {k.lower(): v for k, v in result.get("headers", {}).items()}
        return Response(result["statusCode"], json.loads(result["body"]), headers)

    return call


def via_local_app(client: TestClient) -> Api:
    def call(
        method: str, customer_id: str, *, query: Any = None, body: Any = None, raw_body: str | None = None
    ) -> Response:
        content = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        response = client.request(
            method,
            LIST_OPERATIONS[method].path(customer_id),
            params=query,
            content=content,
            headers={"content-type": "application/json"},
        )
        return Response(response.status_code, response.json(), dict(response.headers))

    return call


def imported_handler(operation: str) -> LambdaHandler:
    """The handler a function's ImageConfig.Command names (functions.<operation>.app.handler), initialised afresh
    from the current environment, as a new Lambda container would."""
    handler: LambdaHandler = importlib.reload(importlib.import_module(f"functions.{operation}.app")).handler
    return handler
