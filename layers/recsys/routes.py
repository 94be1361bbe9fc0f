"""One router per operation, built from the settings (the API's limits) and a service provider (the seam for fakes).

The endpoints are ``async`` and call the (blocking) service directly, on the event loop. A Lambda container serves
one request at a time, so a worker thread buys nothing, and it costs: FastAPI runs ``def`` endpoints and dependencies
in anyio's thread pool, whose workers stop when the invocation's task ends under Mangum, so every request started a
thread and handed off twice (~3 ms of a 6 ms warm show here). The local server (uvicorn) thus also serves one request
at a time, like one Lambda container.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, some of them local to a builder.
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BeforeValidator

from recsys.errors import ForbiddenError
from recsys.schemas import CustomerIdPath, ErrorResponse, RecommendationList, RecordedPurchases, request_models

if TYPE_CHECKING:
    from recsys.operations import Operation
    from recsys.service import RecommendationService
    from recsys.settings import Settings

ServiceProvider = Callable[[], "RecommendationService"]
ERROR_STATUSES = (400, 403, 404, 409, 422, 503)


def _plain_integer(value: Any) -> Any:
    """A query integer as plain decimal digits only: not ``1_0``, ``+5``, ``5.0`` or `` 5`` (lax int parsing would)."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("expected a plain decimal integer")
    return value


def _plain_boolean(value: Any) -> Any:
    """A query boolean as ``true`` or ``false`` only (lax bool parsing would take 1, yes, on, ...)."""
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise ValueError("expected true or false")
        return value == "true"
    return value


async def _single_query_values(request: Request) -> None:
    """A query parameter named twice is a 422 (the framework would silently take the last). ``async``, like every
    dependency here: FastAPI runs a ``def`` dependency in a worker thread (see the module's docstring)."""
    counts = Counter(name for name, _ in request.query_params.multi_items())
    repeated = sorted(name for name, n in counts.items() if n > 1)
    if repeated:
        raise RequestValidationError(
            [
                {"type": "repeated_parameter", "loc": ("query", name), "msg": "a query parameter may be given once"}
                for name in repeated
            ]
        )


def _scopes(jwt: dict[str, Any]) -> set[str]:
    """The token's scopes: the authoriser's list (set when the route names scopes), else the ``scope``/``scp`` claim."""
    claims = jwt.get("claims") or {}
    listed = jwt.get("scopes") or []
    claimed = claims.get("scope") or claims.get("scp") or ""
    words = claimed.split() if isinstance(claimed, str) else [str(s) for s in claimed]
    return {str(s) for s in listed} | set(words)


def _authorise(settings: "Settings") -> Callable[[Request], Awaitable[None]]:
    """JWT mode: the caller acts only on the customer its token's JWT_CUSTOMER_CLAIM names, unless the token carries
    JWT_ADMIN_SCOPE. The API Gateway authoriser has verified the token; its claims arrive in the event."""

    async def authorise(request: Request) -> None:
        if settings.auth_mode != "JWT":
            return
        event = request.scope.get("aws.event") or {}  # Mangum's: absent locally (no authoriser there)
        jwt = ((event.get("requestContext") or {}).get("authorizer") or {}).get("jwt") or {}
        if settings.jwt_admin_scope is not None and settings.jwt_admin_scope in _scopes(jwt):
            return
        customer_id = request.path_params.get("customer_id")
        claimed = (jwt.get("claims") or {}).get(settings.jwt_customer_claim)
        if claimed is None or str(claimed) != customer_id:
            raise ForbiddenError("This token may not act on this customer", {"claim": settings.jwt_customer_claim})

    return authorise


def _router(
    op: "Operation",
    settings: "Settings",
    summary: str,
    response: type[Any] = RecommendationList,
    tag: str = "recommendations",
) -> tuple[APIRouter, Callable[[Any], Any]]:
    """An empty router and the decorator that adds ``op``'s endpoint to it."""
    router = APIRouter(tags=[tag])
    decorator = router.api_route(
        op.route,
        methods=[op.method],
        response_model=response,
        responses={status: {"model": ErrorResponse} for status in ERROR_STATUSES},
        operation_id=op.name,
        summary=summary,
        dependencies=[Depends(_authorise(settings)), Depends(_single_query_values)],
    )
    return router, decorator


def generate(op: "Operation", settings: "Settings", service: ServiceProvider) -> APIRouter:
    router, endpoint = _router(op, settings, "Generate and store the customer's recommendations")
    K = Annotated[int, BeforeValidator(_plain_integer), Query(ge=1, le=settings.max_k, description="How many products")]
    ExcludePurchased = Annotated[
        bool,
        BeforeValidator(_plain_boolean),
        Query(description="Leave out products the customer already bought: true or false"),
    ]

    @endpoint
    async def customer_recommendations(
        customer_id: CustomerIdPath, k: K = settings.default_k, exclude_purchased: ExcludePurchased = False
    ) -> RecommendationList:
        """Top-k from the model (popular products for customers it cannot personalise), stored and returned."""
        return RecommendationList.model_validate(service().generate(customer_id, k, exclude_purchased))

    return router


def show(op: "Operation", settings: "Settings", service: ServiceProvider) -> APIRouter:
    router, endpoint = _router(op, settings, "Show the customer's stored recommendations")

    @endpoint
    async def show_recommendations(customer_id: CustomerIdPath) -> RecommendationList:
        """The customer's stored list."""
        return RecommendationList.model_validate(service().show(customer_id))

    return router


def update(op: "Operation", settings: "Settings", service: ServiceProvider) -> APIRouter:
    router, endpoint = _router(op, settings, "Add or rescore products in the customer's list")
    UpdateRequest = request_models(settings).update

    @endpoint
    async def update_recommendations(customer_id: CustomerIdPath, body: UpdateRequest) -> RecommendationList:  # type: ignore[valid-type]
        """Add or rescore products (the model scores those given without a score); kept sorted by score."""
        return RecommendationList.model_validate(service().update(customer_id, body.products))  # type: ignore[attr-defined]

    return router


def delete(op: "Operation", settings: "Settings", service: ServiceProvider) -> APIRouter:
    router, endpoint = _router(op, settings, "Remove products from the customer's list")
    DeleteRequest = request_models(settings).delete

    @endpoint
    async def delete_recommendations(customer_id: CustomerIdPath, body: DeleteRequest) -> RecommendationList:  # type: ignore[valid-type]
        """Remove products from the list and exclude them from future generations."""
        return RecommendationList.model_validate(service().delete(customer_id, body.product_ids))  # type: ignore[attr-defined]

    return router


def record_purchases(op: "Operation", settings: "Settings", service: ServiceProvider) -> APIRouter:
    router, endpoint = _router(
        op, settings, "Record an order's purchases in the customer's history", RecordedPurchases, "history"
    )
    RecordPurchasesRequest = request_models(settings).record_purchases

    @endpoint
    async def record_purchases(customer_id: CustomerIdPath, body: RecordPurchasesRequest) -> RecordedPurchases:  # type: ignore[valid-type]
        """Add the purchases to the customer's history, once per order_id: a redelivered order gets the first answer
        and changes nothing. Products the model does not know yet are recorded too."""
        return RecordedPurchases.model_validate(service().record_purchases(customer_id, body))

    return router
