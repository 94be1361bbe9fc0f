"""The HTTP API: ``create_app`` composes the operations' routers with one error shape for every error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys.errors import RecsysError
from recsys.observability import logger
from recsys.operations import OPERATIONS, Operation
from recsys.routes import ServiceProvider
from recsys.settings import Settings


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message} | ({"details": details} if details is not None else {})}
    return JSONResponse(body, status_code=status, headers=headers)


def _domain_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RecsysError)
    retry_after = getattr(error, "retry_after", None)  # UnavailableError, and a 409 that will resolve itself
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
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
