"""One way to call the service in tests: through each operation's Lambda handler (an API Gateway v2 event) or
through the composed local app (``TestClient``); plus a raw look at the stored items.

``api(method, customer_id, ...)`` calls the list route's operation with that method; ``api(operation, ...)`` any
operation (e.g. ``RECORD_PURCHASES``)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from recsys.handler import LambdaHandler
from recsys.operations import LIST_ROUTE, OPERATIONS, Operation
from recsys_tools.events import FakeLambdaContext, http_api_event

TABLE = "recommendations-test"
LIST_OPERATIONS = {op.method: op for op in OPERATIONS if op.route == LIST_ROUTE}


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]


Api = Callable[..., Response]


def raw_item(client: Any, customer_id: str, record: str = "list") -> dict[str, Any] | None:
    """The customer's stored item, ``record`` "list" or "history", as DynamoDB holds it."""
    item: dict[str, Any] | None = client.get_item(
        TableName=TABLE, Key={"customer_id": {"S": customer_id}, "record": {"S": record}}, ConsistentRead=True
    ).get("Item")
    return item


def _operation(method_or_operation: str | Operation) -> Operation:
    if isinstance(method_or_operation, Operation):
        return method_or_operation
    return LIST_OPERATIONS[method_or_operation]


def via_lambda(handlers: dict[str, LambdaHandler]) -> Api:
    def call(method: str | Operation, customer_id: str, **request: Any) -> Response:
        op = _operation(method)
        context: Any = FakeLambdaContext()
        result = handlers[op.name](http_api_event(op, customer_id, **request), context)
        headers = {k.lower(): v for k, v in result.get("headers", {}).items()}
        return Response(result["statusCode"], json.loads(result["body"]), headers)

    return call


def via_local_app(client: TestClient) -> Api:
    def call(
        method: str | Operation, customer_id: str, *, query: Any = None, body: Any = None, raw_body: str | None = None
    ) -> Response:
        op = _operation(method)
        content = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        response = client.request(
            op.method,
            op.path(customer_id),
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
