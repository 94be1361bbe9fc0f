"""Batch generation (issue 15): every customer's list regenerated with the current model, one segment of a DynamoDB
parallel Scan at a time. `recsys batch` runs the segments on one machine; in AWS a Step Functions Distributed Map
runs the batch function (``handler``, functions/batch_generate) on each.

Customers are enumerated from the purchase histories the service keeps (``DynamoDBStore.histories``: a Scan segment
filtered to history items), a page of PAGE_CUSTOMERS at a time: the model runs for the page at once
(``RecommendationService.regenerations``: generate's own ``generation`` for each history just read, computed together
by ``Recommender.recommend_many``, which gives each customer what ``recommend`` gives them alone), then each customer
goes through ``RecommendationService.regenerate``: one conditional write of the list (manual items and exclusions
kept), a lost race re-read and retried up to WRITE_RETRIES times, then counted as failed and listed. A page's lists
are generated as of the moment its model run starts.

Idempotent: a customer whose list already has the model's version is skipped (unless ``force``), so a run that was
stopped and started again writes only the customers it had not reached, each once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.errors import ConflictError, UnavailableError
from recsys.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from recsys.domain import PurchaseHistory
    from recsys.service import Generated, RecommendationService
    from recsys.settings import Settings

PAGE_CUSTOMERS = 256  # customers whose lists the model computes at once (one recommend_many call)
STOP_MARGIN_SECONDS = 60  # the batch function stops a segment at least this long before its Lambda timeout
SKIP_REASONS = ("current", "no_history")  # a list already of this model version; no history the model knows


@runtime_checkable
class HistoryScan(Protocol):
    """A store that enumerates the purchase histories (recsys.store.DynamoDBStore)."""

    def histories(self, segment: int = 0, total_segments: int = 1) -> Iterator[PurchaseHistory]: ...


class BatchOptions(BaseModel):
    """What a batch run does for each customer (the batch function's event carries them beside the segment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(20, ge=1, le=1000, description="products generated per customer (as generate's k)")
    popular_for_unknown: bool = Field(
        False, description="customers whose history holds nothing the model knows get the popular list (else: left)"
    )
    force: bool = Field(False, description="rewrite lists that already have the model's version")
    exclude_purchased: bool = Field(False, description="as generate's exclude_purchased")


class SegmentEvent(BatchOptions):
    """The batch function's event: one segment of a parallel Scan and the run's options."""

    segment: int = Field(ge=0)
    total_segments: int = Field(ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _segment_in_range(self) -> SegmentEvent:
        if self.segment >= self.total_segments:
            raise ValueError(f"segment {self.segment} is not below total_segments {self.total_segments}")
        return self

    @property
    def options(self) -> BatchOptions:
        return BatchOptions(**self.model_dump(include=set(BatchOptions.model_fields)))


@dataclass
class Accounting:
    """What a run (or one segment of it) did: customers seen, written, skipped (by reason), failed (listed)."""

    model_version: str | None = None
    segments: list[int] = field(default_factory=list)
    seen: int = 0
    written: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = True  # False: stopped before the end of its segments (a re-run finishes them)

    @property
    def customers_per_second(self) -> float:
        return self.seen / self.seconds if self.seconds > 0 else 0.0

    def merge(self, other: Accounting) -> None:
        """Add another segment's counts (run concurrently: ``seconds`` stays the caller's wall clock)."""
        self.model_version = self.model_version or other.model_version
        self.segments = sorted([*self.segments, *other.segments])
        self.seen += other.seen
        self.written += other.written
        for reason, count in other.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count
        self.failed += other.failed
        self.complete = self.complete and other.complete

    def to_json(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "segments": self.segments,
            "seen": self.seen,
            "written": self.written,
            "skipped": sum(self.skipped.values()),
            "skipped_by_reason": self.skipped,
            "failed": len(self.failed),
            "failed_customers": sorted(self.failed),
            "seconds": round(self.seconds, 3),
            "customers_per_second": round(self.customers_per_second, 1),
            "complete": self.complete,
        }


def regenerate_segment(
    service: RecommendationService,
    segment: int,
    total_segments: int,
    options: BatchOptions,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_customer: Callable[[str], None] = lambda _: None,
) -> Accounting:
    """Regenerate the list of every customer with a history in segment ``segment`` of ``total_segments``.

    Stops early (``complete`` False) when ``should_stop()`` says so before a customer; ``on_customer(outcome)`` is
    called after each customer (progress). A customer whose write keeps losing races or whose DynamoDB calls fail
    after retries is counted as failed and listed; a failing Scan fails the segment (its caller retries it)."""
    store = service.store
    if not isinstance(store, HistoryScan):
        raise TypeError(f"batch generation scans the store's histories; {type(store).__name__} cannot")
    started = time.perf_counter()
    done = Accounting(segments=[segment])
    for page in _pages(store.histories(segment, total_segments), PAGE_CUSTOMERS):
        generated = service.regenerations(page, options.k, exclude_purchased=options.exclude_purchased)
        for history, change in zip(page, generated, strict=True):
            if should_stop():
                done.complete = False
                break
            outcome = _regenerate(service, history, options, change)
            done.seen += 1
            if outcome == "written":
                done.written += 1
            elif outcome == "failed":
                done.failed.append(history.customer_id)
            else:
                done.skipped[outcome] += 1
            on_customer(outcome)
        if not done.complete:
            break
    done.model_version = service.model_version()
    done.seconds = time.perf_counter() - started
    return done


def _pages(histories: Iterator[PurchaseHistory], size: int) -> Iterator[list[PurchaseHistory]]:
    page: list[PurchaseHistory] = []
    for history in histories:
        page.append(history)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def _regenerate(
    service: RecommendationService, history: PurchaseHistory, options: BatchOptions, generated: Generated
) -> str:
    try:
        return service.regenerate(
            history,
            options.k,
            popular_for_unknown=options.popular_for_unknown,
            force=options.force,
            exclude_purchased=options.exclude_purchased,
            generated=generated,
        )
    except (ConflictError, UnavailableError) as error:
        logger.warning("batch: customer %s failed: %s", history.customer_id, error.message)
        return "failed"


class SegmentIncomplete(Exception):
    """The segment was stopped before the function's timeout; the state machine retries it (done customers are
    skipped as current)."""


BatchHandler = Callable[[dict[str, Any], "LambdaContext"], dict[str, Any]]


def make_handler(service_factory: Callable[[Settings], RecommendationService] | None = None) -> BatchHandler:
    """The batch function's handler (functions/batch_generate): validates the settings and loads the model at init;
    each invocation regenerates one segment and returns its accounting. It stops before the Lambda timeout with room
    for two DynamoDB calls at their worst (at least STOP_MARGIN_SECONDS) and then raises SegmentIncomplete."""
    from aws_lambda_powertools.metrics import MetricUnit

    from recsys.errors import ConfigurationError
    from recsys.observability import metrics, traced
    from recsys.service import default_service
    from recsys.settings import load_settings

    try:
        settings = load_settings()
    except ConfigurationError as error:
        logger.error(str(error))
        raise
    service = (service_factory or default_service)(settings)
    service.load_model()
    # room for the customer in progress: its GetItem and PutItem each at their worst (every attempt timing out)
    margin_ms = 1000 * max(STOP_MARGIN_SECONDS, 2 * settings.dynamodb_call_seconds())

    @logger.inject_lambda_context
    @traced
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        request = SegmentEvent.model_validate(event)

        def should_stop() -> bool:
            return context.get_remaining_time_in_millis() < margin_ms

        done = regenerate_segment(
            service, request.segment, request.total_segments, request.options, should_stop=should_stop
        )
        for name, value in (("BatchWritten", done.written), ("BatchFailed", len(done.failed))):
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        answer = done.to_json()
        logger.info("batch segment done", extra={"accounting": answer})
        if not done.complete:
            raise SegmentIncomplete(f"segment {request.segment} stopped before its end: {answer}")
        return answer

    wrapped: BatchHandler = handler  # Powertools' decorators are typed loosely
    return wrapped
