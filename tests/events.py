"""API Gateway HTTP API (payload v2) events and a Lambda context: they live in the package (`recsys bench` uses them
too); re-exported here under the names the tests use."""

from recsys.events import ROUTE_KEY, FakeLambdaContext, http_api_event

__all__ = ["ROUTE_KEY", "FakeLambdaContext", "http_api_event"]
