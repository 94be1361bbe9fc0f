"""An in-memory stand-in with the DynamoDB store's contract (versioned conditional writes): for benchmarks that leave
DynamoDB out and for tests that need a store without moto."""

from __future__ import annotations

from typing import TypeVar

from recsys.domain import PurchaseHistory, RecommendationList, utc_now
from recsys.errors import VersionConflict

Versioned = TypeVar("Versioned", RecommendationList, PurchaseHistory)


class InMemoryStore:
    def __init__(self) -> None:
        self.lists: dict[str, RecommendationList] = {}
        self.histories: dict[str, PurchaseHistory] = {}

    def get(self, customer_id: str) -> RecommendationList | None:
        return self.lists.get(customer_id)

    def put(self, stored: RecommendationList) -> RecommendationList:
        return _put(self.lists, stored.evolve(updated_at=utc_now()))

    def get_history(self, customer_id: str) -> PurchaseHistory | None:
        return self.histories.get(customer_id)

    def put_history(self, history: PurchaseHistory) -> PurchaseHistory:
        return _put(self.histories, history)

    def get_with_history(self, customer_id: str) -> tuple[RecommendationList | None, PurchaseHistory | None]:
        return self.lists.get(customer_id), self.histories.get(customer_id)


def _put(items: dict[str, Versioned], stored: Versioned) -> Versioned:
    """``stored`` as its next version, if the version held is still ``stored.version`` (its updated_at as given: the
    callers set it as the DynamoDB store does)."""
    current = items.get(stored.customer_id)
    if (current.version if current else 0) != stored.version:
        raise VersionConflict
    new = stored.evolve(version=stored.version + 1)
    items[stored.customer_id] = new
    return new
