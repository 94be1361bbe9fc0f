"""The local stack for `recsys serve`, the benchmarks and the tests: the tables created from template.yaml's own
definitions, so local runs use exactly what is deployed; free loopback ports for local servers."""

from __future__ import annotations

import socket
from typing import Any

from recsys.settings import Settings
from recsys.store import create_table as create_table_from
from recsys.store import dynamodb_client
from recsys_tools.template import idempotency_table_logical_id, load_template, table_logical_id, tables


def create_table(settings: Settings, template: dict[str, Any] | None = None) -> None:
    """Create the settings' tables (TABLE_NAME, IDEMPOTENCY_TABLE_NAME) with the template's key schemas, billing mode
    and TTL settings."""
    template = template or load_template()
    definitions = tables(template)
    client = dynamodb_client(settings)
    create_table_from(client, settings.table_name, definitions[table_logical_id(template)])
    create_table_from(client, settings.idempotency_table_name, definitions[idempotency_table_logical_id(template)])


def free_port() -> int:
    """A TCP port free on loopback right now (for a local server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
