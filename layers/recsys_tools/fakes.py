"""An in-memory store with the DynamoDB store's contract (versioned conditional writes): for benchmarks that leave
DynamoDB out and for tests that need a store without moto."""

from __future__ import annotations

from recsys.domain import RecommendationList, utc_now
from recsys.errors import VersionConflict


class InMemoryStore:
    def __init__(self) -> None:
        self.lists: dict[str, RecommendationList] = {}

    def get(self, customer_id: str) -> RecommendationList | None:
        return self.lists.get(customer_id)

    def put(self, stored: RecommendationList) -> RecommendationList:
        current = self.lists.get(stored.customer_id)
        if (current.version if current else 0) != stored.version:
            raise VersionConflict
        new = stored.evolve(version=stored.version + 1, updated_at=utc_now())
        self.lists[stored.customer_id] = new
        return new
