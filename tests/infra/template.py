"""template.yaml read the way SAM reads it: the functions, the handler each names, the environment each gets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FUNCTION = "AWS::Serverless::Function"
COMMAND = re.compile(r"functions\.(?P<operation>\w+)\.app\.handler")


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
        assert match, f"{self.logical_id}: ImageConfig.Command {self.command!r} is not functions.<op>.app.handler"
        return match["operation"]

    @property
    def module(self) -> str:
        return self.command.rpartition(".")[0]

    @property
    def source(self) -> Path:
        return REPO.joinpath(*self.module.split(".")).with_suffix(".py")


def functions(template: dict[str, Any]) -> dict[str, Function]:
    return {name: Function(name, r) for name, r in template["Resources"].items() if r["Type"] == FUNCTION}


def environment(template: dict[str, Any], logical_id: str, resources: dict[str, str]) -> dict[str, str]:
    """The function's environment: Globals merged with its own variables; a Ref resolves to a parameter's default or,
    for a resource, to the value given in ``resources`` (logical id -> physical name)."""
    defaults = {name: p.get("Default") for name, p in template.get("Parameters", {}).items()}

    def resolve(value: Any) -> str:
        if not isinstance(value, dict):
            return str(value)
        name = value["Ref"]  # any other intrinsic function fails here, loudly
        return str(resources[name] if name in resources else defaults[name])

    variables = {
        **template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}),
        **template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {}),
    }
    return {name: resolve(value) for name, value in variables.items()}
