"""Optimistic locking: a writer that loses the race re-reads and re-applies; bounded retries end in 409."""

from __future__ import annotations

import pytest

from recsys.domain import PurchaseHistory, RecommendationList
from recsys.errors import ConflictError, VersionConflict
from recsys.schemas import ProductInput
from recsys.service import RecommendationService, default_service
from recsys.settings import load_settings
from tests.support.data import KNOWN_CUSTOMER


def test_two_racing_writers_both_changes_survive(
    service: RecommendationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stored list, and a second writer that deletes a product between the first writer's read and write
    first = service.generate(KNOWN_CUSTOMER, k=5)
    deleted = first.items[0].product_id
    other = default_service(load_settings())
    read = service.store.get_with_history  # update reads the list with the history
    raced: list[int] = []

    def read_then_lose_the_race(customer_id: str) -> tuple[RecommendationList | None, PurchaseHistory | None]:
        both = read(customer_id)
        if not raced:
            raced.append(1)
            other.delete(customer_id, [deleted])
        return both

    monkeypatch.setattr(service.store, "get_with_history", read_then_lose_the_race)
    # When the first writer adds a product (its first conditional write loses)
    service.update(KNOWN_CUSTOMER, [ProductInput(product_id="MANUAL-1", score=99.0)])
    # Then both changes are present
    final = other.show(KNOWN_CUSTOMER)
    products = [item.product_id for item in final.items]
    assert deleted not in products
    assert products[0] == "MANUAL-1"
    assert final.version == 3
    assert raced


def test_a_writer_that_always_loses_gets_a_conflict_after_bounded_retries(
    service: RecommendationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.generate(KNOWN_CUSTOMER, k=5)
    attempts: list[int] = []

    def always_conflict(stored: RecommendationList) -> RecommendationList:
        attempts.append(1)
        raise VersionConflict

    monkeypatch.setattr(service.store, "put", always_conflict)
    with pytest.raises(ConflictError):
        service.delete(KNOWN_CUSTOMER, ["85123A"])
    assert len(attempts) == service.settings.write_retries
