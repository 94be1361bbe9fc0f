"""Faults: DynamoDB throttling and a missing table answer 503 with Retry-After and change nothing; a missing or
corrupt model stops generate and update at init while show and delete keep working."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ParamValidationError
from botocore.retries.standard import ExponentialBackoff
from fastapi.testclient import TestClient
from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException
from moto.dynamodb.models import DynamoDBBackend

import recsys.store
from recsys.api import create_app
from recsys.domain import Recommendation, RecommendationList
from recsys.service import default_service
from recsys.settings import REPO_ROOT, load_settings
from recsys.store import DynamoDBStore, dynamodb_client
from tests.support.api import TABLE, Api, Response, raw_item, via_local_app
from tests.support.data import KNOWN_CUSTOMER

OPERATIONS = {"GetItem": "get_item", "PutItem": "put_item"}
WRITES: dict[str, dict[str, Any]] = {
    "POST": {"query": {"k": "3"}},
    "PATCH": {"body": {"products": [{"product_id": "MANUAL-1", "score": 1.0}]}},
    "DELETE": {"body": {"product_ids": ["MANUAL-0"]}},
}


def throttle(monkeypatch: pytest.MonkeyPatch, client: Any, operation: str) -> list[int]:
    """DynamoDB answers every ``operation`` with ProvisionedThroughputExceededException; returns the client's attempts.

    The error comes from moto's backend (a hook that answered in moto's place would not stop moto from applying the
    write: botocore calls every ``before-send`` handler). The attempts are counted by a ``before-send`` hook on the
    client, which runs once per HTTP attempt inside botocore's retry loop.
    """

    def throttled(*_: Any, **__: Any) -> None:
        raise DynamodbException(f"{ERROR_TYPE_PREFIX}ProvisionedThroughputExceededException", "Throughput exceeded")

    monkeypatch.setattr(DynamoDBBackend, OPERATIONS[operation], throttled)
    attempts: list[int] = []
    client.meta.events.register(f"before-send.dynamodb.{operation}", lambda **_: attempts.append(1))
    return attempts


def seed(customer_id: str = KNOWN_CUSTOMER) -> RecommendationList:
    """A stored list written straight through the store (no model needed)."""
    items = tuple(Recommendation(f"MANUAL-{i}", float(10 - i), "manual") for i in range(3))
    return DynamoDBStore(load_settings()).put(RecommendationList(customer_id=customer_id, items=items))


ATTEMPTS = 4


@dataclass
class Observed:
    """An API whose service's DynamoDB client the test can watch (and throttle)."""

    api: Api
    client: Any


@pytest.fixture
def observed(aws: Any, monkeypatch: pytest.MonkeyPatch, build_api: Callable[..., Api]) -> Observed:
    """DYNAMODB_MAX_ATTEMPTS set to a non-default value, botocore's back-off sleeps made instant, and the API around a
    service whose DynamoDB client is the test's."""
    monkeypatch.setenv("DYNAMODB_MAX_ATTEMPTS", str(ATTEMPTS))
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    settings = load_settings()
    client = dynamodb_client(settings)
    return Observed(build_api(default_service(settings, DynamoDBStore(settings, client))), client)


def assert_retry_later(response: Response) -> None:
    assert response.status == 503, response.body
    assert int(response.headers["retry-after"]) >= 1
    assert response.body["error"]["code"] == "unavailable"


def test_the_store_uses_botocores_standard_retry_mode_with_the_configured_attempts(observed: Observed) -> None:
    # Given DYNAMODB_MAX_ATTEMPTS=4; When the service's DynamoDB client is built; Then it retries in standard mode
    retries = observed.client.meta.config.retries
    assert retries == {"mode": "standard", "total_max_attempts": ATTEMPTS}


def test_the_tests_clients_validate_requests_as_deployed_ones_leave_to_dynamodb(
    observed: Observed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a request DynamoDB's API model refuses (ConsistentRead must be a boolean), which moto answers
    key = {"customer_id": {"S": "c"}, "record": {"S": "list"}}
    request: dict[str, Any] = {"TableName": TABLE, "Key": key, "ConsistentRead": "y"}
    # When the tests' client sends it; Then botocore refuses it (tests/conftest.py turns its check on)
    with pytest.raises(ParamValidationError):
        observed.client.get_item(**request)
    # When a client built as deployed sends it; Then it goes (recsys.store.VALIDATE_PARAMETERS: DynamoDB checks it)
    monkeypatch.setattr(recsys.store, "VALIDATE_PARAMETERS", False)
    assert "Item" not in dynamodb_client(load_settings()).get_item(**request)


def test_throttled_reads_answer_503_with_retry_after_after_every_configured_attempt(
    observed: Observed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stored list and DynamoDB throttling every GetItem
    seed()
    attempts = throttle(monkeypatch, observed.client, "GetItem")
    # When the list is read
    response = observed.api("GET", KNOWN_CUSTOMER)
    # Then 503 with Retry-After, after exactly the configured number of attempts
    assert_retry_later(response)
    assert len(attempts) == ATTEMPTS


@pytest.mark.parametrize("method", sorted(WRITES))
def test_throttled_writes_answer_503_and_leave_the_stored_item_unchanged(
    observed: Observed, aws: Any, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    # Given a stored list and DynamoDB throttling every PutItem
    seed()
    before = raw_item(aws, KNOWN_CUSTOMER)
    attempts = throttle(monkeypatch, observed.client, "PutItem")
    # When a write is attempted
    response = observed.api(method, KNOWN_CUSTOMER, **WRITES[method])
    # Then 503 with Retry-After after exactly the configured attempts, and the item is as it was
    assert_retry_later(response)
    assert len(attempts) == ATTEMPTS
    assert raw_item(aws, KNOWN_CUSTOMER) == before


def test_a_missing_table_answers_503_and_logs_which_setting_to_check(
    build_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    # Given TABLE_NAME names a table that does not exist
    monkeypatch.setenv("TABLE_NAME", "no-such-table")
    api = build_api()
    # When a list is read
    response = api("GET", KNOWN_CUSTOMER)
    # Then a clear 503 with Retry-After, and an error log line naming the table and the setting
    assert_retry_later(response)
    assert "not available" in response.body["error"]["message"]
    errors = [line["message"] for line in log_lines() if line.get("level") == "ERROR"]
    assert any("no-such-table" in message and "TABLE_NAME" in message for message in errors), errors


def test_show_and_delete_keep_working_and_generate_answers_503_without_the_model(
    aws: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a stored list and the local app (all routes in one process) with MODEL_DIR pointing at a directory that
    # does not exist; Lambda's generate and update fail at init instead (the test below)
    seed()
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "missing"))
    service = default_service(load_settings())
    api = via_local_app(TestClient(create_app(load_settings(), lambda: service)))
    # When the list is shown, a product deleted, and a new list generated
    shown = api("GET", KNOWN_CUSTOMER)
    deleted = api("DELETE", KNOWN_CUSTOMER, body={"product_ids": ["MANUAL-0"]})
    before = raw_item(aws, KNOWN_CUSTOMER)
    generated = api("POST", KNOWN_CUSTOMER)
    # Then show and delete work, generate answers 503 with Retry-After and writes nothing
    assert shown.status == 200, shown.body
    assert deleted.status == 200, deleted.body
    assert [i["product_id"] for i in deleted.body["items"]] == ["MANUAL-1", "MANUAL-2"]
    assert generated.status == 503, generated.body
    assert generated.body["error"]["code"] == "model_unavailable"
    assert int(generated.headers["retry-after"]) >= 1
    assert raw_item(aws, KNOWN_CUSTOMER) == before


# Imports every handler in a fresh process, as Lambda's init does: show and delete must initialise, and generate
# and update must fail with a clear error.
INIT_SCRIPT = """
import importlib, sys
for name in ("show_recommendations", "delete_recommendations"):
    importlib.import_module(f"functions.{name}.app")
print("show and delete initialised; tensorflow imported:", "tensorflow" in sys.modules, flush=True)
for name in ("customer_recommendations", "update_recommendations"):
    try:
        importlib.import_module(f"functions.{name}.app")
    except Exception as error:
        print(f"{name} failed at init: {type(error).__name__}: {error}", flush=True)
    else:
        print(f"{name} initialised", flush=True)
"""


def _missing(model_dir: Path, target: Path) -> Path:
    return target / "missing"


def _corrupt(relative: str) -> Callable[[Path, Path], Path]:
    def corrupt(model_dir: Path, target: Path) -> Path:
        copy = Path(shutil.copytree(model_dir, target / "model"))
        (copy / relative).write_bytes(b"\x00 not what it should be {")
        return copy

    return corrupt


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(_missing, id="missing"),
        pytest.param(_corrupt("manifest.json"), id="corrupt-manifest"),
        pytest.param(_corrupt("saved_model/saved_model.pb"), id="corrupt-saved-model", marks=pytest.mark.stress),
    ],
)
def test_generate_and_update_fail_at_init_with_a_broken_model_while_show_and_delete_start(
    model_dir: Path, tmp_path: Path, broken: Callable[[Path, Path], Path]
) -> None:
    # Given a model directory that is missing or corrupt
    path = broken(model_dir, tmp_path)
    env = os.environ | {"MODEL_DIR": str(path), "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true"}
    # When every handler is initialised in a fresh process, as Lambda does
    done = subprocess.run(
        [sys.executable, "-c", INIT_SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    output = done.stdout + done.stderr
    # Then show and delete start without TensorFlow; generate and update fail naming the problem, the directory and
    # the setting to fix
    assert done.returncode == 0, output
    assert "show and delete initialised; tensorflow imported: False" in output, output
    for handler in ("customer_recommendations", "update_recommendations"):
        expected = f"{handler} failed at init: ModelUnavailableError: The recommendation model is not available"
        assert expected in output, output
    assert str(path) in output, output
    assert "MODEL_DIR" in output, output
