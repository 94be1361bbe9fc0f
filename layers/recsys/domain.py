"""The domain: a customer's recommendation list, as the service changes it, the store keeps it and the API shows it.

Plain frozen dataclasses, free of HTTP and DynamoDB; ``evolve`` returns a changed copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Self

Source = Literal["model", "popular", "manual"]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Recommendation:
    product_id: str
    score: float
    source: Source
    name: str | None = None


@dataclass(frozen=True)
class RecommendationList:
    customer_id: str
    items: tuple[Recommendation, ...] = ()
    excluded: frozenset[str] = frozenset()
    model_version: str | None = None
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)
    version: int = 0  # the optimistic lock: 0 until first stored, then incremented by every write

    def evolve(self, **changes: Any) -> Self:
        return replace(self, **changes)
