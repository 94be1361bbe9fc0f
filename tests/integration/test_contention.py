"""Contention: 32 concurrent writers on one customer's list lose no update, through the service and over HTTP
(to several app instances, as to several Lambda containers).

The writers touch disjoint products (writer i adds NEW-i or deletes BASE-i), so applying the successful operations
one by one gives the same list in any order: that sequential result is the reference. Every call either succeeds or
gets a conflict (409) after the bounded retries, and every success is exactly one write (the version counts them).

moto applies a conditional write as a check followed by a store, without a lock: concurrent writers can both pass the
check and one write is lost, which DynamoDB never allows (a race this module showed with raw put_items: 640
successful conditional writes, version 593). The ``atomic_conditional_writes`` fixture gives moto DynamoDB's
guarantee, so what is tested is the service's optimistic locking, not moto's missing one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from recsys.api import create_app
from recsys.domain import PurchaseHistory, Recommendation, RecommendationList
from recsys.errors import ConflictError, VersionConflict
from recsys.schemas import ProductInput
from recsys.service import RecommendationService, default_service
from recsys.settings import load_settings
from recsys.store import DynamoDBStore
from recsys_tools.local_stack import free_port
from tests.support.api import TABLE
from tests.support.moto_dynamodb import make_conditional_writes_atomic, moto_server

WRITERS = 32
SERVERS = 4  # local app instances, each serving one request at a time like a Lambda container
WRITE_RETRIES = 20  # the setting's maximum: under 32 writers on one item some calls may still get 409
CUSTOMER = "contended"
REFERENCE = "sequential"
BASE = tuple(
    Recommendation(f"BASE-{i:02d}", float(100 + i), "manual") for i in range(1, WRITERS, 2)
)  # odd writers' own


@dataclass(frozen=True)
class Operation:
    kind: str  # "update" or "delete"
    product_id: str
    score: float = 0.0

    def apply(self, service: RecommendationService, customer_id: str) -> None:
        if self.kind == "update":
            service.update(customer_id, [ProductInput(product_id=self.product_id, score=self.score)])
        else:
            service.delete(customer_id, [self.product_id])

    def send(self, client: httpx.Client, customer_id: str) -> int:
        url = f"/customers/{customer_id}/recommendations"  # the list route of recsys.operations
        if self.kind == "update":
            body: dict[str, Any] = {"products": [{"product_id": self.product_id, "score": self.score}]}
            return client.patch(url, json=body).status_code
        return client.request("DELETE", url, json={"product_ids": [self.product_id]}).status_code


def operations() -> list[Operation]:
    """Even writers add a new product, odd ones delete their base product: disjoint products, mixed kinds."""
    return [
        Operation("update", f"NEW-{i:02d}", float(i)) if i % 2 == 0 else Operation("delete", f"BASE-{i:02d}")
        for i in range(WRITERS)
    ]


def run_concurrently(call: Callable[[Operation], bool]) -> dict[Operation, bool]:
    """Each operation in its own thread, released together; maps each to whether it succeeded."""
    barrier = threading.Barrier(WRITERS)

    def released(operation: Operation) -> bool:
        barrier.wait()
        return call(operation)

    ops = operations()
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        return dict(zip(ops, pool.map(released, ops), strict=True))


def seed(service: RecommendationService, customer_id: str) -> None:
    service.store.put(RecommendationList(customer_id=customer_id, items=BASE))


def assert_no_lost_update(service: RecommendationService, outcomes: dict[Operation, bool], lost_races: int) -> None:
    """The contended list equals the successful operations applied one by one to a fresh copy of the start."""
    succeeded = [operation for operation, ok in outcomes.items() if ok]
    failed = WRITERS - len(succeeded)
    print(f"\ncontention: {len(succeeded)} of {WRITERS} succeeded, {failed} got 409, {lost_races} lost races")
    assert lost_races, "the writers never raced"
    seed(service, REFERENCE)
    for operation in succeeded:
        operation.apply(service, REFERENCE)
    contended, reference = service.store.get(CUSTOMER), service.store.get(REFERENCE)
    assert contended is not None
    assert reference is not None
    assert contended.items == reference.items
    assert set(contended.excluded) == set(reference.excluded)  # their order is the commit order, not known here
    assert contended.version == 1 + len(succeeded)  # one write per success: none lost, none doubled
    assert len(succeeded) >= WRITERS // 2, f"only {len(succeeded)} of {WRITERS} succeeded"


@pytest.fixture
def atomic_conditional_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    make_conditional_writes_atomic(monkeypatch)


class ConflictCountingStore:
    """The DynamoDB store, counting the conditional writes that lost a race (proof that the writers contended)."""

    def __init__(self, store: DynamoDBStore) -> None:
        self.inner = store
        self.lost = 0

    def get(self, customer_id: str) -> RecommendationList | None:
        return self.inner.get(customer_id)

    def put(self, stored: RecommendationList) -> RecommendationList:
        try:
            return self.inner.put(stored)
        except VersionConflict:
            self.lost += 1
            raise

    def get_history(self, customer_id: str) -> PurchaseHistory | None:
        return self.inner.get_history(customer_id)

    def get_with_history(self, customer_id: str) -> tuple[RecommendationList | None, PurchaseHistory | None]:
        return self.inner.get_with_history(customer_id)

    def put_history(self, history: PurchaseHistory) -> PurchaseHistory:
        return self.inner.put_history(history)


@dataclass(frozen=True)
class Contended:
    service: RecommendationService
    store: ConflictCountingStore


def contended() -> Contended:
    """The service (with WRITE_RETRIES from the environment) on a conflict-counting DynamoDB store."""
    settings = load_settings()
    store = ConflictCountingStore(DynamoDBStore(settings))
    return Contended(default_service(settings, store), store)


@pytest.fixture
def contended_service(aws: Any, monkeypatch: pytest.MonkeyPatch, atomic_conditional_writes: None) -> Contended:
    monkeypatch.setenv("WRITE_RETRIES", str(WRITE_RETRIES))
    return contended()


def test_32_concurrent_writers_through_the_service_lose_no_update(contended_service: Contended) -> None:
    # Given a stored list of 16 products
    service = contended_service.service
    seed(service, CUSTOMER)

    # When 32 threads at once each add a new product or delete a base product
    def call(operation: Operation) -> bool:
        try:
            operation.apply(service, CUSTOMER)
        except ConflictError:
            return False
        return True

    outcomes = run_concurrently(call)
    # Then the writers contended, and the list is what the successful operations give one by one
    assert_no_lost_update(service, outcomes, contended_service.store.lost)


def warm_up(url: str) -> None:
    """A first request to each route the test uses, writing nothing. FastAPI builds a route's dependencies on its first
    request and silences a pydantic warning meanwhile with warnings.catch_warnings(), which is not thread-safe: servers
    doing that at once sometimes let the warning out."""
    with httpx.Client(base_url=url, timeout=60) as client:
        path = f"/customers/{CUSTOMER}-warm-up/recommendations"
        assert client.patch(path, json={}).status_code == 422
        assert client.request("DELETE", path, json={"product_ids": ["P"]}).status_code == 404


@pytest.fixture
def http_servers(
    model_dir: Any, monkeypatch: pytest.MonkeyPatch, atomic_conditional_writes: None
) -> Iterator[tuple[list[str], Contended]]:
    """SERVERS local apps (uvicorn, each in a thread) on moto's DynamoDB server (in this process), all on loopback.
    An app serves one request at a time (recsys.api), like a Lambda container: concurrency comes from several."""
    env = {"TABLE_NAME": TABLE, "MODEL_DIR": str(model_dir), "WRITE_RETRIES": str(WRITE_RETRIES)}
    with moto_server(monkeypatch, env | {"POWERTOOLS_TRACE_DISABLED": "true"}):
        yield from _servers()


def _servers() -> Iterator[tuple[list[str], Contended]]:
    """SERVERS local apps on the DynamoDB the environment names, until the test is done."""
    shared = contended()  # one store counts every app's lost races (each app still serves one request at a time)
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                create_app(load_settings(), lambda: shared.service),
                host="127.0.0.1",
                port=free_port(),
                log_level="warning",
            )
        )
        for _ in range(SERVERS)
    ]
    threads = [threading.Thread(target=server.run, daemon=True) for server in servers]
    for thread in threads:
        thread.start()
    try:
        while not all(server.started for server in servers):
            assert all(thread.is_alive() for thread in threads), "uvicorn did not start"
            threading.Event().wait(0.05)
        urls = [f"http://127.0.0.1:{server.config.port}" for server in servers]
        for url in urls:  # one server at a time: see warm_up
            warm_up(url)
        yield urls, shared
    finally:
        for server in servers:
            server.should_exit = True
        for thread in threads:
            thread.join(timeout=30)


def test_32_concurrent_writers_over_http_lose_no_update(http_servers: tuple[list[str], Contended]) -> None:
    # Given a stored list of 16 products behind several local HTTP servers
    urls, shared = http_servers
    service = shared.service
    seed(service, CUSTOMER)
    server_of = {operation: urls[i % SERVERS] for i, operation in enumerate(operations())}

    # When 32 HTTP clients at once each add a new product or delete a base product, spread over the servers
    def call(operation: Operation) -> bool:
        with httpx.Client(base_url=server_of[operation], timeout=60) as client:
            status = operation.send(client, CUSTOMER)
        assert status in {200, 409}, status
        return status == 200

    outcomes = run_concurrently(call)
    # Then the writers contended, every answer was 200 or 409, and no update was lost
    assert_no_lost_update(service, outcomes, shared.store.lost)
