"""API Gateway HTTP API (payload v2) events and a Lambda context, generated from the operation registry rather than
pasted. Used by the tests, `recsys bench` and the `infra/events` generator to invoke the handlers as API Gateway does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from recsys.operations import Operation


def http_api_event(
    op: Operation,
    customer_id: str,
    *,
    query: Mapping[str, str | list[str]] | None = None,
    body: Any = None,
    raw_body: str | None = None,
    user_agent: str = "recsys",
    jwt_claims: dict[str, Any] | None = None,
    jwt_scopes: list[str] | None = None,
) -> dict[str, Any]:
    """``query`` values may be lists (a repeated parameter); ``jwt_claims``/``jwt_scopes``: what a JWT authoriser
    puts in ``requestContext.authorizer.jwt`` (none: an IAM-authorised call)."""
    path, method = op.path(customer_id), op.method
    text = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": op.route_key,
        "rawPath": path,
        "rawQueryString": urlencode(query or {}, doseq=True),
        "headers": {"content-type": "application/json", "host": "api.example.com", "user-agent": user_agent},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": user_agent,
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": op.route_key,
            "stage": "$default",
            "time": "30/Nov/2026:00:00:00 +0000",
            "timeEpoch": 1796083200000,
        },
        "pathParameters": {"customer_id": customer_id},
        "isBase64Encoded": False,
    }
    if query:  # API Gateway joins a repeated parameter's values with commas here
        event["queryStringParameters"] = {k: v if isinstance(v, str) else ",".join(v) for k, v in query.items()}
    if jwt_claims is not None or jwt_scopes is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": jwt_claims or {}, "scopes": jwt_scopes}}
    if text is not None:
        event["body"] = text
    return event


@dataclass
class FakeLambdaContext:
    """The attributes Powertools and Mangum read from a Lambda context."""

    function_name: str = "recsys-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:recsys-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/recsys-test"
    log_stream_name: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
