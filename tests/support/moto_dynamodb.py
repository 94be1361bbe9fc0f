"""moto's DynamoDB made as strict as DynamoDB where the tests need it, or failing as DynamoDB can."""

from __future__ import annotations

import functools
import threading
from typing import Any

import pytest
from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException
from moto.dynamodb.models.table import Table


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
