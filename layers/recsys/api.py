"""The HTTP API: ``create_app`` composes the operations' routers with one error shape for every error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from recsys.errors import RecsysError
from recsys.observability import logger
from recsys.operations import OPERATIONS, Operation
from recsys.routes import ServiceProvider
from recsys.settings import Settings

MAX_ERRORS_SHOWN = 10  # a validation error lists the first few problems and counts them all
MAX_TEXT = 200  # characters kept of any text a problem echoes (a location part, a message)


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The one error shape: ``{"error": {"code", "message", "details"}}``, ``details`` always an object ({} when there
    is nothing more to say)."""
    body = {"error": {"code": code, "message": message, "details": details if details is not None else {}}}
    return JSONResponse(body, status_code=status, headers=headers)


def _domain_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RecsysError)
    retry_after = getattr(error, "retry_after", None)  # UnavailableError
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return error_response(error.status_code, error.code, error.message, error.details, headers)


def _short(value: Any) -> Any:
    """``value`` as echoed in an error: ints as they are, anything else as text of at most MAX_TEXT characters."""
    if isinstance(value, int):
        return value
    text = str(value)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "\u2026"


def _problem(error: Mapping[str, Any]) -> dict[str, Any]:
    """One validation problem without pydantic's ``input`` and ``ctx`` (they echo the request, unbounded)."""
    return {
        "location": [_short(part) for part in error["loc"]],
        "message": _short(error["msg"]),
        "type": _short(error["type"]),
    }


def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = error.errors()
    details = {"errors": [_problem(e) for e in errors[:MAX_ERRORS_SHOWN]], "error_count": len(errors)}
    if any(e["type"] == "json_invalid" for e in errors):
        return error_response(400, "malformed_json", "The request body is not valid JSON", details)
    return error_response(422, "validation_error", "The request is not valid", details)


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method the app serves on the request's path (each operation is a route of its own), asked of the
    routes themselves: the methods for which some route fully matches."""
    return [
        method
        for method in HTTP_METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in request.app.routes)
    ]


def _http_error(request: Request, error: Exception) -> JSONResponse:
    """The framework's own errors (unknown route, method, a body that cannot be parsed) in the one error shape."""
    assert isinstance(error, StarletteHTTPException)
    headers = dict(error.headers or {})
    if error.status_code == 404:
        return error_response(404, "not_found", "No such route", {"path": _short(request.url.path)}, headers)
    if error.status_code == 405:
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        return error_response(405, "method_not_allowed", "Method not allowed", {"allowed": allowed}, headers)
    if error.status_code == 400:  # FastAPI's "error parsing the body": too deep, not UTF-8, huge numbers, encoded
        return error_response(400, "malformed_json", "The request body is not valid JSON", {}, headers)
    return error_response(error.status_code, "http_error", _short(error.detail), {}, headers)


def _unexpected_error(_: Request, error: Exception) -> JSONResponse:
    logger.exception("Unhandled error")
    return error_response(500, "internal_error", "Something went wrong on our side", {})


def create_app(
    settings: Settings, service: ServiceProvider, operations: Sequence[Operation] = OPERATIONS, *, docs: bool = True
) -> FastAPI:
    """A FastAPI app serving ``operations`` (all by default) with ``service``; /docs and /openapi.json when ``docs``."""
    app = FastAPI(
        title="recsys",
        summary="Personalised product recommendations",
        version="1.0",
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    for op in operations:
        app.include_router(op.build_router(op, settings, service))
    app.add_exception_handler(RecsysError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app
