"""The template, raw and transformed by SAM into plain CloudFormation, offline."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from recsys.local_stack import load_template
from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

from tests.infra.template import functions


class _NoManagedPolicies:
    """ManagedPolicyLoader stand-in: SAM asks it only for policies named without an ARN, which the template avoids."""

    def load(self) -> dict[str, str]:
        raise AssertionError("the template names a managed policy without its ARN")


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="session")
def transformed(template: dict[str, Any]) -> dict[str, Any]:
    """What CloudFormation deploys after `sam build` (which sets each image function's ImageUri)."""
    sam = copy.deepcopy(template)
    for function in functions(sam).values():
        function.properties["ImageUri"] = "registry.invalid/recommendations:test"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")  # SAM resolves AWS::Region from the boto3 session
        cloudformation: dict[str, Any] = transform(sam, {}, _NoManagedPolicies())
    return cloudformation
