"""The local stack for `recsys serve` and the tests: an embedded DynamoDB (moto's server) on loopback and the table
created from template.yaml's own definition, so local runs use exactly what is deployed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from recsys.settings import REPO_ROOT

TEMPLATE = REPO_ROOT / "template.yaml"
TABLE_PROPERTIES = ("KeySchema", "AttributeDefinitions", "BillingMode")


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation short-form tags (!Ref, !Sub, ...) as {"Ref": ...} / {"Fn::Sub": ...}."""


def _cfn_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = tag_suffix if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if name == "Fn::GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        template: dict[str, Any] = yaml.load(f, Loader=_CfnLoader)  # noqa: S506  # nosec B506 - a SafeLoader subclass
    return template


def table_resource(template: dict[str, Any]) -> dict[str, Any]:
    """The properties of the template's one DynamoDB table."""
    tables = [r for r in template["Resources"].values() if r["Type"] == "AWS::DynamoDB::Table"]
    if len(tables) != 1:
        raise ValueError(f"expected one AWS::DynamoDB::Table in the template, found {len(tables)}")
    properties: dict[str, Any] = tables[0]["Properties"]
    return properties


def create_table(client: Any, table_name: str, template: dict[str, Any] | None = None) -> None:
    """Create ``table_name`` with the template's key schema and billing mode, and its TTL setting."""
    properties = table_resource(template or load_template())
    client.create_table(TableName=table_name, **{key: properties[key] for key in TABLE_PROPERTIES})
    ttl = properties.get("TimeToLiveSpecification")
    if ttl:
        client.update_time_to_live(TableName=table_name, TimeToLiveSpecification=ttl)
