"""Shared fixtures: a small real model trained once per session on a slice of the shipped data, and a moto-backed
DynamoDB table created from template.yaml's own definition."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

import recsys.store
from recsys.api import create_app
from recsys.handler import LambdaHandler, make_handler
from recsys.operations import OPERATIONS
from recsys.recommender import Recommender, load_recommender
from recsys.service import RecommendationService, default_service
from recsys.settings import load_settings
from recsys.store import DynamoDBStore
from recsys_tools.bench.handlers import lambda_environment
from recsys_tools.local_stack import create_table
from recsys_tools.template import all_functions, load_template
from tests.support.api import TABLE, Api, via_lambda, via_local_app
from tests.support.data import SliceHistories, slice_histories, write_data_slice
from tests.support.local_server import recsys_serve


@pytest.fixture(autouse=True)
def validated_dynamodb_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore checks every request of the store's clients against DynamoDB's API model, as deployed clients do not
    (``recsys.store.VALIDATE_PARAMETERS``): a request real DynamoDB would refuse fails a test even where moto is lax."""
    monkeypatch.setattr(recsys.store, "VALIDATE_PARAMETERS", True)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (small) two-tower model trained and exported by the production code path."""
    from recsys_tools.training.data import file_sha256, load_purchases_with_report
    from recsys_tools.training.train import TrainParams, train_and_export

    root = tmp_path_factory.mktemp("artifacts")
    data = write_data_slice(root / "slice.csv.gz")
    purchases, cleaning = load_purchases_with_report(data, retail_rules=True)  # a slice of the retail file
    return train_and_export(
        purchases, root, params=TrainParams.tiny(), version="test", data_sha256=file_sha256(data), cleaning=cleaning
    )


@pytest.fixture(scope="session")
def histories(model_dir: Path) -> SliceHistories:
    """The training slice's customers' histories (what `recsys import-history` would seed), as of the slice's end."""
    return slice_histories(model_dir.parent / "slice.csv.gz")


@pytest.fixture
def aws(model_dir: Path, histories: SliceHistories, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's DynamoDB with the template's tables, seeded with the training slice's purchase histories (as
    `recsys import-history` seeds them); the service configured for it. Yields a DynamoDB client."""
    env = lambda_environment(model_dir) | {"TABLE_NAME": TABLE, "POWERTOOLS_METRICS_NAMESPACE": "RecsysTest"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DYNAMODB_ENDPOINT_URL", raising=False)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):  # run state machines (ASL)
        settings = load_settings()
        create_table(settings)
        store = DynamoDBStore(settings)
        for history in histories.by_customer.values():
            store.put_history(history)
        yield boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def recommender(model_dir: Path) -> Recommender:
    """The session's model as serving loads it (once per process)."""
    return load_recommender(model_dir)


@pytest.fixture
def service(aws: Any) -> RecommendationService:
    """The service as deployed (DynamoDB under moto, the session's model), built from the environment ``aws`` set."""
    return default_service(load_settings())


def lambda_handlers(service: RecommendationService) -> dict[str, LambdaHandler]:
    """Every operation's Lambda handler, by operation name, built as at a function's init around ``service``."""
    return {op.name: make_handler(op.name, service_factory=lambda _: service) for op in OPERATIONS}


@pytest.fixture(params=["lambda", "local"])
def build_api(request: pytest.FixtureRequest, aws: Any) -> Callable[..., Api]:
    """build_api(service=None) -> api(method, customer_id, query=..., body=...) on the list route, through each
    operation's Lambda handler or through the composed local app, built from the environment as it is now (a test
    that changes a setting builds its own) around ``service`` (default: the deployed composition)."""

    def build(service: RecommendationService | None = None) -> Api:
        chosen = service or default_service(load_settings())
        if request.param == "lambda":
            return via_lambda(lambda_handlers(chosen))
        return via_local_app(TestClient(create_app(load_settings(), lambda: chosen)))

    return build


@pytest.fixture
def api(build_api: Callable[..., Api], service: RecommendationService) -> Api:
    """The API around the test's ``service``."""
    return build_api(service)


@pytest.fixture
def served(model_dir: Path, tmp_path: Path) -> Iterator[str]:
    """The base URL of a `recsys serve` started for the test: the session's model, an embedded DynamoDB seeded with the
    training slice's histories."""
    with recsys_serve(model_dir, tmp_path / "serve.log", model_dir.parent / "slice.csv.gz") as base:
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
    for function in all_functions(sam).values():
        function.properties["ImageUri"] = "registry.invalid/recommendations:test"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")  # SAM resolves AWS::Region from the boto3 session
        cloudformation: dict[str, Any] = transform(sam, {}, _NoManagedPolicies())
    return cloudformation


@pytest.fixture
def log_lines(capsys: pytest.CaptureFixture[str]) -> Callable[[], list[dict[str, Any]]]:
    """The Powertools logger's JSON lines printed so far (read from the captured stdout)."""

    def lines() -> list[dict[str, Any]]:
        out = capsys.readouterr().out
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    return lines
