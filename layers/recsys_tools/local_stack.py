"""The local stack for `recsys serve`, the benchmarks and the tests: the table created from template.yaml's own
definition, so local runs use exactly what is deployed."""

from __future__ import annotations

from typing import Any

from recsys.settings import Settings
from recsys.store import DynamoDBStore
from recsys_tools.template import load_template, table_resource


def create_table(settings: Settings, template: dict[str, Any] | None = None) -> None:
    """Create the settings' table with the template's key schema, billing mode and TTL setting."""
    DynamoDBStore(settings).create_table(table_resource(template or load_template()))
