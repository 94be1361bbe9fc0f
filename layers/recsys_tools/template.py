"""template.yaml read the way SAM reads it: its short-form tags, the functions, the handler each names, the
environment each gets and the tables. Used by the local stack, the benchmarks and the tests (never by a handler)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from recsys.settings import REPO_ROOT

TEMPLATE = REPO_ROOT / "template.yaml"
FUNCTION = "AWS::Serverless::Function"
COMMAND = re.compile(r"functions\.(?P<operation>\w+)\.app\.handler")


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


@dataclass(frozen=True)
class Function:
    logical_id: str
    resource: dict[str, Any]

    @property
    def properties(self) -> dict[str, Any]:
        properties: dict[str, Any] = self.resource["Properties"]
        return properties

    @property
    def command(self) -> str:
        (command,) = self.properties["ImageConfig"]["Command"]
        return str(command)

    @property
    def operation(self) -> str:
        """The functions/<operation> folder the command names."""
        match = COMMAND.fullmatch(self.command)
        if match is None:
            raise ValueError(f"{self.logical_id}: {self.command!r} is not functions.<operation>.app.handler")
        return match["operation"]

    @property
    def module(self) -> str:
        return self.command.rpartition(".")[0]

    @property
    def source(self) -> Path:
        return REPO_ROOT.joinpath(*self.module.split(".")).with_suffix(".py")


def all_functions(template: dict[str, Any]) -> dict[str, Function]:
    """Every function of the template: the API's and the batch function."""
    return {name: Function(name, r) for name, r in template["Resources"].items() if r["Type"] == FUNCTION}


def _serves_http(function: Function) -> bool:
    return any(event["Type"] == "HttpApi" for event in function.properties.get("Events", {}).values())


def functions(template: dict[str, Any]) -> dict[str, Function]:
    """The API's functions: one per operation of recsys.operations, each behind an HttpApi route."""
    return {name: f for name, f in all_functions(template).items() if _serves_http(f)}


def batch_functions(template: dict[str, Any]) -> dict[str, Function]:
    """The functions no route invokes (batch generation, which the state machine invokes)."""
    return {name: f for name, f in all_functions(template).items() if not _serves_http(f)}


def function_for(template: dict[str, Any], operation: str) -> Function:
    """The function whose handler is functions.<operation>.app.handler."""
    (function,) = (f for f in all_functions(template).values() if f.operation == operation)
    return function


def memory_size(template: dict[str, Any], function: Function) -> int:
    """The function's MemorySize in MB: its own, or Globals'."""
    return int(function.properties.get("MemorySize", template["Globals"]["Function"]["MemorySize"]))


def environment(template: dict[str, Any], logical_id: str | None, resources: dict[str, str]) -> dict[str, str]:
    """The function's environment: Globals merged with its own variables (Globals only without ``logical_id``); a Ref
    resolves to a parameter's default or, for a resource, to the value given in ``resources`` (logical id -> name)."""
    variables = {
        **template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}),
        **(template["Resources"][logical_id]["Properties"] if logical_id else {})
        .get("Environment", {})
        .get("Variables", {}),
    }
    return {name: _resolve(template, value, resources) for name, value in variables.items()}


def _resolve(template: dict[str, Any], value: Any, resources: dict[str, str]) -> str:
    """A plain value, or a Ref to a parameter (its default) or to a resource (its value in ``resources``)."""
    if not isinstance(value, dict):
        return str(value)
    name = value["Ref"]  # any other intrinsic function fails here, loudly
    return str(resources[name] if name in resources else template["Parameters"][name]["Default"])


def state_machine_definition(template: dict[str, Any], logical_id: str, resources: dict[str, str]) -> str:
    """The state machine's definition (JSON) as deployed: its DefinitionSubstitutions applied, each resolved as
    ``environment`` resolves a variable."""
    properties = template["Resources"][logical_id]["Properties"]
    definition = json.dumps(properties["Definition"])
    for name, value in properties.get("DefinitionSubstitutions", {}).items():
        definition = definition.replace(f"${{{name}}}", _resolve(template, value, resources))
    return definition


TABLE = "AWS::DynamoDB::Table"


def tables(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The properties of each of the template's DynamoDB tables, by logical id."""
    return {name: r["Properties"] for name, r in template["Resources"].items() if r["Type"] == TABLE}


def table_named_by(template: dict[str, Any], variable: str) -> str:
    """The logical id of the table the environment variable ``variable`` names (``!Ref``), in Globals or in any
    function."""
    environments = [template.get("Globals", {}).get("Function", {})] + [
        f.properties for f in all_functions(template).values()
    ]
    refs = {
        value["Ref"]
        for properties in environments
        for name, value in properties.get("Environment", {}).get("Variables", {}).items()
        if name == variable and isinstance(value, dict) and "Ref" in value
    }
    if len(refs) != 1 or not refs <= tables(template).keys():
        raise ValueError(f"expected {variable} to name one AWS::DynamoDB::Table in the template, found {sorted(refs)}")
    return str(refs.pop())


def table_logical_id(template: dict[str, Any]) -> str:
    """The logical id of the recommendations table (TABLE_NAME)."""
    return table_named_by(template, "TABLE_NAME")


def table_names(template: dict[str, Any], table: str) -> dict[str, str]:
    """A physical name for the template's table (logical id -> name), as ``environment`` resolves it."""
    return {table_logical_id(template): table}


def table_resource(template: dict[str, Any], logical_id: str | None = None) -> dict[str, Any]:
    """The properties of a table of the template (default: the recommendations table)."""
    return tables(template)[logical_id or table_logical_id(template)]
