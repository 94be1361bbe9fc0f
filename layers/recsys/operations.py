"""The registry of operations: name, HTTP method, route, whether it loads the model, and its router.

The handlers (``make_handler(name)``), the local app, the event builders, the benchmarks and the tests all read it.
Adding an operation: its service method, its router in ``recsys.routes``, an entry here, its
``functions/<name>/app.py`` and its template resource.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recsys import routes

if TYPE_CHECKING:
    from fastapi import APIRouter

    from recsys.routes import ServiceProvider
    from recsys.settings import Settings

LIST_ROUTE = "/customers/{customer_id}/recommendations"
PURCHASES_ROUTE = "/customers/{customer_id}/purchases"


@dataclass(frozen=True)
class Operation:
    name: str  # functions/<name>/app.py, the OpenAPI operationId
    short: str  # what people call it (reports, logs)
    method: str
    route: str  # the API Gateway route key's path
    loads_model: bool  # loaded at the function's init; functions that don't never import TensorFlow
    build_router: Callable[[Operation, Settings, ServiceProvider], APIRouter]

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.route}"

    def path(self, customer_id: str) -> str:
        return self.route.format(customer_id=customer_id)


GENERATE = Operation("customer_recommendations", "generate", "POST", LIST_ROUTE, True, routes.generate)
SHOW = Operation("show_recommendations", "show", "GET", LIST_ROUTE, False, routes.show)
UPDATE = Operation("update_recommendations", "update", "PATCH", LIST_ROUTE, True, routes.update)
DELETE = Operation("delete_recommendations", "delete", "DELETE", LIST_ROUTE, False, routes.delete)
RECORD_PURCHASES = Operation("record_purchases", "record", "POST", PURCHASES_ROUTE, False, routes.record_purchases)
OPERATIONS = (GENERATE, SHOW, UPDATE, DELETE, RECORD_PURCHASES)


def operation(name: str) -> Operation:
    for candidate in OPERATIONS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no operation {name!r}; known: {', '.join(o.name for o in OPERATIONS)}")
