"""template.yaml: valid for cfn-lint and SAM, and the promises it makes (auth, least privilege, data safety, ops)."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

from cfnlint.api import ManualArgs, lint_file  # type: ignore[import-untyped]

from recsys.settings import REPO_ROOT
from recsys_tools.template import TEMPLATE, all_functions, functions
from tests.infra.events import EVENTS_DIR

TABLE = "RecommendationsTable"
READ = {TABLE: {"dynamodb:GetItem"}}
WRITE = {TABLE: {"dynamodb:GetItem", "dynamodb:PutItem"}}  # what recsys.store calls (record_purchases: its orders too)
LIST_AND_HISTORY = {TABLE: {"dynamodb:Query", "dynamodb:PutItem"}}  # generate, update: list and history in one Query
ACTIONS = {  # the exact DynamoDB actions each function may call, per table
    "CustomerRecommendationsFunction": LIST_AND_HISTORY,
    "ShowRecommendationsFunction": READ,
    "UpdateRecommendationsFunction": LIST_AND_HISTORY,
    "DeleteRecommendationsFunction": WRITE,
    "RecordPurchasesFunction": WRITE,
    "BatchGenerateFunction": {TABLE: {"dynamodb:Scan", "dynamodb:GetItem", "dynamodb:PutItem"}},
}
ROUTES = {
    "CustomerRecommendationsFunction": "post",
    "ShowRecommendationsFunction": "get",
    "UpdateRecommendationsFunction": "patch",
    "DeleteRecommendationsFunction": "delete",
    "RecordPurchasesFunction": "post",
}
MODEL_FUNCTIONS = {"CustomerRecommendationsFunction", "UpdateRecommendationsFunction"}
HTTP_API_TIMEOUT = 30  # seconds: API Gateway HTTP API's integration limit; the client gets a 503 after it
INIT_LIMIT = 10  # seconds: Lambda's on-demand init phase, which a cold request waits for before the handler runs
ALIAS = "live"
AWS_MANAGED = {  # added by SAM: logs, and X-Ray for Tracing: Active
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}


def of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == resource_type}


def test_cfn_lint_finds_nothing_including_informational_checks() -> None:
    matches = lint_file(TEMPLATE, ManualArgs(include_checks=["I"], regions=["us-east-1"]))
    assert [str(match) for match in matches] == []


def test_sam_transforms_the_six_image_functions(transformed: dict[str, Any]) -> None:
    lambdas = of_type(transformed, "AWS::Lambda::Function")
    assert set(lambdas) == set(ACTIONS)
    assert {f["Properties"]["PackageType"] for f in lambdas.values()} == {"Image"}


def test_each_command_names_a_handler_module_and_has_an_event(template: dict[str, Any]) -> None:
    for function in all_functions(template).values():  # .operation raises unless functions.<op>.app.handler
        assert function.source == REPO_ROOT / "functions" / function.operation / "app.py"
        assert function.source.is_file(), function.source
        assert (EVENTS_DIR / f"{function.operation}.json").is_file()


def test_functions_share_one_image_definition(template: dict[str, Any]) -> None:
    metadata = [function.resource["Metadata"] for function in all_functions(template).values()]
    assert all(m == metadata[0] for m in metadata)
    assert metadata[0]["DockerContext"] == "."
    assert (REPO_ROOT / metadata[0]["Dockerfile"]).is_file()


def test_model_functions_get_more_memory_and_time(transformed: dict[str, Any]) -> None:
    lambdas = of_type(transformed, "AWS::Lambda::Function")
    sizes = {name: (f["Properties"]["MemorySize"], f["Properties"]["Timeout"]) for name, f in lambdas.items()}
    assert sizes["CustomerRecommendationsFunction"] == sizes["UpdateRecommendationsFunction"] == (2048, 20)
    # the others: 1536 MB, sized by their cold start at Lambda's CPU share (README Performance)
    assert sizes["ShowRecommendationsFunction"] == sizes["DeleteRecommendationsFunction"] == (1536, 10)
    assert sizes["RecordPurchasesFunction"] == (1536, 10)  # no model: it only writes the history
    assert sizes["BatchGenerateFunction"] == (2048, 900)  # the model; a segment per invocation, Lambda's longest


def test_every_function_times_out_before_the_http_api_gives_up_even_on_a_cold_start(
    transformed: dict[str, Any],
) -> None:
    for name in ROUTES:
        assert transformed["Resources"][name]["Properties"]["Timeout"] + INIT_LIMIT <= HTTP_API_TIMEOUT, name


def test_every_route_requires_the_authoriser_iam_by_default_jwt_on_request(
    template: dict[str, Any], transformed: dict[str, Any]
) -> None:
    # Given the HTTP API CloudFormation receives
    (api,) = of_type(transformed, "AWS::ApiGatewayV2::Api").values()
    body = api["Properties"]["Body"]
    # Then each function's route exists (its integration: see the alias test) and requires the one security scheme
    (scheme,) = body["components"]["securitySchemes"]
    routes = [route for methods in body["paths"].values() for route in methods.values()]
    assert len(routes) == len(ROUTES)
    assert all(route["security"] == [{scheme: []}] for route in routes)
    # And that scheme is SigV4 unless AuthMode is JWT
    condition, jwt, iam = body["components"]["securitySchemes"][scheme]["Fn::If"]
    assert template["Conditions"][condition] == {"Fn::Equals": [{"Ref": "AuthMode"}, "JWT"]}
    assert template["Parameters"]["AuthMode"]["Default"] == "IAM"
    assert iam["x-amazon-apigateway-authtype"] == "awsSigv4"
    authorizer = jwt["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "jwt"
    assert authorizer["jwtConfiguration"]["issuer"] == {"Ref": "JwtIssuer"}


def integration_uri(template: dict[str, Any], transformed: dict[str, Any], logical_id: str) -> str:
    """The integration URI of the route the function's HttpApi event declares, in the transformed API."""
    (event,) = functions(template)[logical_id].properties["Events"].values()
    path, method = event["Properties"]["Path"], event["Properties"]["Method"].lower()
    (api,) = of_type(transformed, "AWS::ApiGatewayV2::Api").values()
    uri: str = api["Properties"]["Body"]["paths"][path][method]["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
    return uri


def test_every_route_and_its_invoke_permission_target_the_functions_live_alias(
    template: dict[str, Any], transformed: dict[str, Any]
) -> None:
    # Given every function publishes a version and moves its alias to it on each deploy (AutoPublishAlias)
    assert template["Globals"]["Function"]["AutoPublishAlias"] == ALIAS
    resources = transformed["Resources"]
    permissions = of_type(transformed, "AWS::Lambda::Permission").values()
    for function in ROUTES:
        alias = f"{function}Alias{ALIAS}"
        assert resources[alias]["Properties"]["FunctionName"] == {"Ref": function}
        # Then its route invokes the alias (an alias's Ref is its ARN), not the unpublished $LATEST
        assert f"/functions/${{{alias}}}/invocations" in integration_uri(template, transformed, function)
        # And API Gateway may invoke that alias
        assert [p["Properties"]["FunctionName"] for p in permissions if alias in json.dumps(p)] == [{"Ref": alias}]


def test_model_functions_may_have_provisioned_concurrency_every_function_reserved_concurrency(
    template: dict[str, Any], transformed: dict[str, Any]
) -> None:
    parameters, conditions = template["Parameters"], template["Conditions"]
    assert parameters["ProvisionedConcurrency"]["Default"] == 0
    assert conditions["HasProvisionedConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ProvisionedConcurrency"}, "0"]}]
    }
    assert parameters["ReservedConcurrency"]["Default"] == -1  # unreserved; 0 would stop the function
    assert conditions["HasReservedConcurrency"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ReservedConcurrency"}, "-1"]}]}
    provisioned = {"ProvisionedConcurrentExecutions": {"Ref": "ProvisionedConcurrency"}}
    reserved = {"Fn::If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]}
    resources = transformed["Resources"]
    for function in ROUTES:
        assert resources[function]["Properties"]["ReservedConcurrentExecutions"] == reserved
        # provisioned concurrency lives on the alias the API invokes
        config = resources[f"{function}Alias{ALIAS}"]["Properties"].get("ProvisionedConcurrencyConfig")
        if function in MODEL_FUNCTIONS:
            assert config == {"Fn::If": ["HasProvisionedConcurrency", provisioned, {"Ref": "AWS::NoValue"}]}
        else:
            assert config is None


def test_every_log_group_is_declared_kept_for_the_retention_parameter_and_deleted_with_the_stack(
    template: dict[str, Any], transformed: dict[str, Any]
) -> None:
    assert template["Parameters"]["LogRetentionDays"]["Default"] == 30
    groups = of_type(transformed, "AWS::Logs::LogGroup")
    for name, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
        assert group["DeletionPolicy"] == group["UpdateReplacePolicy"] == "Delete", name
    # Each function logs to a group of its own that the stack declares, so Lambda creates none without retention
    lambdas = of_type(transformed, "AWS::Lambda::Function").values()
    own = [function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] for function in lambdas]
    assert sorted(own) == sorted(set(groups) - {"ApiAccessLogs"})
    names = [groups[group]["Properties"]["LogGroupName"]["Fn::Sub"] for group in own]
    assert all(name.startswith("/aws/lambda/${AWS::StackName}/") for name in names)


def test_access_logs_record_the_caller_and_the_jwt_subject(transformed: dict[str, Any]) -> None:
    (stage,) = of_type(transformed, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogs", "Arn"]}
    record = json.loads(settings["Format"])  # one JSON object per request
    assert record["caller"] == "$context.identity.caller"  # IAM mode: the signing principal
    assert record["sub"] == "$context.authorizer.claims.sub"  # JWT mode: the token's subject


def test_stage_is_throttled(transformed: dict[str, Any]) -> None:
    (stage,) = of_type(transformed, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["DefaultRouteSettings"]
    assert settings == {
        "ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"},
    }


def test_each_function_may_call_exactly_its_dynamodb_actions_on_its_tables_only(transformed: dict[str, Any]) -> None:
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
        granted: dict[str, set[str]] = {}
        for statement in statements:
            assert statement["Effect"] == "Allow", function
            table, attribute = statement["Resource"]["Fn::GetAtt"]  # one table's ARN, never a wildcard
            assert attribute == "Arn", function
            granted.setdefault(table, set()).update(statement["Action"])
        assert granted == expected, function


def test_the_table_is_on_demand_recoverable_encrypted_expiring_and_retained(template: dict[str, Any]) -> None:
    tables = of_type(template, "AWS::DynamoDB::Table")
    assert set(tables) == {TABLE}  # record_purchases' orders live in the history items: no table of their own
    # a customer's list and history: one partition, two items (record = "list" | "history")
    assert tables[TABLE]["Properties"]["KeySchema"] == [
        {"AttributeName": "customer_id", "KeyType": "HASH"},
        {"AttributeName": "record", "KeyType": "RANGE"},
    ]
    assert tables[TABLE]["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    for table in tables.values():
        properties = table["Properties"]
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert properties["SSESpecification"] == {"SSEEnabled": True}
        assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
        assert properties["DeletionProtectionEnabled"] is True


def test_every_function_is_traced_and_configured_for_powertools(transformed: dict[str, Any]) -> None:
    for function in of_type(transformed, "AWS::Lambda::Function").values():
        properties = function["Properties"]
        assert properties["TracingConfig"] == {"Mode": "Active"}
        variables = properties["Environment"]["Variables"]
        assert variables["TABLE_NAME"] == {"Ref": TABLE}
        assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"} <= set(variables)


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


def test_batch_state_machine_is_a_distributed_map_over_scan_segments_invoking_the_batch_function(
    template: dict[str, Any], transformed: dict[str, Any]
) -> None:
    # Given the state machine as deployed
    (machine,) = of_type(transformed, "AWS::StepFunctions::StateMachine").values()
    properties = machine["Properties"]
    separator, lines = properties["DefinitionString"]["Fn::Join"]  # SAM writes the definition as JSON lines
    definition = json.loads(separator.join(lines))
    substitutions = properties["DefinitionSubstitutions"]
    # Then the segments are an array range from the (defaulted) total_segments, each a child execution
    states = definition["States"]
    assert states["Segments"]["Parameters"]["segments.$"].startswith("States.ArrayRange(0, ")
    regenerate = states["Regenerate"]
    assert regenerate["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert regenerate["ItemSelector"]["segment.$"] == "$$.Map.Item.Value"
    assert regenerate["MaxConcurrencyPath"] == "$.options.max_concurrency"
    assert regenerate["ToleratedFailurePercentagePath"] == "$.options.tolerated_failure_percentage"
    defaults = states["Defaults"]["Parameters"]
    assert substitutions["MaxConcurrency"] == {"Ref": "BatchMaxConcurrency"}
    assert "${MaxConcurrency}" in defaults["max_concurrency.$"]
    assert substitutions["ToleratedFailurePercentage"] == {"Ref": "BatchToleratedFailurePercentage"}
    assert "${ToleratedFailurePercentage}" in defaults["tolerated_failure_percentage.$"]
    # And each segment invokes the batch function's live alias, retrying Lambda's service errors
    task = regenerate["ItemProcessor"]["States"]["Segment"]
    assert task["Resource"] == "arn:aws:states:::lambda:invoke"
    assert task["Parameters"]["FunctionName"] == "${BatchFunction}"
    assert substitutions["BatchFunction"] == {"Ref": f"BatchGenerateFunctionAlias{ALIAS}"}
    retried = {error for rule in task["Retry"] for error in rule["ErrorEquals"]}
    assert {"Lambda.ServiceException", "Lambda.TooManyRequestsException", "SegmentIncomplete", "UnavailableError"} <= (
        retried
    )
    # And the batch function has no route: only the state machine invokes it
    assert "Events" not in template["Resources"]["BatchGenerateFunction"]["Properties"]


def test_batch_state_machine_may_invoke_the_batch_function_and_run_its_own_children_only(
    transformed: dict[str, Any],
) -> None:
    resources = transformed["Resources"]
    (machine,) = of_type(transformed, "AWS::StepFunctions::StateMachine").values()
    role = resources[machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    actions = {action: statement["Resource"] for statement in statements for action in _listed(statement["Action"])}
    assert set(actions) == {
        "lambda:InvokeFunction",
        "states:StartExecution",
        "states:DescribeExecution",
        "states:StopExecution",
    }
    assert "BatchGenerateFunction" in json.dumps(actions["lambda:InvokeFunction"])
    assert actions["states:StartExecution"]["Fn::Sub"].endswith(":stateMachine:${AWS::StackName}-batch-generate")
    assert actions["states:StopExecution"]["Fn::Sub"].endswith(":execution:${AWS::StackName}-batch-generate/*")


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_a_completed_stack_update_starts_batch_generation_when_asked(
    template: dict[str, Any], transformed: dict[str, Any]
) -> None:
    # Given BatchOnDeploy (off by default)
    assert template["Parameters"]["BatchOnDeploy"]["Default"] == "false"
    assert template["Conditions"]["StartBatchOnDeploy"] == {"Fn::Equals": [{"Ref": "BatchOnDeploy"}, "true"]}
    resources = transformed["Resources"]
    (rule,) = of_type(transformed, "AWS::Events::Rule").values()
    assert rule["Condition"] == "StartBatchOnDeploy"
    # Then this stack's completed update (after the functions' alias moved to the new image) starts the state machine
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["resources"] == [{"Ref": "AWS::StackId"}]
    assert pattern["detail"]["status-details"]["status"] == ["UPDATE_COMPLETE"]
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": "BatchGenerateStateMachine"}
    # And the rule's role may start that state machine and do nothing else
    role = resources[target["RoleArn"]["Fn::GetAtt"][0]]
    assert role["Condition"] == "StartBatchOnDeploy"
    ((statement,),) = [p["PolicyDocument"]["Statement"] for p in role["Properties"]["Policies"]]
    assert (statement["Action"], statement["Resource"]) == (
        ["states:StartExecution"],
        {"Ref": "BatchGenerateStateMachine"},
    )
