"""Shared fixtures: a small real model trained once per session on a slice of the shipped data, and a moto-backed
DynamoDB table created from template.yaml's own definition."""

from __future__ import annotations

import copy
import csv
import gzip
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

from recsys import dependencies
from recsys.settings import REPO_ROOT
from recsys_tools.bench.handlers import lambda_environment
from recsys_tools.local_stack import create_table
from recsys_tools.template import functions, load_template
from tests.support.local_server import recsys_serve

DATA = REPO_ROOT / "model_artifacts" / "data" / "online_retail.csv.gz"
SLICE_CUSTOMERS = 40  # the first customers of the data set, 17850 among them (the events' customer)
TABLE = "recommendations-test"
KNOWN_CUSTOMER = "17850"
UNKNOWN_CUSTOMER = "new-customer-1"


def write_data_slice(path: Path, customers: int = SLICE_CUSTOMERS) -> Path:
    """The shipped file's rows for its first ``customers`` customers, in the same raw format."""
    chosen: set[str] = set()
    with gzip.open(DATA, "rt", newline="") as src, gzip.open(path, "wt", newline="") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst)
        header = next(reader)
        writer.writerow(header)
        column = header.index("CustomerID")
        for row in reader:
            customer = row[column]
            if customer and (customer in chosen or len(chosen) < customers):
                chosen.add(customer)
                writer.writerow(row)
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (small) two-tower model trained and exported by the production code path."""
    from recsys_tools.training.train import TrainParams, train_and_export

    root = tmp_path_factory.mktemp("artifacts")
    data = write_data_slice(root / "slice.csv.gz")
    return train_and_export(data, root, params=TrainParams.tiny(), version="test")


@pytest.fixture
def aws(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's DynamoDB with the template's table; the service configured for it. Yields a DynamoDB client."""
    env = lambda_environment(model_dir) | {"TABLE_NAME": TABLE, "POWERTOOLS_METRICS_NAMESPACE": "RecsysTest"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DYNAMODB_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        dependencies.reset()
        yield client
        dependencies.reset()


def lambda_handler(operation: str) -> Any:
    """The handler a function's ImageConfig.Command names, e.g. functions.show_recommendations.app.handler."""
    return importlib.import_module(f"functions.{operation}.app").handler


@pytest.fixture
def served(model_dir: Path, tmp_path: Path) -> Iterator[str]:
    """The base URL of a `recsys serve` started for the test (embedded DynamoDB, the session's model)."""
    with recsys_serve(model_dir, tmp_path / "serve.log") as base:
        yield base


class _NoManagedPolicies:
    """SAM's managed-policy loader stand-in: asked only for policies named without an ARN, which the template avoids."""

    def load(self) -> dict[str, str]:
        raise AssertionError("the template names a managed policy without its ARN")


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="session")
def transformed(template: dict[str, Any]) -> dict[str, Any]:
    """template.yaml as SAM transforms it into the CloudFormation that is deployed (offline; `sam build` sets each
    image function's ImageUri)."""
    sam = copy.deepcopy(template)
    for function in functions(sam).values():
        function.properties["ImageUri"] = "registry.invalid/recommendations:test"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")  # SAM resolves AWS::Region from the boto3 session
        cloudformation: dict[str, Any] = transform(sam, {}, _NoManagedPolicies())
    return cloudformation
