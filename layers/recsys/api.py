"""HTTP API: one APIRouter per operation, one error shape, and ``create_app`` composing any of them.

The endpoints are ``async`` and call the (blocking) service directly, on the event loop. A Lambda container serves
one request at a time, so a worker thread buys nothing, and it costs: FastAPI runs ``def`` endpoints and dependencies
in anyio's thread pool, whose workers stop when the invocation's task ends under Mangum, so every request started a
thread and handed off twice (~3 ms of a 6 ms warm show here). The local server (uvicorn) thus also serves one request
at a time, like one Lambda container.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys.dependencies import ServiceDep
from recsys.errors import RecsysError, UnavailableError
from recsys.observability import logger
from recsys.schemas import (
    ID_MAX_LENGTH,
    ID_PATTERN,
    DeleteRequest,
    ErrorResponse,
    RecommendationList,
    UpdateRequest,
)

ROUTE = "/customers/{customer_id}/recommendations"
MAX_K = 100  # also bounded by the MAX_K setting at run time

CustomerIdPath = Annotated[
    str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description="Letters, digits and . _ : - (<= 64)")
]
_errors: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (400, 404, 409, 422, 503)}


def _operation(operation_id: str) -> dict[str, Any]:
    return {"response_model": RecommendationList, "responses": _errors, "operation_id": operation_id}


generate_router = APIRouter(tags=["recommendations"])
show_router = APIRouter(tags=["recommendations"])
update_router = APIRouter(tags=["recommendations"])
delete_router = APIRouter(tags=["recommendations"])
ALL_ROUTERS = (generate_router, show_router, update_router, delete_router)


@generate_router.post(ROUTE, **_operation("customer_recommendations"))
async def customer_recommendations(
    customer_id: CustomerIdPath,
    service: ServiceDep,
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many products")] = 20,
    exclude_purchased: Annotated[bool, Query(description="Leave out products the customer already bought")] = False,
) -> RecommendationList:
    """Generate the customer's top-k from the model (popular products for unknown customers) and store them."""
    return service.generate(customer_id, min(k, service.settings.max_k), exclude_purchased)


@show_router.get(ROUTE, **_operation("show_recommendations"))
async def show_recommendations(customer_id: CustomerIdPath, service: ServiceDep) -> RecommendationList:
    """The customer's stored list."""
    return service.show(customer_id)


@update_router.patch(ROUTE, **_operation("update_recommendations"))
async def update_recommendations(
    customer_id: CustomerIdPath, body: UpdateRequest, service: ServiceDep
) -> RecommendationList:
    """Add or rescore products (the model scores those given without a score); kept sorted by score."""
    return service.update(customer_id, body.products)


@delete_router.delete(ROUTE, **_operation("delete_recommendations"))
async def delete_recommendations(
    customer_id: CustomerIdPath, body: DeleteRequest, service: ServiceDep
) -> RecommendationList:
    """Remove products from the list and exclude them from future generations."""
    return service.delete(customer_id, body.product_ids)


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message} | ({"details": details} if details is not None else {})}
    return JSONResponse(body, status_code=status, headers=headers)


def _domain_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RecsysError)
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, UnavailableError) else {}
    return error_response(error.status_code, error.code, error.message, error.details, headers)


def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [{"location": list(e["loc"]), "message": e["msg"], "type": e["type"]} for e in error.errors()]
    if any(p["type"] == "json_invalid" for p in problems):
        return error_response(400, "malformed_json", "The request body is not valid JSON", problems)
    return error_response(422, "validation_error", "The request is not valid", problems)


def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    return error_response(error.status_code, "http_error", str(error.detail), headers=error.headers)


def _unexpected_error(_: Request, error: Exception) -> JSONResponse:
    logger.exception("Unhandled error")
    return error_response(500, "internal_error", "Something went wrong on our side")


def create_app(*routers: APIRouter, docs: bool = True) -> FastAPI:
    """A FastAPI app serving the given routers (all four when none is given)."""
    app = FastAPI(
        title="recsys",
        summary="Personalised product recommendations",
        version="1.0",
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    for router in routers or ALL_ROUTERS:
        app.include_router(router)
    app.add_exception_handler(RecsysError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app
