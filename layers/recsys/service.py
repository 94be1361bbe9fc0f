"""The operations: pure logic over the store and the recommender.

Every change is a read-modify-write of one of the customer's items (list or history), conditional on its version
and retried a bounded number of times, so concurrent writers never lose each other's changes. record_purchases counts
each order once by remembering it in the history item, written by the same conditional put as its purchases.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar

from recsys import budget
from recsys.domain import (
    Purchase,
    PurchaseHistory,
    Recommendation,
    RecommendationList,
    RecordedOrder,
    Source,
    from_micros,
    utc_now,
)
from recsys.errors import (
    ConflictError,
    NotFoundError,
    OrderMismatchError,
    UnavailableError,
    UnprocessableError,
    VersionConflict,
)
from recsys.recommender import Ranked, Recommender, load_recommender
from recsys.schemas import ProductInput, RecordPurchasesRequest
from recsys.settings import WRITE_BACKOFF_MAX, Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Change = Callable[[RecommendationList], RecommendationList]
Generated = tuple[Source, Change]
Regenerated = Literal["written", "current", "no_history"]
Versioned = TypeVar("Versioned", RecommendationList, PurchaseHistory)
Result = TypeVar("Result")
Params = ParamSpec("Params")
MAX_BACKOFF = WRITE_BACKOFF_MAX


class Unread:
    """An item not read yet (``None`` is an item read and found absent)."""


UNREAD = Unread()


def _budgeted(
    method: Callable[Concatenate[RecommendationService, Params], Result],
) -> Callable[Concatenate[RecommendationService, Params], Result]:
    """Run a service operation within the request's time budget (REQUEST_BUDGET_SECONDS, ``recsys.budget``)."""

    def run(service: RecommendationService, /, *args: Params.args, **kwargs: Params.kwargs) -> Result:
        with budget.within(service.settings.request_budget_seconds):
            return method(service, *args, **kwargs)

    run.__doc__ = method.__doc__
    return run


class ListStore(Protocol):
    """What the service needs of a store (recsys.store.DynamoDBStore; fakes in tests and benchmarks)."""

    def get(self, customer_id: str) -> RecommendationList | None: ...

    def put(self, stored: RecommendationList) -> RecommendationList:
        """Store ``stored`` as its next version; VersionConflict if the stored version is no longer its version."""
        ...

    def get_history(self, customer_id: str) -> PurchaseHistory | None: ...

    def get_with_history(self, customer_id: str) -> tuple[RecommendationList | None, PurchaseHistory | None]:
        """The customer's list and history, read together (DynamoDB: one Query)."""
        ...

    def put_history(self, history: PurchaseHistory) -> PurchaseHistory:
        """Store ``history`` as its next version; VersionConflict if the stored version is no longer its version."""
        ...


class RecommendationService:
    def __init__(self, settings: Settings, store: ListStore, recommender: Callable[[], Recommender]) -> None:
        self.settings = settings
        self.store = store
        self._recommender = recommender  # called only by generate and update: show/delete never load the model

    def load_model(self) -> None:
        """Load the model now (at a function's init) rather than on the first request that needs it."""
        self._recommender()

    def model(self) -> Recommender:
        """The model generate and update use (loaded on first use)."""
        return self._recommender()

    def model_version(self) -> str:
        return self.model().version

    @_budgeted
    def show(self, customer_id: str) -> RecommendationList:
        stored = self.store.get(customer_id)
        if stored is None:
            raise _no_list(customer_id)
        return stored

    @_budgeted
    def generate(self, customer_id: str, k: int, exclude_purchased: bool = False) -> RecommendationList:
        """Top-k from the model for the customer's live purchase history, as of now (the most popular products when
        the history holds nothing the model knows), without excluded products; stored and returned."""
        model = self._recommender()
        listed, history = self.store.get_with_history(customer_id)
        _, apply = generation(model, history, time.time(), k, exclude_purchased=exclude_purchased)
        return self._write_list(customer_id, apply, create=True, read=listed)

    def regenerations(
        self, histories: Sequence[PurchaseHistory], k: int, *, exclude_purchased: bool = False
    ) -> list[Generated]:
        """Batch generation's list for each customer whose history was just read (``generations``, the model run
        for all of them at once), to write with ``regenerate``."""
        return generations(
            self._recommender(),
            histories,
            time.time(),
            k,
            exclude_purchased=exclude_purchased,
            max_items=self.settings.max_items,
        )

    def regenerate(
        self,
        history: PurchaseHistory,
        k: int,
        *,
        popular_for_unknown: bool = False,
        force: bool = False,
        exclude_purchased: bool = False,
        generated: Generated | None = None,
    ) -> Regenerated:
        """Batch generation for one customer whose ``history`` was just read: generate's list for it (the same
        ``generation``; or ``generated``, its ``regenerations`` with the same k and exclude_purchased), written with
        generate's conditional write and retries, keeping manual items and exclusions.

        ``"no_history"`` (nothing written) when the history holds nothing the model knows, unless
        ``popular_for_unknown``; ``"current"`` (nothing written) when the stored list already has this model's
        version, unless ``force``; otherwise ``"written"``. ConflictError when the write kept losing races
        (WRITE_RETRIES), UnavailableError when DynamoDB failed."""
        model = self._recommender()
        source, apply = generated or self.regenerations([history], k, exclude_purchased=exclude_purchased)[0]
        if source == "popular" and not popular_for_unknown:
            return "no_history"

        def unless_current(stored: RecommendationList) -> RecommendationList:
            if not force and stored.model_version == model.version:
                raise _AlreadyCurrent
            return apply(stored)

        try:
            self._write_list(history.customer_id, unless_current, create=True)
        except _AlreadyCurrent:
            return "current"
        return "written"

    @_budgeted
    def update(self, customer_id: str, products: list[ProductInput]) -> RecommendationList:
        """Merge the given products (model-scored where no score is given), best first; lifts their exclusion."""
        model = self._recommender()
        unknown = model.unknown_products([p.product_id for p in products if p.score is None])
        if unknown:  # before any read
            raise UnprocessableError(
                "The model does not know these products; give them a score", {"unknown_product_ids": unknown}
            )
        listed, history = self.store.get_with_history(customer_id)
        new_items = self._score(model, customer_id, history, products)

        def apply(stored: RecommendationList) -> RecommendationList:
            merged = {i.product_id: i for i in stored.items} | {i.product_id: i for i in new_items}
            if len(merged) > self.settings.max_items:
                raise UnprocessableError(
                    f"The list would hold {len(merged)} products; at most {self.settings.max_items} are kept",
                    {"max_items": self.settings.max_items},
                )
            items = tuple(sorted(merged.values(), key=lambda i: i.score, reverse=True))
            return stored.evolve(items=items, excluded=tuple(p for p in stored.excluded if p not in merged))

        return self._write_list(customer_id, apply, create=True, read=listed)

    @_budgeted
    def delete(self, customer_id: str, product_ids: list[str]) -> RecommendationList:
        """Remove the products and remember them as excluded, so regeneration does not bring them back.

        Always succeeds: the exclusions are bounded by forgetting the oldest. The named products become the newest
        exclusions (in the request's order; one named again moves up), and only the MAX_EXCLUDED newest are kept."""
        removed = frozenset(product_ids)

        def apply(stored: RecommendationList) -> RecommendationList:
            excluded = (*(p for p in stored.excluded if p not in removed), *product_ids)
            keep = self.settings.max_excluded
            items = tuple(i for i in stored.items if i.product_id not in removed)
            return stored.evolve(items=items, excluded=excluded[-keep:] if keep else ())

        return self._write_list(customer_id, apply, create=False)

    @_budgeted
    def record_purchases(self, customer_id: str, order: RecordPurchasesRequest) -> dict[str, Any]:
        """Add the order's purchases to the customer's history, once per order_id: the history remembers the order
        (ORDER_MEMORY_SECONDS, MAX_REMEMBERED_ORDERS) in the same conditional write, so a redelivery, even one racing
        the first delivery, gets the first answer and writes nothing; the same order_id with other purchases or
        another country is OrderMismatchError. Products the model does not know are recorded as well."""
        now = int(utc_now().timestamp())
        purchases = [
            Purchase(p.product_id, p.quantity, int(p.purchased_at.timestamp()) if p.purchased_at else now)
            for p in order.purchases
        ]
        payload = order_payload(order)
        memory = timedelta(seconds=self.settings.order_memory_seconds)

        def apply(stored: PurchaseHistory) -> PurchaseHistory:
            at = utc_now()
            known = stored.recorded(order.order_id, since=at - memory)
            if known is not None:
                if known.payload != payload:
                    raise OrderMismatchError(
                        "This order_id was recorded before with other purchases; use a new order_id for a new order",
                        {"order_id": order.order_id},
                    )
                raise _Recorded(known)
            return stored.record(
                order.order_id,
                payload,
                purchases,
                order.country,
                at,
                max_products=self.settings.max_history_products,
                max_orders=self.settings.max_remembered_orders,
                memory=memory,
            )

        try:
            recorded = self._write(
                self.store.get_history, self.store.put_history, customer_id, apply, create=PurchaseHistory
            ).orders[-1]
        except _Recorded as redelivered:
            recorded = redelivered.order
        return {
            "customer_id": customer_id,
            "order_id": recorded.order_id,
            "purchases_recorded": recorded.purchases_recorded,
            "products_in_history": recorded.products_in_history,
            "version": recorded.version,
            "updated_at": from_micros(recorded.recorded_at).isoformat(),
        }

    def _score(
        self, model: Recommender, customer_id: str, history: PurchaseHistory | None, products: list[ProductInput]
    ) -> list[Recommendation]:
        """Stored items for the given products: the caller's score where given, otherwise the model's (for the
        customer's ``history``); the model knows every product to score (checked by the caller)."""
        to_score = [p.product_id for p in products if p.score is None]
        scores: list[float] | None = []
        if to_score:
            bought = history.products if history is not None else {}
            scores = model.score(bought, history.country if history is not None else None, time.time(), to_score)
        if scores is None:
            raise UnprocessableError(
                "No purchase the model knows is recorded for this customer; give every product a score",
                {"customer_id": customer_id},
            )
        model_scores = dict(zip(to_score, scores, strict=True))
        return [
            Recommendation(p.product_id, p.score, "manual", model.name(p.product_id))
            if p.score is not None
            else Recommendation(p.product_id, model_scores[p.product_id], "model", model.name(p.product_id))
            for p in products
        ]

    def _write_list(
        self, customer_id: str, apply: Change, *, create: bool, read: RecommendationList | Unread | None = UNREAD
    ) -> RecommendationList:
        """``_write`` on the customer's list. Given the list as just ``read`` with the history
        (``get_with_history``), the first attempt uses it and a lost race reads both again: generate and update make
        one kind of read (DynamoDB: Query), however many attempts they need."""
        get = self.store.get if isinstance(read, Unread) else lambda c: self.store.get_with_history(c)[0]
        return self._write(
            get, self.store.put, customer_id, apply, create=RecommendationList if create else None, read=read
        )

    def _write(
        self,
        get: Callable[[str], Versioned | None],
        put: Callable[[Versioned], Versioned],
        customer_id: str,
        apply: Callable[[Versioned], Versioned],
        *,
        create: Callable[[str], Versioned] | None,
        read: Versioned | Unread | None = UNREAD,
    ) -> Versioned:
        """Read, apply, write conditionally; on a lost race re-read and re-apply, a bounded number of times. A missing
        item is made by ``create`` (404 without it). The first attempt uses the item as already ``read``, if given."""
        for attempt in range(self.settings.write_retries):
            stored = get(customer_id) if attempt or isinstance(read, Unread) else read
            if stored is None:
                if create is None:
                    raise _no_list(customer_id)
                stored = create(customer_id)
            try:
                return put(apply(stored))
            except VersionConflict:
                left = budget.remaining()
                if left is not None and left < self.settings.dynamodb_attempt_seconds + MAX_BACKOFF:
                    raise UnavailableError(
                        "The customer's data changed concurrently and the request's time is up; retry the request",
                        {"attempts": attempt + 1},
                    ) from None
                time.sleep(random.uniform(0, min(MAX_BACKOFF, 0.01 * 2**attempt)))  # noqa: S311  # nosec B311 - jitter, not security
        raise ConflictError(
            "The customer's data changed concurrently too often; retry the request",
            {"attempts": self.settings.write_retries},
        )


class _AlreadyCurrent(Exception):
    """The stored list already has the model's version: batch generation leaves it as it is."""


class _Recorded(Exception):
    """The order is in the history already (a redelivery): its first answer, nothing written."""

    def __init__(self, order: RecordedOrder) -> None:
        super().__init__(order.order_id)
        self.order = order


def order_payload(order: RecordPurchasesRequest) -> str:
    """What a redelivery of ``order`` must repeat, hashed: its purchases as sent (a purchased_at left out stays left
    out) and its country."""
    sent = order.model_dump(mode="json")
    canonical = json.dumps([sent["purchases"], sent["country"]], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def generation(
    model: Recommender,
    history: PurchaseHistory | None,
    now: float,
    k: int,
    *,
    exclude_purchased: bool = False,
    max_items: int | None = None,
) -> Generated:
    """What generate makes of a customer's list: the model's top-k for their purchase history as of ``now`` (the most
    popular products when it holds nothing the model knows: source ``"popular"``), without excluded products, as a
    change to apply to the stored list (re-applied on every retry of the conditional write).

    With ``max_items`` (batch generation) the list's manual items are kept beside the k generated ones, best first,
    at most ``max_items`` in all (manual items first); without it (generate) the generated items replace the list's."""
    return generations(model, [history], now, k, exclude_purchased=exclude_purchased, max_items=max_items)[0]


def generations(
    model: Recommender,
    histories: Sequence[PurchaseHistory | None],
    now: float,
    k: int,
    *,
    exclude_purchased: bool = False,
    max_items: int | None = None,
) -> list[Generated]:
    """``generation`` for each history, the model run for all of them at once (``Recommender.recommend_many``: each
    customer's ranking is the one ``recommend`` gives them alone)."""
    bought = [history.products if history is not None else {} for history in histories]
    countries = [history.country if history is not None else None for history in histories]
    ranked = model.recommend_many(list(zip(bought, countries, strict=True)), now, exclude_purchased=exclude_purchased)
    return [
        _change(model, found, products, k, exclude_purchased=exclude_purchased, max_items=max_items)
        for found, products in zip(ranked, bought, strict=True)
    ]


def _change(
    model: Recommender,
    found: Ranked | None,
    bought: Mapping[str, object],
    k: int,
    *,
    exclude_purchased: bool,
    max_items: int | None,
) -> Generated:
    source: Source = "model" if found is not None else "popular"
    ranked = found if found is not None else model.popular()
    leave_out = bought.keys() if exclude_purchased else frozenset()

    def apply(stored: RecommendationList) -> RecommendationList:
        manual = tuple(i for i in stored.items if i.source == "manual") if max_items is not None else ()
        room = k if max_items is None else max(0, min(k, max_items - len(manual)))
        chosen = ranked.top(room, frozenset(stored.excluded) | leave_out | {i.product_id for i in manual})
        items = tuple(Recommendation(p, s, source, model.name(p)) for p, s in chosen)
        if manual:
            items = tuple(sorted((*manual, *items), key=lambda i: i.score, reverse=True))
        return stored.evolve(items=items, model_version=model.version)

    return source, apply


def _no_list(customer_id: str) -> NotFoundError:
    return NotFoundError(
        f"No recommendations stored for customer {customer_id}",
        {"hint": f"POST /customers/{customer_id}/recommendations generates them"},
    )


def default_service(
    settings: Settings, store: ListStore | None = None, client: DynamoDBClient | None = None
) -> RecommendationService:
    """The deployed composition: DynamoDB (or ``store``; through ``client`` if given) and the model named by the
    settings, loaded on first use."""
    from recsys.store import DynamoDBStore

    return RecommendationService(
        settings,
        store or DynamoDBStore(settings, client),
        lambda: load_recommender(settings.resolved_model_dir()),
    )
