"""Powertools Logger, Metrics and Tracer, created once; everything imports them from here."""

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "recsys")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Recsys")

logger = Logger()
metrics = Metrics()
tracer = Tracer()
