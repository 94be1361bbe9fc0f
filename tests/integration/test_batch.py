"""Batch generation (issue 15): what it stores equals generate's list, keeps manual items and exclusions, loses no
concurrent update, resumes after an interruption writing each customer once, honours the no-history flag and lists
its failures. The session's small real model; DynamoDB under moto (a moto server for the concurrent updates)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pydantic import ValidationError

from recsys.batch import BatchOptions, SegmentIncomplete, make_handler, regenerate_segment
from recsys.domain import Purchase, PurchaseHistory, Recommendation, RecommendationList
from recsys.errors import ConflictError, VersionConflict
from recsys.schemas import ProductInput
from recsys.service import RecommendationService, default_service
from recsys.settings import load_settings
from recsys.store import DynamoDBStore
from recsys_tools.batch import run_batch
from recsys_tools.cli import main
from recsys_tools.events import FakeLambdaContext
from tests.infra.events import EVENTS_DIR
from tests.support.api import TABLE
from tests.support.data import KNOWN_CUSTOMER, SliceHistories
from tests.support.moto_dynamodb import make_conditional_writes_atomic, moto_server
from tests.support.races import LostRaces

K = 10
UPDATERS = 32


def lists(service: RecommendationService, customers: list[str]) -> dict[str, RecommendationList]:
    stored = {c: service.store.get(c) for c in customers}
    return {c: s for c, s in stored.items() if s is not None}


def test_a_batch_list_is_what_generate_stores(
    service: RecommendationService, histories: SliceHistories, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given every slice customer's history in the table and no lists, and a clock that stands still (the query's
    # recency weights are float32 arithmetic on the time: another second can move a score by one ulp)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    customers = sorted(histories.by_customer)
    # When the batch runs over four segments
    done = run_batch(service, BatchOptions(k=K), segments=4, workers=2)
    # Then every customer was seen once and written
    assert done.seen == done.written == len(customers)
    assert (done.failed, done.complete, sorted(done.segments)) == ([], True, [0, 1, 2, 3])
    batch = lists(service, customers)
    # And each list is exactly what generate stores for that customer now (items, scores, sources, model version)
    for customer in customers:
        generated = service.generate(customer, K)
        assert batch[customer].items == generated.items, customer
        assert batch[customer].model_version == generated.model_version == service.model_version()
        assert batch[customer].version == 1


def test_manual_items_and_exclusions_survive(service: RecommendationService) -> None:
    # Given a customer's list with a manual product and an excluded product the model would recommend
    top = service.generate(KNOWN_CUSTOMER, K).items[0].product_id
    service.update(KNOWN_CUSTOMER, [ProductInput(product_id="MANUAL-1", score=-100.0)])
    service.delete(KNOWN_CUSTOMER, [top])
    # When the batch regenerates every list, this one included (force: generate wrote this model's version)
    done = run_batch(service, BatchOptions(k=K, force=True), segments=2, workers=1)
    assert done.failed == []
    stored = service.store.get(KNOWN_CUSTOMER)
    assert stored is not None
    # Then the manual product is still there, the excluded one is still excluded and absent, beside K model products
    assert Recommendation("MANUAL-1", -100.0, "manual", None) in stored.items
    assert top in stored.excluded
    assert top not in {i.product_id for i in stored.items}
    assert sum(i.source == "model" for i in stored.items) == K
    assert [i.score for i in stored.items] == sorted((i.score for i in stored.items), reverse=True)


def test_a_rerun_with_the_same_model_skips_every_list_unless_forced(service: RecommendationService) -> None:
    first = run_batch(service, BatchOptions(k=K), segments=2, workers=2)
    again = run_batch(service, BatchOptions(k=K), segments=2, workers=2)
    assert (again.seen, again.written, again.skipped["current"]) == (first.seen, 0, first.seen)
    forced = run_batch(service, BatchOptions(k=K, force=True), segments=2, workers=2)
    assert forced.written == first.seen


def test_an_interrupted_run_restarted_writes_every_customer_once_with_the_final_model(
    service: RecommendationService, histories: SliceHistories
) -> None:
    # Given every customer's list from an older model
    customers = sorted(histories.by_customer)
    for customer in customers:
        service.store.put(RecommendationList(customer, (Recommendation("OLD", 1.0, "model"),), model_version="old"))
    # When a run stops half-way (after a number of customers), then runs again to the end
    seen = iter(range(len(customers)))
    half = len(customers) // 2
    stopped = run_batch(service, BatchOptions(k=K), segments=4, workers=1, should_stop=lambda: next(seen) >= half)
    resumed = run_batch(service, BatchOptions(k=K), segments=4, workers=1)
    # Then the first run wrote half and said it was incomplete; the second wrote the rest and skipped the first's
    assert (stopped.written, stopped.complete) == (half, False)
    assert (resumed.written, resumed.skipped["current"], resumed.complete) == (len(customers) - half, half, True)
    # And every customer's list was written exactly once by the batch (version 1 -> 2) with the final model
    for customer, stored in lists(service, customers).items():
        assert (stored.version, stored.model_version) == (2, service.model_version()), customer


def test_customers_without_usable_history_are_left_alone_or_get_the_popular_list(
    service: RecommendationService,
) -> None:
    # Given a customer whose history holds only products the model does not know
    unknown = PurchaseHistory("only-unknown").add([Purchase("NOT-IN-THE-MODEL", 1, 1_300_000_000)], 10)
    service.store.put_history(unknown)
    # When the batch runs without the flag, the customer is skipped and has no list
    left = run_batch(service, BatchOptions(k=K), segments=1, workers=1)
    assert left.skipped["no_history"] == 1
    assert service.store.get("only-unknown") is None
    # When it runs with the flag, the customer gets the popular list
    told = run_batch(service, BatchOptions(k=K, popular_for_unknown=True), segments=1, workers=1)
    assert (told.written, told.skipped["current"]) == (1, left.written)
    stored = service.store.get("only-unknown")
    assert stored is not None
    assert len(stored.items) == K
    assert {i.source for i in stored.items} == {"popular"}


class AlwaysLosing(DynamoDBStore):
    """The DynamoDB store, where one customer's list write always loses the optimistic-lock race."""

    def put(self, stored: RecommendationList) -> RecommendationList:
        if stored.customer_id == KNOWN_CUSTOMER:
            raise VersionConflict
        return super().put(stored)


def test_a_customer_whose_write_keeps_losing_is_failed_and_listed(
    aws: Any, monkeypatch: pytest.MonkeyPatch, histories: SliceHistories
) -> None:
    monkeypatch.setenv("WRITE_RETRIES", "2")
    settings = load_settings()
    service = default_service(settings, AlwaysLosing(settings))
    done = run_batch(service, BatchOptions(k=K), segments=2, workers=2)
    assert done.failed == [KNOWN_CUSTOMER]
    assert (done.seen, done.written) == (len(histories.by_customer), len(histories.by_customer) - 1)
    assert done.to_json()["failed_customers"] == [KNOWN_CUSTOMER]


@pytest.fixture
def served_dynamodb(
    model_dir: Any, histories: SliceHistories, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RecommendationService]:
    """The service on moto's DynamoDB server (loopback; conditional writes atomic, as in DynamoDB), histories
    seeded, lost races counted."""
    make_conditional_writes_atomic(monkeypatch)
    monkeypatch.setattr(LostRaces, "lost", 0)
    env = {"TABLE_NAME": TABLE, "MODEL_DIR": str(model_dir), "WRITE_RETRIES": "20"}
    with moto_server(monkeypatch, env | {"POWERTOOLS_TRACE_DISABLED": "true"}):
        settings = load_settings()
        service = default_service(settings, LostRaces(settings))
        for history in histories.by_customer.values():
            service.store.put_history(history)
        yield service


def test_32_concurrent_updates_during_a_batch_are_none_lost(
    served_dynamodb: RecommendationService, histories: SliceHistories
) -> None:
    # Given the batch running over every customer (4 workers) on moto's server, held after its first customer until
    # the 32 updaters are released (so the rest of the batch runs while they do)
    service = served_dynamodb
    customers = sorted(histories.by_customer)[:8]
    started, going = threading.Event(), threading.Event()
    released = threading.Barrier(UPDATERS, action=going.set)

    def first_then_wait(_: str) -> None:
        started.set()
        going.wait()

    results: list[Any] = []
    batch = threading.Thread(
        target=lambda: results.append(
            run_batch(service, BatchOptions(k=K), segments=4, workers=4, on_customer=first_then_wait)
        )
    )

    # When 32 threads at once each add a manual product to one of 8 customers
    def update(i: int) -> bool:
        started.wait()
        released.wait()
        try:
            service.update(customers[i % len(customers)], [ProductInput(product_id=f"CONC-{i:02d}", score=float(i))])
        except ConflictError:
            return False
        return True

    batch.start()
    with ThreadPoolExecutor(max_workers=UPDATERS) as pool:
        succeeded = [i for i, ok in enumerate(pool.map(update, range(UPDATERS))) if ok]
    batch.join()
    (done,) = results
    print(f"\nbatch + updates: {len(succeeded)} of {UPDATERS} updates succeeded, {LostRaces.lost} lost races")
    # Then every successful update's product is in its customer's list, and the batch wrote or listed every customer
    assert LostRaces.lost, "nobody raced"
    for i in succeeded:
        stored = service.store.get(customers[i % len(customers)])
        assert stored is not None
        assert f"CONC-{i:02d}" in {item.product_id for item in stored.items}, i
    assert len(succeeded) >= UPDATERS // 2
    assert done.seen == done.written + len(done.failed) == len(histories.by_customer)
    # And the customers the batch did write carry the model's version
    for customer, stored in lists(service, sorted(histories.by_customer)).items():
        if customer not in done.failed:
            assert stored.model_version == service.model_version(), customer


class LongContext(FakeLambdaContext):
    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def test_the_batch_function_regenerates_its_segment_and_returns_the_accounting(
    service: RecommendationService, histories: SliceHistories
) -> None:
    handler = make_handler(lambda _: service)
    long: Any = LongContext()
    answers = [handler({"segment": s, "total_segments": 2, "k": K}, long) for s in range(2)]
    assert sum(a["written"] for a in answers) == len(histories.by_customer)
    assert {a["model_version"] for a in answers} == {service.model_version()}
    assert all(a["failed"] == 0 and a["failed_customers"] == [] for a in answers)
    # The event file (sam local invoke, the console) is one the function takes: one segment of one, all current now
    event = json.loads((EVENTS_DIR / "batch_generate.json").read_text(encoding="utf-8"))
    assert handler(event, long)["skipped_by_reason"]["current"] == len(histories.by_customer)
    with pytest.raises(ValidationError):
        handler({"segment": 2, "total_segments": 2}, long)
    # A segment with less than a minute left stops before its first customer; the state machine retries it
    short: Any = FakeLambdaContext()  # 30 s left
    with pytest.raises(SegmentIncomplete):
        handler({"segment": 0, "total_segments": 1, "force": True}, short)


def test_recsys_batch_prints_the_accounting(
    service: RecommendationService, histories: SliceHistories, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["batch", "--segments", "3", "--workers", "2", "--k", str(K)]) == 0
    out = capsys.readouterr().out
    assert f'"written": {len(histories.by_customer)}' in out
    assert '"customers_per_second"' in out


def test_a_segment_is_one_share_of_the_customers(service: RecommendationService, histories: SliceHistories) -> None:
    seen: list[str] = []
    for segment in range(3):
        regenerate_segment(service, segment, 3, BatchOptions(k=K), on_customer=seen.append)
    assert len(seen) == len(histories.by_customer)
