"""template.yaml: valid for cfn-lint and SAM, and the promises it makes (auth, least privilege, data safety, ops)."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

from cfnlint.api import ManualArgs, lint_file  # type: ignore[import-untyped]

from recsys.settings import REPO_ROOT
from recsys_tools.events import ROUTE_KEY
from recsys_tools.template import TEMPLATE, functions
from tests.infra.events import EVENTS_DIR

TABLE_ARN = {"Fn::GetAtt": ["RecommendationsTable", "Arn"]}
READ = {"dynamodb:GetItem"}
WRITE = {"dynamodb:GetItem", "dynamodb:PutItem"}  # what recsys.store calls
ACTIONS = {  # the exact DynamoDB actions each function may call
    "CustomerRecommendationsFunction": WRITE,
    "ShowRecommendationsFunction": READ,
    "UpdateRecommendationsFunction": WRITE,
    "DeleteRecommendationsFunction": WRITE,
}
ROUTES = {
    "CustomerRecommendationsFunction": "post",
    "ShowRecommendationsFunction": "get",
    "UpdateRecommendationsFunction": "patch",
    "DeleteRecommendationsFunction": "delete",
}
AWS_MANAGED = {  # added by SAM: logs, and X-Ray for Tracing: Active
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}


def of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == resource_type}


def test_cfn_lint_finds_nothing_including_informational_checks() -> None:
    matches = lint_file(TEMPLATE, ManualArgs(include_checks=["I"], regions=["us-east-1"]))
    assert [str(match) for match in matches] == []


def test_sam_transforms_the_four_image_functions(transformed: dict[str, Any]) -> None:
    lambdas = of_type(transformed, "AWS::Lambda::Function")
    assert set(lambdas) == set(ACTIONS)
    assert {f["Properties"]["PackageType"] for f in lambdas.values()} == {"Image"}


def test_each_command_names_a_handler_module_and_has_an_event(template: dict[str, Any]) -> None:
    for function in functions(template).values():  # .operation raises unless functions.<op>.app.handler
        assert function.source == REPO_ROOT / "functions" / function.operation / "app.py"
        assert function.source.is_file(), function.source
        assert (EVENTS_DIR / f"{function.operation}.json").is_file()


def test_functions_share_one_image_definition(template: dict[str, Any]) -> None:
    metadata = [function.resource["Metadata"] for function in functions(template).values()]
    assert all(m == metadata[0] for m in metadata)
    assert metadata[0]["DockerContext"] == "."
    assert (REPO_ROOT / metadata[0]["Dockerfile"]).is_file()


def test_model_functions_get_more_memory_and_time(transformed: dict[str, Any]) -> None:
    lambdas = of_type(transformed, "AWS::Lambda::Function")
    sizes = {name: (f["Properties"]["MemorySize"], f["Properties"]["Timeout"]) for name, f in lambdas.items()}
    assert sizes["CustomerRecommendationsFunction"] == sizes["UpdateRecommendationsFunction"] == (2048, 30)
    assert sizes["ShowRecommendationsFunction"] == sizes["DeleteRecommendationsFunction"] == (512, 10)


def test_every_route_requires_the_authoriser_iam_by_default_jwt_on_request(
    template: dict[str, Any], transformed: dict[str, Any]
) -> None:
    # Given the HTTP API CloudFormation receives
    (api,) = of_type(transformed, "AWS::ApiGatewayV2::Api").values()
    body = api["Properties"]["Body"]
    methods = body["paths"][ROUTE_KEY]
    # Then each function's route exists and requires the one security scheme
    for function, method in ROUTES.items():
        assert f"{function}.Arn" in methods[method]["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
    (scheme,) = body["components"]["securitySchemes"]
    assert {method: m["security"] for method, m in methods.items()} == {m: [{scheme: []}] for m in ROUTES.values()}
    # And that scheme is SigV4 unless AuthMode is JWT
    condition, jwt, iam = body["components"]["securitySchemes"][scheme]["Fn::If"]
    assert template["Conditions"][condition] == {"Fn::Equals": [{"Ref": "AuthMode"}, "JWT"]}
    assert template["Parameters"]["AuthMode"]["Default"] == "IAM"
    assert iam["x-amazon-apigateway-authtype"] == "awsSigv4"
    authorizer = jwt["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "jwt"
    assert authorizer["jwtConfiguration"]["issuer"] == {"Ref": "JwtIssuer"}


def test_stage_is_throttled(transformed: dict[str, Any]) -> None:
    (stage,) = of_type(transformed, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["DefaultRouteSettings"]
    assert settings == {
        "ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"},
    }


def test_each_function_may_call_exactly_its_dynamodb_actions_on_the_table_only(transformed: dict[str, Any]) -> None:
    resources = transformed["Resources"]
    for function, expected in ACTIONS.items():
        role = resources[resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]]["Properties"]
        assert "Policies" not in role  # no inline policies
        own = [arn for arn in role["ManagedPolicyArns"] if isinstance(arn, dict)]  # {"Ref": <policy in this stack>}
        assert {arn for arn in role["ManagedPolicyArns"] if isinstance(arn, str)} <= AWS_MANAGED
        statements = [
            statement
            for policy in own
            for statement in resources[policy["Ref"]]["Properties"]["PolicyDocument"]["Statement"]
        ]
        assert all(s["Effect"] == "Allow" and s["Resource"] == TABLE_ARN for s in statements), function
        assert {action for s in statements for action in s["Action"]} == expected, function


def test_table_is_on_demand_recoverable_encrypted_expiring_and_retained(template: dict[str, Any]) -> None:
    (table,) = of_type(template, "AWS::DynamoDB::Table").values()
    properties = table["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": "customer_id", "KeyType": "HASH"}]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"


def test_every_function_is_traced_and_configured_for_powertools(transformed: dict[str, Any]) -> None:
    for function in of_type(transformed, "AWS::Lambda::Function").values():
        properties = function["Properties"]
        assert properties["TracingConfig"] == {"Mode": "Active"}
        variables = properties["Environment"]["Variables"]
        assert variables["TABLE_NAME"] == {"Ref": "RecommendationsTable"}
        assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"} <= set(variables)


def test_each_function_has_an_errors_and_a_p99_duration_alarm(template: dict[str, Any]) -> None:
    alarms = of_type(template, "AWS::CloudWatch::Alarm").values()
    watched = {
        (a["Properties"]["MetricName"], a["Properties"].get("ExtendedStatistic"), dimension["Value"]["Ref"])
        for a in alarms
        for dimension in a["Properties"]["Dimensions"]
    }
    for function in ACTIONS:
        assert {("Errors", None, function), ("Duration", "p99", function)} <= watched


def test_dashboard_body_is_json_and_shows_every_function(template: dict[str, Any]) -> None:
    (dashboard,) = of_type(template, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    assert json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"]
    assert all(f"${{{function}}}" in body for function in ACTIONS)


def test_outputs_api_url_and_table_name(template: dict[str, Any]) -> None:
    assert {"ApiUrl", "TableName"} <= set(template["Outputs"])


def test_samconfig_deploys_with_iam_capability_and_managed_image_repositories() -> None:
    config = tomllib.loads((REPO_ROOT / "infra" / "samconfig.toml").read_text(encoding="utf-8"))["default"]
    assert config["global"]["parameters"]["stack_name"]
    deploy = config["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_image_repos"] is True
    assert deploy["confirm_changeset"] is True
