"""The local stack for `recsys serve`, the benchmarks and the tests: the table created from template.yaml's own
definition, so local runs use exactly what is deployed."""

from __future__ import annotations

from typing import Any

from recsys_tools.template import load_template, table_resource

TABLE_PROPERTIES = ("KeySchema", "AttributeDefinitions", "BillingMode")


def create_table(client: Any, table_name: str, template: dict[str, Any] | None = None) -> None:
    """Create ``table_name`` with the template's key schema and billing mode, and its TTL setting."""
    properties = table_resource(template or load_template())
    client.create_table(TableName=table_name, **{key: properties[key] for key in TABLE_PROPERTIES})
    ttl = properties.get("TimeToLiveSpecification")
    if ttl:
        client.update_time_to_live(TableName=table_name, TimeToLiveSpecification=ttl)
