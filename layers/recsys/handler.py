"""Lambda handlers: one operation's FastAPI app behind Mangum, wrapped with Powertools.

``make_handler(name)`` runs at the function's init: it validates the settings (an invalid one fails the init with one
log line), builds the service and, for operations that need it, loads the model, so the first request is not slower.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from recsys.api import create_app
from recsys.errors import ConfigurationError
from recsys.observability import logger, metrics, traced
from recsys.operations import operation
from recsys.service import RecommendationService, default_service
from recsys.settings import Settings, load_settings

LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]
ServiceFactory = Callable[[Settings], RecommendationService]


def make_handler(name: str, *, service_factory: ServiceFactory = default_service) -> LambdaHandler:
    """The handler of operation ``name``; ``service_factory`` builds its service from the settings (tests and
    benchmarks pass one with a fake store)."""
    op = operation(name)
    try:
        settings = load_settings()
    except ConfigurationError as error:
        logger.error(str(error))
        raise
    service = service_factory(settings)
    if op.loads_model:
        service.load_model()
    asgi = Mangum(create_app(settings, lambda: service, [op], docs=False), lifespan="off")

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @traced
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        response: dict[str, Any] = asgi(event, context)  # type: ignore[arg-type]
        metrics.add_metric(name=f"Responses{response['statusCode'] // 100}xx", unit=MetricUnit.Count, value=1)
        return response

    wrapped: LambdaHandler = handler  # Powertools' decorators are typed loosely
    return wrapped
