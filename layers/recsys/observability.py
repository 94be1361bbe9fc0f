"""Powertools Logger and Metrics, created once (everything imports them from here), and the optional Tracer."""

import os
import sys
from collections.abc import Callable
from typing import IO, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.shared.constants import TRACER_DISABLED_ENV
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

# Powertools reads its own variables (POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE, LOG_LEVEL, ...); these
# are the defaults where they are unset (the template sets them for each function)
SERVICE_NAME = os.environ.get("POWERTOOLS_SERVICE_NAME", "recsys")


class _CurrentStdout:
    """The log stream: whatever ``sys.stdout`` is at each write, like print (Powertools would keep the stdout of
    import time; pytest's capture, for one, swaps it)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


logger = Logger(service=SERVICE_NAME, stream=cast(IO[str], _CurrentStdout()))
metrics = Metrics(service=SERVICE_NAME, namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Recsys"))

Handler = TypeVar("Handler", bound=Callable[..., object])


def traced(handler: Handler) -> Handler:
    """The handler wrapped by Powertools' Tracer, unless POWERTOOLS_TRACE_DISABLED is true: then the X-Ray SDK is never
    imported, because a Tracer, even a disabled one, imports it and the SDK builds its sampling clients at import
    (~0.3 s of cold start). Lambda's active tracing records the invocation either way."""
    if resolve_truthy_env_var_choice(env=os.getenv(TRACER_DISABLED_ENV, "false")):
        return handler
    return cast(Handler, Tracer().capture_lambda_handler(handler))
