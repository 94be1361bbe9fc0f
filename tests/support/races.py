"""A DynamoDB store that counts the conditional writes that lost a race: proof, in a concurrency test, that the
writers did contend."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from recsys.domain import PurchaseHistory, RecommendationList
from recsys.errors import VersionConflict
from recsys.store import DynamoDBStore

Versioned = TypeVar("Versioned", RecommendationList, PurchaseHistory)


class LostRaces(DynamoDBStore):
    """The DynamoDB store, counting in ``LostRaces.lost`` the list and history writes that lost a race (every
    instance of the process together; a test resets it)."""

    lost = 0

    def put(self, stored: RecommendationList) -> RecommendationList:
        return _counted(super().put, stored)

    def put_history(self, history: PurchaseHistory) -> PurchaseHistory:
        return _counted(super().put_history, history)


def _counted(write: Callable[[Versioned], Versioned], item: Versioned) -> Versioned:
    try:
        return write(item)
    except VersionConflict:
        LostRaces.lost += 1
        raise
