"""`api`: one way to call the service, parametrised over the Lambda handlers and the composed local app."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recsys.api import create_app
from recsys_tools.events import FakeLambdaContext, http_api_event
from tests.conftest import lambda_handler

OPERATIONS = {
    "POST": "customer_recommendations",
    "GET": "show_recommendations",
    "PATCH": "update_recommendations",
    "DELETE": "delete_recommendations",
}


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]


Api = Callable[..., Response]


def _via_lambda(method: str, customer_id: str, **request: Any) -> Response:
    event = http_api_event(method, customer_id, **request)
    result = lambda_handler(OPERATIONS[method])(event, FakeLambdaContext())
    headers = {k.lower(): v for k, v in result.get("headers", {}).items()}
    return Response(result["statusCode"], json.loads(result["body"]), headers)


def _via_local_app(client: TestClient) -> Api:
    def call(
        method: str, customer_id: str, *, query: Any = None, body: Any = None, raw_body: str | None = None
    ) -> Response:
        content = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        response = client.request(
            method,
            f"/customers/{customer_id}/recommendations",
            params=query,
            content=content,
            headers={"content-type": "application/json"},
        )
        return Response(response.status_code, response.json(), dict(response.headers))

    return call


@pytest.fixture(params=["lambda", "local"])
def api(request: pytest.FixtureRequest, aws: Any) -> Api:
    if request.param == "lambda":
        return _via_lambda
    return _via_local_app(TestClient(create_app()))
