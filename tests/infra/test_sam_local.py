"""recsys_tools.sam_local, the logic of `make sam-local` that needs no container: which functions it invokes on which
events, the --env-vars document SAM gets, the template copy that passes BASE_IMAGE, reading the emulator's INIT REPORT
and checking the answers. `make sam-local` itself (CI runs it) builds and invokes for real."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from recsys.settings import REPO_ROOT
from recsys_tools import sam_local
from recsys_tools.sam_local import (
    BATCH,
    ENDPOINT_VARIABLE,
    Failure,
    Invocation,
    answer_problems,
    env_vars,
    function_response,
    init_duration_ms,
    invocations,
    table_variables,
    with_base_image,
)
from recsys_tools.template import all_functions, batch_functions, environment, functions, load_template

ENDPOINT = "http://10.88.0.1:40171"

# What the emulator prints with SAM_CLI_RIE_DEV=1 (aws-lambda-rie --log-level debug), as seen under SAM CLI 1.170
RIE_LOG = """\
30 Nov 2026 13:34:56,277 [INFO] (rapid) exec '/lambda-entrypoint.sh' (cwd=/var/task, handler=functions.x.app.handler)
30 Nov 2026 13:34:56,369 [INFO] (rapid) INIT START(type: on-demand, phase: init)
30 Nov 2026 13:34:59,463 [INFO] (rapid) INIT RTDONE(status: success)
30 Nov 2026 13:34:59,463 [INFO] (rapid) INIT REPORT(durationMs: 3093.491000)
30 Nov 2026 13:34:59,463 [INFO] (rapid) INVOKE START(requestId: cdd64299-553e-4fb5-9999-f5e2415a7c4d)
REPORT RequestId: cdd64299-553e-4fb5-9999-f5e2415a7c4d	Init Duration: 0.11 ms	Duration: 3138.47 ms
"""


@pytest.fixture
def template() -> dict[str, Any]:
    return load_template()


def list_response(customer_id: str = "17850", status: int = 200, **changes: Any) -> dict[str, Any]:
    body = {
        "customer_id": customer_id,
        "items": [{"product_id": "85123A", "score": 3.31, "source": "model", "name": "WHITE HANGING HEART"}],
        "model_version": "20261130-033445",
        "updated_at": "2026-11-30T13:34:59Z",
        "version": 1,
    } | changes
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


def invocation(route: str = "GET /customers/{customer_id}/recommendations") -> Invocation:
    return Invocation("ShowRecommendationsFunction", "show_recommendations", Path("e.json"), route, "17850")


def test_every_function_of_the_template_is_invoked_on_its_event_in_template_order(template: dict[str, Any]) -> None:
    planned = invocations(template)
    assert [i.logical_id for i in planned] == list(all_functions(template))
    for step in planned:
        assert step.event == REPO_ROOT / "infra" / "events" / f"{step.operation}.json"
        if step.logical_id in batch_functions(template):  # after the API's: it regenerates their customers' lists
            assert (step.route, step.customer_id) == (BATCH, None)
            assert step is planned[-1]
            continue
        function = functions(template)[step.logical_id]
        (api_event,) = [e["Properties"] for e in function.properties["Events"].values() if e["Type"] == "HttpApi"]
        assert step.route == f"{api_event['Method']} {api_event['Path']}"  # the event is one the API would send
        assert step.customer_id


def test_a_function_without_an_event_is_named(template: dict[str, Any], tmp_path: Path) -> None:
    planned = invocations(template)
    for step in planned[1:]:
        shutil.copy(step.event, tmp_path / step.event.name)
    with pytest.raises(Failure, match=planned[0].logical_id):
        invocations(template, tmp_path)


def test_env_vars_point_every_function_at_the_local_dynamodb_with_declared_variables_only(
    template: dict[str, Any],
) -> None:
    document = env_vars(template, ENDPOINT)
    assert document.keys() == all_functions(template).keys()
    tables = {name for name, r in template["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"}
    for logical_id, variables in document.items():
        assert variables[ENDPOINT_VARIABLE] == ENDPOINT
        assert variables["TABLE_NAME"] in tables  # a table under its logical id, as SAM resolves !Ref locally
        # SAM drops what the template does not declare: everything set here is declared
        assert variables.keys() <= environment(template, logical_id, {t: t for t in tables}).keys()


def test_an_undeclared_endpoint_variable_fails_before_anything_is_built(template: dict[str, Any]) -> None:
    stripped = copy.deepcopy(template)
    stripped["Globals"]["Function"]["Environment"]["Variables"].pop(ENDPOINT_VARIABLE)
    for function in all_functions(stripped).values():
        function.properties.get("Environment", {}).get("Variables", {}).pop(ENDPOINT_VARIABLE, None)
    with pytest.raises(Failure, match=f"declares no {ENDPOINT_VARIABLE}"):
        env_vars(stripped, ENDPOINT)


def test_every_variable_that_names_a_table_gets_a_local_table() -> None:
    table = {"Type": "AWS::DynamoDB::Table", "Properties": {}}
    template: dict[str, Any] = {
        "Globals": {"Function": {"Environment": {"Variables": {"TABLE_NAME": {"Ref": "Lists"}, "LOG_LEVEL": "INFO"}}}},
        "Resources": {
            "Lists": table,
            "Orders": table,
            "Fn": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "ImageConfig": {"Command": ["functions.record_purchases.app.handler"]},
                    "Environment": {"Variables": {"ORDERS_TABLE": {"Ref": "Orders"}, "MODE": {"Ref": "Mode"}}},
                },
            },
        },
    }
    assert table_variables(template, "Fn") == {"TABLE_NAME": "Lists", "ORDERS_TABLE": "Orders"}


def test_template_copy_passes_the_base_image_to_every_function_and_leaves_the_template_alone(
    template: dict[str, Any],
) -> None:
    original = copy.deepcopy(template)
    built = with_base_image(template, "localhost/stand-in:3.12")
    assert template == original
    assert all_functions(built).keys() == all_functions(template).keys()
    for logical_id, function in all_functions(built).items():
        metadata = function.resource["Metadata"]
        assert metadata["DockerBuildArgs"] == {"BASE_IMAGE": "localhost/stand-in:3.12"}
        assert {k: v for k, v in metadata.items() if k != "DockerBuildArgs"} == original["Resources"][logical_id][
            "Metadata"
        ]
    json.dumps(built)  # SAM reads the copy as JSON: the short-form tags are long-form by now


def test_init_duration_comes_from_the_emulators_init_report() -> None:
    assert init_duration_ms(RIE_LOG) == pytest.approx(3093.491)
    newer = "INIT REPORT(initType: on-demand, durationMs: 812.34, status: success, phase: init, errorType: )"
    assert init_duration_ms(newer) == pytest.approx(812.34)
    assert init_duration_ms(RIE_LOG + RIE_LOG.replace("3093.491000", "15.5")) == pytest.approx(15.5)  # the last one
    # the REPORT line's "Init Duration" means nothing under the emulator
    assert init_duration_ms(RIE_LOG.replace("INIT REPORT(durationMs: 3093.491000)", "")) is None


def test_the_response_is_the_last_json_line_of_sam_local_invoke() -> None:
    response = list_response()
    assert function_response("some banner\n" + json.dumps(response) + "\n") == response
    with pytest.raises(Failure, match="no JSON response"):
        function_response("Error: Running AWS SAM projects locally requires a container runtime.\n")


def test_a_right_list_answer_has_no_problems() -> None:
    assert answer_problems(invocation(), list_response()) == []


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        (list_response(status=503), "status 503"),
        ({"statusCode": 404, "body": json.dumps({"error": {"code": "not_found"}})}, "error"),
        (list_response(customer_id="12346"), "customer_id '12346'"),
        (list_response(items=[]), "items is not a non-empty list"),
        (list_response(items=[{"product_id": "85123A"}]), "an item lacks"),
        (list_response(items=[{"product_id": "1", "score": "high", "source": "model"}]), "score is not a number"),
        ({"statusCode": 200, "body": json.dumps({"customer_id": "17850", "items": []})}, "no model_version"),
        ({"statusCode": 200, "body": "<html>"}, "body is not JSON"),
    ],
)
def test_a_wrong_answer_is_named(response: dict[str, Any], problem: str) -> None:
    assert any(problem in found for found in answer_problems(invocation(), response))


def test_other_routes_need_a_2xx_for_the_customer_only() -> None:
    purchases = invocation("POST /customers/{customer_id}/purchases")
    assert answer_problems(purchases, {"statusCode": 201, "body": json.dumps({"customer_id": "17850"})}) == []
    assert answer_problems(purchases, {"statusCode": 200, "body": json.dumps({"customer_id": "1"})})


def test_sam_cli_and_the_stand_ins_runtime_client_are_hash_pinned() -> None:
    for path in (sam_local.INFRA / "sam-cli.txt", sam_local.STANDIN / "requirements.txt"):
        text = path.read_text(encoding="utf-8")
        requirements = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)(?: ;[^\n]*)? \\$", text, re.MULTILINE)
        assert requirements, path
        assert text.count("--hash=sha256:") >= len(requirements)
    assert re.search(r"^aws-sam-cli==1\.170\.0\b", (sam_local.INFRA / "sam-cli.txt").read_text(), re.MULTILINE)


def test_the_stand_in_keeps_the_lambda_base_images_contract() -> None:
    dockerfile = (sam_local.STANDIN / "Dockerfile").read_text(encoding="utf-8")
    assert 'ENTRYPOINT ["/lambda-entrypoint.sh"]' in dockerfile
    assert "WORKDIR /var/task" in dockerfile
    assert "LAMBDA_TASK_ROOT=/var/task" in dockerfile
    entrypoint = (sam_local.STANDIN / "lambda-entrypoint.sh").read_text(encoding="utf-8")
    assert "aws-lambda-rie /var/lang/bin/python3.12 -m awslambdaric" in entrypoint
    assert 'if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]' in entrypoint


def test_the_batch_function_answers_its_segments_accounting_with_no_customer_failed() -> None:
    batch = Invocation("BatchGenerateFunction", "batch_generate", Path("e.json"), BATCH, None)
    done = {"seen": 1, "written": 1, "skipped": 0, "failed": 0, "failed_customers": [], "complete": True}
    assert answer_problems(batch, done) == []
    assert answer_problems(batch, done | {"failed": 1, "failed_customers": ["17850"]}) == ["failed customers ['17850']"]
    assert answer_problems(batch, done | {"seen": 0, "written": 0}) == ["no customer seen"]
    assert answer_problems(batch, {"errorMessage": "boom", "errorType": "SegmentIncomplete"})[0].startswith(
        "not an accounting"
    )
