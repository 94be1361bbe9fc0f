"""The events in infra/events, one per function: tests.events' HTTP API (payload 2.0) event, made what API Gateway
delivers for an IAM-signed request (awscurl) with fixed ids, so the files are reproducible; for the batch function,
the segment event its state machine sends.

They serve `sam local invoke <Function> -e infra/events/<op>.json`, the Lambda console and the template-driven invoke
test. Regenerate after editing: `python -m tests.infra.events` (test_events.py fails when the files drift). The ids
exist in the shipped training data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recsys.operations import OPERATIONS, operation
from recsys_tools.events import http_api_event

REPO = Path(__file__).resolve().parents[2]
EVENTS_DIR = REPO / "infra" / "events"

CUSTOMER_ID = "17850"
# one product for the model to score, one with the caller's score
UPDATED_PRODUCTS: list[dict[str, Any]] = [{"product_id": "85123A"}, {"product_id": "71053", "score": 0.9}]
DELETED_PRODUCT_IDS = ["84406B"]
# an order of two products, one with its purchase time (in the past: the API refuses far-future times), one without
RECORDED_ORDER: dict[str, Any] = {
    "order_id": "536365",
    "purchases": [
        {"product_id": "85123A", "quantity": 6, "purchased_at": "2026-11-29T08:26:00+00:00"},
        {"product_id": "71053", "quantity": 6},
    ],
    "country": "United Kingdom",
}

# operation name (recsys.operations) -> (query string parameters, JSON body); every operation needs an entry
REQUESTS: dict[str, tuple[dict[str, str], Any]] = {
    "customer_recommendations": ({"k": "10", "exclude_purchased": "false"}, None),
    "show_recommendations": ({}, None),
    "update_recommendations": ({}, {"products": UPDATED_PRODUCTS}),
    "delete_recommendations": ({}, {"product_ids": DELETED_PRODUCT_IDS}),
    "record_purchases": ({}, RECORDED_ORDER),
}
API_ID = "a1b2c3d4e5"  # made up; the account id is the AWS documentation's placeholder
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
CALLER = "AIDAEXAMPLECALLERID01"
CLIENT_IP = "203.0.113.10"
USER_AGENT = "awscurl/0.36"


def signed_request_event(name: str) -> dict[str, Any]:
    query, body = REQUESTS[name]
    number = [op.name for op in OPERATIONS].index(name) + 1
    event = http_api_event(operation(name), CUSTOMER_ID, query=query or None, body=body)
    event["headers"] = {
        "accept": "application/json",
        "content-length": str(len(event.get("body", ""))),
        **({"content-type": "application/json"} if body is not None else {}),
        "host": DOMAIN,
        "user-agent": USER_AGENT,
        "x-amz-date": "20261130T000000Z",
        "x-amzn-trace-id": f"Root=1-692b8900-0000000000000000000000{number:02d}",
        "x-forwarded-for": CLIENT_IP,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    context = event["requestContext"]
    account = context["accountId"]
    context |= {
        "apiId": API_ID,
        "domainName": DOMAIN,
        "domainPrefix": API_ID,
        "requestId": f"Rq{number:02d}EXAMPLEid=",
        "authorizer": {
            "iam": {
                "accountId": account,
                "callerId": CALLER,
                "cognitoIdentity": None,
                "principalOrgId": None,
                "userArn": f"arn:aws:iam::{account}:user/recommendations-client",
                "userId": CALLER,
            }
        },
    }
    context["http"] |= {"sourceIp": CLIENT_IP, "userAgent": USER_AGENT}
    return event


# the batch function's event: what the state machine's Distributed Map passes it (recsys.batch.SegmentEvent); one
# segment of one is the whole table
BATCH_EVENT: dict[str, Any] = {"segment": 0, "total_segments": 1, "k": 10, "popular_for_unknown": False, "force": False}


def events() -> dict[str, dict[str, Any]]:
    """function folder -> its event: every operation of the registry, and the batch function."""
    return {op.name: signed_request_event(op.name) for op in OPERATIONS} | {"batch_generate": BATCH_EVENT}


def render(event: dict[str, Any]) -> str:
    return json.dumps(event, indent=2) + "\n"


def write(directory: Path = EVENTS_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, event in events().items():
        (directory / f"{name}.json").write_text(render(event), encoding="utf-8")


if __name__ == "__main__":
    write()
