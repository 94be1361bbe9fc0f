"""Powertools Logger and Metrics, created once (everything imports them from here), and the optional Tracer."""

import os
from collections.abc import Callable
from typing import TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.shared.constants import TRACER_DISABLED_ENV
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "recsys")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Recsys")

logger = Logger()
metrics = Metrics()

Handler = TypeVar("Handler", bound=Callable[..., object])


def traced(handler: Handler) -> Handler:
    """The handler wrapped by Powertools' Tracer, unless POWERTOOLS_TRACE_DISABLED is true: then the X-Ray SDK is never
    imported, because a Tracer, even a disabled one, imports it and the SDK builds its sampling clients at import
    (~0.3 s of cold start). Lambda's active tracing records the invocation either way."""
    if resolve_truthy_env_var_choice(env=os.getenv(TRACER_DISABLED_ENV, "false")):
        return handler
    return cast(Handler, Tracer().capture_lambda_handler(handler))
