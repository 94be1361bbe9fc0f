"""Security: each function is granted exactly the DynamoDB actions its handler calls, per table, on its tables only;
no secret or account id is in the repository; bandit finds nothing in the shipped code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from botocore.retries.standard import ExponentialBackoff
from moto.dynamodb.models import DynamoDBBackend

from recsys.domain import Recommendation, RecommendationList
from recsys.handler import make_handler
from recsys.operations import operation
from recsys.service import default_service
from recsys.settings import REPO_ROOT, load_settings
from recsys.store import DynamoDBStore, dynamodb_client
from recsys_tools.events import FakeLambdaContext, http_api_event
from recsys_tools.template import functions, load_template, table_logical_id
from tests.support.moto_dynamodb import throttled

FAKE_ACCOUNT = "123456789012"  # the documented example account id used in test events
SECRETS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws_?secret_?access_?key\W{0,4}[A-Za-z0-9/+]{40}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "account id": re.compile(r"(?<![\w.-])\d{12}(?![\w-])"),
}
# Each operation's handler taken through every path it has: missing list, first write, later writes; for
# record_purchases also a redelivered order and one that fails (DynamoDB throttled) and so records nothing.
ORDER = {"order_id": "order-1", "purchases": [{"product_id": "MANUAL-1", "quantity": 2}]}
SCENARIOS: dict[str, list[dict[str, Any]]] = {
    "customer_recommendations": [{}, {"seeded": True}],
    "show_recommendations": [{}, {"seeded": True}],
    "update_recommendations": [
        {"body": {"products": [{"product_id": "MANUAL-9", "score": 1.0}]}},
        {"body": {"products": [{"product_id": "MANUAL-9", "score": 2.0}]}, "seeded": True},
    ],
    "delete_recommendations": [
        {"body": {"product_ids": ["MANUAL-1"]}},
        {"body": {"product_ids": ["MANUAL-1"]}, "seeded": True},
    ],
    "record_purchases": [
        {"body": ORDER},
        {"body": ORDER},  # redelivered
        {"body": ORDER | {"order_id": "order-2"}},
        {"body": ORDER | {"order_id": "order-3"}, "throttled": True},
    ],
}


def granted_dynamodb_actions(transformed: dict[str, Any], logical_id: str) -> set[tuple[str, str]]:
    """Every dynamodb:* action the function's role allows (inline and stack-managed policies), as (table logical id,
    action); each on one table of the stack."""
    resources = transformed["Resources"]
    role = resources[resources[logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]]["Properties"]
    documents = [policy["PolicyDocument"] for policy in role.get("Policies", [])] + [
        resources[arn["Ref"]]["Properties"]["PolicyDocument"]
        for arn in role.get("ManagedPolicyArns", [])
        if isinstance(arn, dict)
    ]
    actions: set[tuple[str, str]] = set()
    for statement in (s for document in documents for s in document["Statement"]):
        listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        dynamodb = {a for a in listed if a.lower().startswith("dynamodb:")}
        if dynamodb:
            assert statement["Effect"] == "Allow", statement
            table, attribute = statement["Resource"]["Fn::GetAtt"]
            assert attribute == "Arn", f"{logical_id}: {statement}"
            assert resources[table]["Type"] == "AWS::DynamoDB::Table", f"{logical_id}: {statement}"
            assert not any("*" in a for a in dynamodb), f"{logical_id}: wildcard action {statement}"
            actions |= {(table, action) for action in dynamodb}
    return actions


def recording_calls(client: Any, tables: dict[str, str]) -> Callable[[], set[tuple[str, str]]]:
    """Records every DynamoDB operation ``client`` makes from now on, as (table logical id, IAM action name);
    ``tables`` maps the tables' names to their logical ids."""
    called: set[tuple[str, str]] = set()

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:  # the call's parameters, before serialising
        called.add((tables[params["TableName"]], f"dynamodb:{model.name}"))

    client.meta.events.register("before-parameter-build.dynamodb", record)
    return lambda: set(called)


def test_each_function_is_granted_exactly_the_dynamodb_actions_its_handler_calls(
    aws: Any, transformed: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    template = load_template()
    checked = []
    for logical_id, function in functions(template).items():  # SAM's logical ids are the transformed functions' too
        # Given the function's handler (its table through one client) and the actions its role allows
        granted = granted_dynamodb_actions(transformed, logical_id)
        settings = load_settings()
        client = dynamodb_client(settings)
        called = recording_calls(client, {settings.table_name: table_logical_id(template)})
        handler = make_handler(function.operation, service_factory=partial(default_service, client=client))
        seeder = DynamoDBStore(settings)  # not recorded
        customer = f"iam-{function.operation}"
        # When the handler is taken through every path it has
        for step in SCENARIOS[function.operation]:
            if step.get("seeded"):
                stored = seeder.get(customer) or RecommendationList(customer_id=customer)
                seeder.put(stored.evolve(items=(Recommendation("MANUAL-1", 1.0, "manual"),)))
            event = http_api_event(operation(function.operation), customer, body=step.get("body"))
            context: Any = FakeLambdaContext()
            with monkeypatch.context() as patch:
                if step.get("throttled"):
                    patch.setattr(DynamoDBBackend, "get_item", throttled)
                response = handler(event, context)
            assert response["statusCode"] in ({503} if step.get("throttled") else {200, 404}), response
        # Then it called exactly the granted actions: nothing it would be denied, nothing granted in vain
        assert called() == granted, f"{logical_id}: calls {sorted(called())}, granted {sorted(granted)}"
        if function.operation == "show_recommendations":
            assert granted == {("RecommendationsTable", "dynamodb:GetItem")}  # show is read-only
        checked.append(function.operation)
    assert sorted(checked) == sorted(SCENARIOS)  # every function, each with its scenarios


def repository_text_files() -> list[str]:
    """Tracked files and new ones not ignored (what a commit would hold), text only."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    texts = []
    for name in filter(None, listed.split("\0")):
        path = REPO_ROOT / name
        if path.is_file() and b"\0" not in path.read_bytes()[:8192]:
            texts.append(name)
    return texts


def test_no_secret_or_account_id_is_in_the_repository() -> None:
    # Given every text file a commit would hold
    findings = []
    for name in repository_text_files():
        text = (REPO_ROOT / name).read_text(encoding="utf-8", errors="replace")
        # When it is searched for AWS keys, private keys and account ids
        for kind, pattern in SECRETS.items():
            for match in pattern.finditer(text):
                if kind == "account id" and match.group() == FAKE_ACCOUNT:
                    continue
                line = text.count("\n", 0, match.start()) + 1
                findings.append(f"{name}:{line}: {kind}")
    # Then there is none (only the documented fake account id)
    assert findings == []


def test_bandit_finds_nothing_in_the_shipped_code() -> None:
    # Given the serving package and the handlers (what the image ships; tooling may run subprocesses); When bandit
    # scans them (asserts allowed: the project uses them to narrow
    # types and state invariants, as ruff's S101 is ignored project-wide)
    scan = subprocess.run(
        [
            sys.executable,
            "-m",
            "bandit",
            "-r",
            "layers/recsys",
            "functions",
            "--skip",
            "B101",
            "--quiet",
            "--format",
            "json",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    report = json.loads(scan.stdout)
    findings = [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}" for r in report["results"]]
    # Then it finds nothing (justified exceptions carry `# nosec <test> - reason` on their line)
    assert report["errors"] == []
    assert findings == []
