"""The domain: a customer's recommendation list, as the service changes it, the store keeps it and the API shows it;
and a customer's purchase history, as record_purchases builds it, with the orders it recorded recently.

Plain frozen dataclasses (and one named tuple), free of HTTP and DynamoDB; ``evolve`` returns a changed copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, Self

Source = Literal["model", "popular", "manual"]


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_micros(at: datetime) -> int:
    """``at`` in epoch microseconds, exactly (integer arithmetic: ``from_micros`` gives ``at`` back)."""
    return (at - EPOCH) // MICROSECOND


def from_micros(micros: int) -> datetime:
    return EPOCH + micros * MICROSECOND


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
    excluded: tuple[str, ...] = ()  # products delete removed, oldest first (the oldest are forgotten first)
    model_version: str | None = None
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)
    version: int = 0  # the optimistic lock: 0 until first stored, then incremented by every write

    def evolve(self, **changes: Any) -> Self:
        return replace(self, **changes)


# --- A customer's purchase history (record_purchases writes it; recommending from it comes later)

DAY_SECONDS = 86_400
HALF_LIVES_DAYS = (30, 90)  # the decayed counts kept per product: purchases weighted by 2^(-age / half-life)


@dataclass(frozen=True)
class Purchase:
    product_id: str
    quantity: int
    purchased_at: int  # epoch seconds


def decay(value: float, ref: int, at: int, half_life_days: int) -> float:
    """``value``, a decayed count as of ``ref``, as of ``at`` (>= ref)."""
    return value * 2 ** (-(at - ref) / (half_life_days * DAY_SECONDS))


class ProductHistory(NamedTuple):
    """One product in a customer's history: purchase events, total quantity, the last purchase time, the time ``ref``
    (epoch seconds) the decayed counts refer to and, per half-life in HALF_LIVES_DAYS, the exactly decayed count of
    purchases as of ``ref``. A named tuple of numbers in this order: the model reads a history's products as flat rows
    of numbers (``recsys.scoring.Histories.read``), twice as fast as a frozen dataclass's attributes."""

    purchases: int  # purchase events
    quantity: int
    last_purchased: int
    ref: int
    decayed_30d: float
    decayed_90d: float

    @property
    def decayed(self) -> tuple[float, ...]:
        """The decayed counts, per HALF_LIVES_DAYS."""
        return self[DECAYED_AT:]

    @classmethod
    def first(cls, purchase: Purchase) -> ProductHistory:
        at = purchase.purchased_at
        return cls(1, purchase.quantity, at, at, *(1.0 for _ in HALF_LIVES_DAYS))

    def add(self, purchase: Purchase) -> ProductHistory:
        """This product bought once more, at any time (purchases may arrive out of order)."""
        at = purchase.purchased_at
        if at >= self.ref:  # move the reference time forward, then count the purchase at full weight
            decayed = tuple(decay(d, self.ref, at, h) + 1.0 for d, h in zip(self.decayed, HALF_LIVES_DAYS, strict=True))
            ref = at
        else:  # an older purchase: weighted by its age at the reference time
            decayed = tuple(d + decay(1.0, at, self.ref, h) for d, h in zip(self.decayed, HALF_LIVES_DAYS, strict=True))
            ref = self.ref
        return ProductHistory(
            self.purchases + 1, self.quantity + purchase.quantity, max(self.last_purchased, at), ref, *decayed
        )


DECAYED_AT = ProductHistory._fields.index("decayed_30d")  # where a ProductHistory's decayed counts start
assert len(ProductHistory._fields) - DECAYED_AT == len(HALF_LIVES_DAYS), "a decayed count field per half-life"


class RecordedOrder(NamedTuple):
    """An order the history remembers (record_purchases' ledger): the hash of what a redelivery must repeat, and the
    first answer's figures, those of the history as the order's write left it. A named tuple: every order reads and
    writes them all, and a tuple is made and stored (a JSON array) much faster than a frozen dataclass."""

    order_id: str
    payload: str  # a hash of the purchases as sent and the country
    purchases_recorded: int
    products_in_history: int
    version: int  # the history's version written with the order
    recorded_at: int  # the history's updated_at then, in epoch microseconds (``from_micros``): cheap to compare, store


@dataclass(frozen=True)
class PurchaseHistory:
    """What a customer bought, per product (at most a bounded number of the most recently bought products), and the
    orders recorded recently (a bounded number, within a bounded time), oldest first."""

    customer_id: str
    products: Mapping[str, ProductHistory] = field(default_factory=dict)
    country: str | None = None
    updated_at: datetime = field(default_factory=utc_now)
    version: int = 0  # the optimistic lock, as for the list
    orders: tuple[RecordedOrder, ...] = ()

    def add(self, purchases: Iterable[Purchase], limit: int, country: str | None = None) -> Self:
        """The history with ``purchases`` added, keeping the ``limit`` most recently bought products (ties: by id)."""
        products = dict(self.products)
        for purchase in purchases:
            known = products.get(purchase.product_id)
            products[purchase.product_id] = known.add(purchase) if known else ProductHistory.first(purchase)
        if len(products) > limit:
            kept = sorted(products.items(), key=lambda item: (-item[1].last_purchased, item[0]))[:limit]
            products = dict(kept)
        return replace(self, products=products, country=country or self.country)

    def recorded(self, order_id: str, since: datetime) -> RecordedOrder | None:
        """The order ``order_id`` if it was recorded at ``since`` or later; one recorded before is forgotten."""
        start = to_micros(since)
        return next((o for o in self.orders if o.order_id == order_id and o.recorded_at >= start), None)

    def record(
        self,
        order_id: str,
        payload: str,
        purchases: Sequence[Purchase],
        country: str | None,
        at: datetime,
        *,
        max_products: int,
        max_orders: int,
        memory: timedelta,
    ) -> Self:
        """The history's next version, written at ``at``: the order's purchases added (``add``) and the order
        remembered with its answer; the orders recorded before ``at - memory`` and all but the ``max_orders`` newest
        forgotten."""
        added = self.add(purchases, max_products, country)
        order = RecordedOrder(order_id, payload, len(purchases), len(added.products), self.version + 1, to_micros(at))
        start = to_micros(at - memory)
        kept = tuple(o for o in self.orders if o.recorded_at >= start and o.order_id != order_id)
        return replace(added, orders=(*kept, order)[-max_orders:], updated_at=at)

    def evolve(self, **changes: Any) -> Self:
        return replace(self, **changes)
