"""The local stack for `recsys serve`, the benchmarks and the tests: the table created from template.yaml's own
definition, so local runs use exactly what is deployed; free loopback ports for local servers."""

from __future__ import annotations

import socket
from typing import Any

from recsys.settings import Settings
from recsys.store import create_table as create_table_from
from recsys.store import dynamodb_client
from recsys_tools.template import load_template, table_resource


def create_table(settings: Settings, template: dict[str, Any] | None = None) -> None:
    """Create the settings' table (TABLE_NAME) with the template's key schema, billing mode and TTL settings."""
    create_table_from(dynamodb_client(settings), settings.table_name, table_resource(template or load_template()))


def free_port() -> int:
    """A TCP port free on loopback right now (for a local server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
