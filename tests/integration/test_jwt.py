"""Issue 14, item 11: in JWT mode a caller acts only on the customer its token names (JWT_CUSTOMER_CLAIM, default
``sub``), unless the token carries JWT_ADMIN_SCOPE. Tokens are signed here and verified the way the HTTP API's JWT
authoriser does before it puts their claims in the event (requestContext.authorizer.jwt); the calls go through each
operation's Lambda handler on DynamoDB under moto."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from recsys.handler import LambdaHandler, make_handler
from recsys.operations import OPERATIONS, RECORD_PURCHASES
from recsys.service import RecommendationService
from recsys_tools.template import load_template
from tests.support.api import Api, raw_item, via_lambda

KEY = b"test-signing-key"
ADMIN_SCOPE = "recommendations/admin"
OWNER, OTHER = "jwt-owner-1", "jwt-other-2"
PRODUCTS = {"products": [{"product_id": "P-1", "score": 1.0}]}


def lambda_handlers(service: RecommendationService) -> dict[str, LambdaHandler]:
    """Every operation's handler, made (settings read) from the environment as it is now."""
    return {op.name: make_handler(op.name, service_factory=lambda _: service) for op in OPERATIONS}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_token(claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def authorised_claims(token: str) -> dict[str, Any]:
    """What the authoriser passes on: the claims of a token whose signature it verified."""
    header, payload, signature = token.split(".")
    expected = hmac.new(KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(_b64(expected), signature), "the authoriser rejects this token"
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def as_caller(api: Api, claims: dict[str, Any]) -> Api:
    """``api`` with a bearer token carrying ``claims``, as the authoriser hands it on."""
    verified = authorised_claims(signed_token(claims))

    def call(method: Any, customer_id: str, **request: Any) -> Any:
        return api(method, customer_id, jwt_claims=verified, **request)

    return call


@pytest.fixture
def jwt_api(service: RecommendationService, monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.setenv("AUTH_MODE", "JWT")
    monkeypatch.setenv("JWT_ADMIN_SCOPE", ADMIN_SCOPE)
    return via_lambda(lambda_handlers(service))


def test_a_caller_acts_on_its_own_customer(jwt_api: Api) -> None:
    owner = as_caller(jwt_api, {"sub": OWNER})
    assert owner("PATCH", OWNER, body=PRODUCTS).status == 200
    assert owner("GET", OWNER).status == 200
    assert owner("DELETE", OWNER, body={"product_ids": ["P-1"]}).status == 200
    assert owner("POST", OWNER, query={"k": "3"}).status == 200
    order = {"order_id": "o-1", "purchases": [{"product_id": "P-1"}]}
    assert owner(RECORD_PURCHASES, OWNER, body=order).status == 200


def test_another_customers_id_is_a_403_and_nothing_is_written(jwt_api: Api, aws: Any) -> None:
    intruder = as_caller(jwt_api, {"sub": OWNER})
    calls: list[tuple[Any, dict[str, Any]]] = [
        ("GET", {}),
        ("PATCH", {"body": PRODUCTS}),
        ("POST", {"query": {"k": "3"}}),
        ("DELETE", {"body": {"product_ids": ["P-1"]}}),
        (RECORD_PURCHASES, {"body": {"order_id": "o-1", "purchases": [{"product_id": "P-1"}]}}),
    ]
    for method, request in calls:
        response = intruder(method, OTHER, **request)
        assert response.status == 403, (method, response.body)
        assert set(response.body["error"]) == {"code", "message", "details"}
        assert response.body["error"]["code"] == "forbidden"
    assert raw_item(aws, OTHER) is None
    assert raw_item(aws, OTHER, "history") is None


def test_a_token_without_the_claim_or_without_a_token_is_a_403(jwt_api: Api) -> None:
    assert as_caller(jwt_api, {"email": "someone@example.com"})("GET", OWNER).status == 403
    assert jwt_api("GET", OWNER).status == 403  # JWT mode, but no authoriser context: refused


@pytest.mark.parametrize("scopes", [{"scope": f"openid {ADMIN_SCOPE}"}, {"scp": [ADMIN_SCOPE]}])
def test_the_admin_scope_acts_on_any_customer(jwt_api: Api, scopes: dict[str, Any]) -> None:
    admin = as_caller(jwt_api, {"sub": "support-agent"} | scopes)
    assert admin("PATCH", OTHER, body=PRODUCTS).status == 200
    assert admin("GET", OTHER).status == 200


def test_the_admin_scope_from_the_authorisers_list(jwt_api: Api) -> None:
    response = jwt_api("GET", OTHER, jwt_claims={"sub": "agent"}, jwt_scopes=[ADMIN_SCOPE])
    assert response.status == 404  # allowed through; there is no list yet
    assert jwt_api("GET", OTHER, jwt_claims={"sub": "agent"}, jwt_scopes=["other"]).status == 403


def test_the_customer_claim_is_configurable(service: RecommendationService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_MODE", "JWT")
    monkeypatch.setenv("JWT_CUSTOMER_CLAIM", "custom:customer_id")
    api = via_lambda(lambda_handlers(service))
    assert as_caller(api, {"sub": "x", "custom:customer_id": OWNER})("PATCH", OWNER, body=PRODUCTS).status == 200
    assert as_caller(api, {"sub": OWNER})("PATCH", OWNER, body=PRODUCTS).status == 403


def test_iam_mode_ignores_tokens(service: RecommendationService) -> None:
    api = via_lambda(lambda_handlers(service))
    assert as_caller(api, {"sub": OWNER})("PATCH", OTHER, body=PRODUCTS).status == 200


def test_the_template_passes_the_auth_mode_to_every_function() -> None:
    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["AUTH_MODE"] == {"Ref": "AuthMode"}
