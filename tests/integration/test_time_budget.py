"""Issue 14, item 2: every request has a time budget below its function's timeout. DynamoDB's connect and read
timeouts, attempts and REQUEST_BUDGET_SECONDS come from the settings; template.yaml's Timeout of every function is
checked against them; a DynamoDB that accepts connections and never answers gives show and delete a 503 with
Retry-After in time, through their Lambda handlers and the local app."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recsys.api import create_app
from recsys.errors import ConfigurationError
from recsys.handler import make_handler
from recsys.operations import DELETE, SHOW
from recsys.service import default_service
from recsys.settings import Settings, load_settings
from recsys_tools.template import environment, functions, tables
from tests.support.api import Api, via_lambda, via_local_app

INIT_AND_CPU_SECONDS = 1.0  # what a request needs besides DynamoDB, kept free below the function's Timeout


def function_settings(template: dict[str, Any], logical_id: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a function gets from the template's environment (Globals and its own variables)."""
    names = {name: name for name in tables(template)}
    for name, value in environment(template, logical_id, names).items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_every_functions_time_budget_stays_below_its_timeout(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    default_timeout = template["Globals"]["Function"]["Timeout"]
    checked = []
    for logical_id, function in functions(template).items():
        timeout = function.properties.get("Timeout", default_timeout)
        with monkeypatch.context() as env:
            settings = function_settings(template, logical_id, env)
        # one DynamoDB call, every attempt timing out and every back-off at its longest, ends before the timeout
        assert settings.dynamodb_call_seconds() + INIT_AND_CPU_SECONDS < timeout, (logical_id, settings)
        # and the whole request: attempts start only while one fits in the budget, plus one back-off after it
        assert settings.request_budget_seconds < settings.request_seconds()
        assert settings.request_seconds() + INIT_AND_CPU_SECONDS < timeout, (logical_id, settings)
        checked.append(logical_id)
    assert len(checked) == 5


def test_the_default_timeouts_give_up_on_a_silent_dynamodb_within_3_seconds() -> None:
    settings = Settings()
    # a loopback connect is immediate; every attempt then waits DYNAMODB_READ_TIMEOUT (back-offs after a timeout
    # are 25 ms * 2^i at most)
    assert settings.dynamodb_max_attempts * settings.dynamodb_read_timeout + 0.1 < 3


def test_the_budget_must_fit_one_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUEST_BUDGET_SECONDS", "0.5")
    with pytest.raises(ConfigurationError, match="REQUEST_BUDGET_SECONDS"):
        load_settings()


@pytest.fixture
def silent_dynamodb() -> Iterator[str]:
    """A loopback server that accepts every connection and never answers; its URL."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            held.append(connection)  # kept open, never read from nor written to

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


@pytest.fixture(params=["lambda", "local"])
def hung_api(request: pytest.FixtureRequest, silent_dynamodb: str, monkeypatch: pytest.MonkeyPatch) -> Api:
    """show and delete, configured for the silent DynamoDB (no moto here: it would answer every endpoint itself),
    with a request budget of 2.5 s: two attempts of the defaults' 1.3 s worst case fit, a third does not."""
    for name, value in {
        "DYNAMODB_ENDPOINT_URL": silent_dynamodb,
        "TABLE_NAME": "recommendations-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "REQUEST_BUDGET_SECONDS": "2.5",
        "POWERTOOLS_METRICS_NAMESPACE": "RecsysTest",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    service = default_service(load_settings())
    if request.param == "lambda":
        return via_lambda({op.name: make_handler(op.name, service_factory=lambda _: service) for op in (SHOW, DELETE)})
    return via_local_app(TestClient(create_app(load_settings(), lambda: service, (SHOW, DELETE))))


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_silent_dynamodb_gives_a_503_with_retry_after_in_time(hung_api: Api, method: str) -> None:
    body = {"product_ids": ["P-1"]} if method == "DELETE" else None
    started = time.monotonic()
    response = hung_api(method, "customer-1", body=body)
    elapsed = time.monotonic() - started
    assert response.status == 503, response.body
    assert response.body["error"]["code"] == "unavailable"
    assert int(response.headers["retry-after"]) >= 1
    # The one timing bound (issue 14 asks for it): the budget stops the third attempt at ~1.6 s (two 0.8 s read
    # timeouts); 3 s leaves room for a loaded machine, and without the budget and timeouts it took 15 s.
    assert elapsed < 3, elapsed
