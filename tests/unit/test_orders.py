"""record_purchases' order ledger in the history item (recsys.domain, recsys.store, recsys.service.order_payload):
which orders are remembered, what a redelivery must repeat, the stored form, and the item's worst-case size."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recsys.domain import ProductHistory, Purchase, PurchaseHistory, RecordedOrder, from_micros, to_micros
from recsys.schemas import ID_MAX_LENGTH, RecordPurchasesRequest
from recsys.service import order_payload
from recsys.settings import Settings
from recsys.store import _history_from_item, _history_to_item

T0 = datetime(2026, 11, 30, 9, 0, 0, 123456, tzinfo=UTC)
HOUR = timedelta(hours=1)
DYNAMODB_ITEM_LIMIT = 400 * 1024  # bytes


def record(history: PurchaseHistory, order_id: str, at: datetime, memory: timedelta = HOUR) -> PurchaseHistory:
    """``history`` with order ``order_id`` (one purchase of A) recorded at ``at`` (at most 3 orders remembered, for
    ``memory``), as the store would then number it."""
    purchases = [Purchase("A", 1, 0)]
    recorded = history.record(
        order_id, f"hash-{order_id}", purchases, None, at, max_products=10, max_orders=3, memory=memory
    )
    return recorded.evolve(version=history.version + 1)


def test_an_order_is_remembered_with_the_answer_of_the_write_that_records_it() -> None:
    history = PurchaseHistory("c1", version=4).add([Purchase("B", 1, 0)], limit=10)
    purchases = [Purchase("A", 2, 0), Purchase("A", 1, 0)]
    recorded = history.record("o-1", "h", purchases, "France", T0, max_products=10, max_orders=3, memory=HOUR)
    assert recorded.orders == (RecordedOrder("o-1", "h", 2, 2, 5, to_micros(T0)),)
    assert recorded.updated_at == T0
    assert recorded.products["A"].purchases == 2
    assert recorded.country == "France"


def test_orders_are_found_within_the_window_only() -> None:
    history = record(PurchaseHistory("c1"), "o-1", T0)
    assert history.recorded("o-1", since=T0) == history.orders[0]
    assert history.recorded("o-1", since=T0 + timedelta(microseconds=1)) is None
    assert history.recorded("o-2", since=T0 - HOUR) is None


def test_the_newest_orders_within_the_window_are_kept() -> None:
    history = PurchaseHistory("c1")
    for i in range(4):  # one every 10 minutes
        history = record(history, f"o-{i}", T0 + i * HOUR / 6)
    assert [o.order_id for o in history.orders] == ["o-1", "o-2", "o-3"]  # max_orders=3
    # an order at T0 + 80 minutes forgets o-1 (recorded 70 minutes before it), keeps o-2 (exactly an hour before)
    history = record(history, "o-4", T0 + 8 * HOUR / 6)
    assert [o.order_id for o in history.orders] == ["o-2", "o-3", "o-4"]
    assert [o.version for o in history.orders] == [3, 4, 5]


def test_an_order_id_recorded_again_after_its_window_is_remembered_once() -> None:
    history = record(PurchaseHistory("c1"), "o-1", T0, memory=HOUR * 10)
    history = record(history, "o-1", T0 + HOUR)  # no longer remembered with a 1-hour window: recorded again
    assert [(o.order_id, o.version) for o in history.orders] == [("o-1", 2)]


def test_times_survive_microseconds_exactly() -> None:
    for at in (T0, T0.replace(microsecond=0), datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)):
        assert from_micros(to_micros(at)) == at
        assert from_micros(to_micros(at)).isoformat() == at.isoformat()


def test_the_orders_survive_the_store_exactly() -> None:
    history = record(record(PurchaseHistory("c1"), "o-1", T0), "o-2", T0 + HOUR / 2)
    stored = _history_from_item(_history_to_item(history, T0 + timedelta(days=90)))
    assert stored == history
    # microseconds included, exactly: a redelivery's answer repeats the first answer's updated_at
    assert from_micros(stored.orders[1].recorded_at) == T0 + HOUR / 2 == history.updated_at
    assert "orders" not in json.loads(_history_to_item(PurchaseHistory("c2"), T0)["history"]["S"])  # none: absent


def request(**changes: Any) -> RecordPurchasesRequest:
    body = {"order_id": "o-1", "purchases": [{"product_id": "A", "quantity": 2}, {"product_id": "B"}]} | changes
    return RecordPurchasesRequest.model_validate(body)


def test_a_redelivery_must_repeat_the_purchases_as_sent_and_the_country() -> None:
    same = order_payload(request())
    assert order_payload(request()) == same
    assert order_payload(request(order_id="o-2")) == same  # the order_id is the key, not the payload
    two_b = [{"product_id": "A", "quantity": 2}, {"product_id": "B", "quantity": 1}]
    assert order_payload(request(purchases=two_b)) == same  # quantity 1 is the default
    others = [
        request(country="France"),
        request(purchases=[{"product_id": "A", "quantity": 3}, {"product_id": "B"}]),
        request(purchases=[{"product_id": "B"}, {"product_id": "A", "quantity": 2}]),
        request(purchases=[{"product_id": "A", "quantity": 2}, {"product_id": "B", "purchased_at": T0.isoformat()}]),
    ]
    assert len({order_payload(other) for other in others} | {same}) == 1 + len(others)


def dynamodb_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it: each attribute's name and value in UTF-8 bytes (a number counted as its
    decimal text, an overestimate)."""
    return sum(len(name.encode()) + len(next(iter(value.values())).encode()) for name, value in item.items())


@pytest.mark.parametrize(("max_orders", "bound_kb"), [(Settings().max_remembered_orders, 130), (1000, 300)])
def test_the_largest_history_item_stays_far_below_dynamodbs_limit(max_orders: int, bound_kb: int) -> None:
    # Given a history as large as the settings allow: MAX_HISTORY_PRODUCTS products with the longest ids, counts,
    # quantities and times near their bounds, floats at their longest; and max_orders remembered orders with the longest
    # order ids, answers and times
    settings = Settings()
    longest = "x" * (ID_MAX_LENGTH - 4)
    products = {
        f"{i:04d}{longest}": ProductHistory(10**9, 10**15, 4_102_444_800, 4_102_444_800, *(1.2345678901234567e-10,) * 2)
        for i in range(settings.max_history_products)
    }
    at = datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    orders = tuple(
        RecordedOrder(
            f"{i:04d}{longest}", "f" * 32, settings.max_purchases_per_order, len(products), 10**12, to_micros(at)
        )
        for i in range(max_orders)
    )
    history = PurchaseHistory("c" * ID_MAX_LENGTH, products, "\U0001f30d" * 64, at, 10**12, orders)
    # When it is stored
    size = dynamodb_size(_history_to_item(history, at))
    print(f"\nworst-case history item, {max_orders} orders: {size / 1024:.1f} KB")
    # Then it is far below DynamoDB's 400 KB
    assert size < bound_kb * 1024 < DYNAMODB_ITEM_LIMIT
