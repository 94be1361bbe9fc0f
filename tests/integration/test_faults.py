"""Faults: DynamoDB throttling and a missing table answer 503 with Retry-After and change nothing; a missing or
corrupt model stops generate and update at init while show and delete keep working."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.retries.standard import ExponentialBackoff
from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException
from moto.dynamodb.models import DynamoDBBackend

from recsys import dependencies
from recsys.dependencies import get_service
from recsys.observability import logger
from recsys.settings import REPO_ROOT
from recsys.store import StoredItem, StoredList
from tests.conftest import KNOWN_CUSTOMER
from tests.integration.conftest import Api, Response
from tests.integration.test_operations import raw_item

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


def seed(customer_id: str = KNOWN_CUSTOMER) -> StoredList:
    """A stored list written straight through the store (no model needed)."""
    items = tuple(StoredItem(f"MANUAL-{i}", float(10 - i), "manual") for i in range(3))
    return get_service().store.put(StoredList(customer_id=customer_id, items=items))


@pytest.fixture
def attempts_setting(aws: Any, monkeypatch: pytest.MonkeyPatch) -> int:
    """DYNAMODB_MAX_ATTEMPTS set to a non-default value, botocore's back-off sleeps made instant."""
    monkeypatch.setenv("DYNAMODB_MAX_ATTEMPTS", "4")
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    dependencies.reset()
    return 4


class _CurrentStdout:
    """Writes to whatever ``sys.stdout`` is now (pytest swaps it between a fixture's set-up and the test)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def log_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[[], list[dict[str, Any]]]:
    """The Powertools logger's JSON lines, read from the captured stdout (its handler keeps the stdout of import)."""
    monkeypatch.setattr(logger.registered_handler, "stream", _CurrentStdout())

    def lines() -> list[dict[str, Any]]:
        out = capsys.readouterr().out
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    return lines


def assert_retry_later(response: Response) -> None:
    assert response.status == 503, response.body
    assert int(response.headers["retry-after"]) >= 1
    assert response.body["error"]["code"] == "unavailable"


def test_the_store_uses_botocores_standard_retry_mode_with_the_configured_attempts(attempts_setting: int) -> None:
    # Given DYNAMODB_MAX_ATTEMPTS=4; When the service's DynamoDB client is built; Then it retries in standard mode
    client: Any = get_service().store.client
    retries = client.meta.config.retries
    assert retries == {"mode": "standard", "total_max_attempts": attempts_setting}


def test_throttled_reads_answer_503_with_retry_after_after_every_configured_attempt(
    api: Api, attempts_setting: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stored list and DynamoDB throttling every GetItem
    seed()
    attempts = throttle(monkeypatch, get_service().store.client, "GetItem")
    # When the list is read
    response = api("GET", KNOWN_CUSTOMER)
    # Then 503 with Retry-After, after exactly the configured number of attempts
    assert_retry_later(response)
    assert len(attempts) == attempts_setting


@pytest.mark.parametrize("method", sorted(WRITES))
def test_throttled_writes_answer_503_and_leave_the_stored_item_unchanged(
    api: Api, aws: Any, attempts_setting: int, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    # Given a stored list and DynamoDB throttling every PutItem
    seed()
    before = raw_item(aws, KNOWN_CUSTOMER)
    attempts = throttle(monkeypatch, get_service().store.client, "PutItem")
    # When a write is attempted
    response = api(method, KNOWN_CUSTOMER, **WRITES[method])
    # Then 503 with Retry-After after exactly the configured attempts, and the item is as it was
    assert_retry_later(response)
    assert len(attempts) == attempts_setting
    assert raw_item(aws, KNOWN_CUSTOMER) == before


def test_a_missing_table_answers_503_and_logs_which_setting_to_check(
    api: Api, monkeypatch: pytest.MonkeyPatch, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    # Given TABLE_NAME names a table that does not exist
    monkeypatch.setenv("TABLE_NAME", "no-such-table")
    dependencies.reset()
    # When a list is read
    response = api("GET", KNOWN_CUSTOMER)
    # Then a clear 503 with Retry-After, and an error log line naming the table and the setting
    assert_retry_later(response)
    assert "not available" in response.body["error"]["message"]
    errors = [line["message"] for line in log_lines() if line.get("level") == "ERROR"]
    assert any("no-such-table" in message and "TABLE_NAME" in message for message in errors), errors


def test_show_and_delete_keep_working_and_generate_answers_503_without_the_model(
    api: Api, aws: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a stored list and MODEL_DIR pointing at a directory that does not exist
    seed()
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "missing"))
    dependencies.reset()
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
