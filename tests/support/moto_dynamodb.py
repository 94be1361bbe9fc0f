"""moto's DynamoDB made as strict as DynamoDB where the tests need it, or failing as DynamoDB can."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException
from moto.dynamodb.models.table import Table
from moto.server import ThreadedMotoServer


def make_conditional_writes_atomic(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's put_item under a lock: the condition check and the write are one step, as in DynamoDB.

    moto applies a conditional write as a check followed by a store, without a lock: concurrent writers can both pass
    the check and one write is lost, which DynamoDB never allows. Tests of concurrent writers need DynamoDB's
    guarantee, so that what they test is the service's optimistic locking, not moto's missing one."""
    lock = threading.Lock()
    put_item = Table.put_item

    @functools.wraps(put_item)
    def atomic(self: Table, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return put_item(self, *args, **kwargs)

    monkeypatch.setattr(Table, "put_item", atomic)


def throttled(*_: Any, **__: Any) -> None:
    """A stand-in for a moto backend method (e.g. ``DynamoDBBackend.get_item``): DynamoDB throttling the request.
    Injected in the backend: a botocore hook that answered in moto's place would not stop moto applying a write."""
    raise DynamodbException(f"{ERROR_TYPE_PREFIX}ProvisionedThroughputExceededException", "Throughput exceeded")


@contextmanager
def moto_server(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Iterator[str]:
    """moto's DynamoDB server on a free loopback port (threads of this process), the environment pointing the service
    at it (``env`` added), the template's tables created; yields the endpoint URL."""
    from recsys.settings import load_settings
    from recsys_tools.local_stack import create_table, free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    local = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in (local | {"DYNAMODB_ENDPOINT_URL": endpoint} | env).items():
        monkeypatch.setenv(name, value)
    try:
        create_table(load_settings())
        yield endpoint
    finally:
        server.stop()
