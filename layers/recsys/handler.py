"""Lambda handlers: one FastAPI app per function behind Mangum, wrapped with Powertools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from fastapi import APIRouter
from mangum import Mangum

from recsys.api import create_app
from recsys.dependencies import get_recommender
from recsys.observability import logger, metrics, traced

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def make_handler(router: APIRouter, *, load_model: bool = False) -> LambdaHandler:
    """Build a function's handler from its router; ``load_model`` loads the model now, at init (generate, update)."""
    if load_model:
        get_recommender()
    asgi = Mangum(create_app(router, docs=False), lifespan="off")

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @traced
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        response: dict[str, Any] = asgi(event, context)  # type: ignore[arg-type]
        metrics.add_metric(name=f"Responses{response['statusCode'] // 100}xx", unit=MetricUnit.Count, value=1)
        return response

    wrapped: LambdaHandler = handler  # Powertools' decorators are typed loosely
    return wrapped
