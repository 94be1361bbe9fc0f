"""In-memory stand-ins with the DynamoDB store's and the order ledger's contracts (versioned conditional writes; each
order once): for benchmarks that leave DynamoDB out and for tests that need a store without moto."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from recsys.domain import PurchaseHistory, RecommendationList, utc_now
from recsys.errors import ConflictError, VersionConflict

Versioned = TypeVar("Versioned", RecommendationList, PurchaseHistory)


class InMemoryStore:
    def __init__(self) -> None:
        self.lists: dict[str, RecommendationList] = {}
        self.histories: dict[str, PurchaseHistory] = {}

    def get(self, customer_id: str) -> RecommendationList | None:
        return self.lists.get(customer_id)

    def put(self, stored: RecommendationList) -> RecommendationList:
        return _put(self.lists, stored)

    def get_history(self, customer_id: str) -> PurchaseHistory | None:
        return self.histories.get(customer_id)

    def put_history(self, history: PurchaseHistory) -> PurchaseHistory:
        return _put(self.histories, history)

    def get_with_history(self, customer_id: str) -> tuple[RecommendationList | None, PurchaseHistory | None]:
        return self.lists.get(customer_id), self.histories.get(customer_id)


def _put(items: dict[str, Versioned], stored: Versioned) -> Versioned:
    """``stored`` as its next version, if the version held is still ``stored.version``."""
    current = items.get(stored.customer_id)
    if (current.version if current else 0) != stored.version:
        raise VersionConflict
    new = stored.evolve(version=stored.version + 1, updated_at=utc_now())
    items[stored.customer_id] = new
    return new


class InMemoryLedger:
    """Each (customer_id, order_id) recorded once; a redelivery gets the first answer, another payload a 409."""

    def __init__(self) -> None:
        self.orders: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}

    def once(
        self, order: dict[str, Any], record: Callable[[], dict[str, Any]], lambda_context: Any = None
    ) -> dict[str, Any]:
        key = (order["customer_id"], order["order_id"])
        payload = json.dumps([order["purchases"], order.get("country")], sort_keys=True)
        if key in self.orders:
            seen, answer = self.orders[key]
            if seen != payload:
                raise ConflictError("This order_id was recorded before with other purchases")
            return answer
        answer = record()
        self.orders[key] = (payload, answer)
        return answer
