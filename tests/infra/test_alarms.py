"""template.yaml's alarms see what fails: per function Lambda errors, throttles, p99 duration and the 5xx answers the
handler reports itself (a DynamoDB outage or an unexpected exception returns normally through Mangum, so Lambda's
Errors stays 0); for the stack the API's 5xx and the table's throttles and system errors. Each notifies the optional
topic when it fires and when it clears.

The 5xx alarms must name the metric exactly as Powertools emits it (namespace, name, dimensions): one test runs a
handler configured as the template configures it, in a fresh interpreter as on Lambda (Powertools reads its variables
at import), makes it answer 503 (no table) and reads the EMF line it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from recsys.settings import REPO_ROOT
from recsys_tools.template import environment, function_for, functions, table_names, tables
from tests.infra.events import EVENTS_DIR

TOPIC = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
METRIC_5XX = "Responses5xx"  # recsys.handler: f"Responses{status // 100}xx"
PROBED = "show_recommendations"  # no model to load: its handler starts in about a second
Metric = tuple[str, str, tuple[tuple[str, str], ...]]  # namespace, name, dimensions in order


def ref(logical_id: str) -> str:
    """A dimension value that refers to a resource, as ``watched`` spells it."""
    return json.dumps({"Ref": logical_id})


def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each alarm's properties by logical id."""
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def watched(template: dict[str, Any]) -> set[Metric]:
    """The metrics the single-metric alarms watch."""
    return {
        (a["Namespace"], a["MetricName"], tuple((d["Name"], _text(d["Value"])) for d in a["Dimensions"]))
        for a in alarms(template).values()
        if "MetricName" in a
    }


def _text(value: str | dict[str, Any]) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def reported_5xx(template: dict[str, Any], logical_id: str) -> Metric:
    """The metric the function's handler reports a 5xx answer on, given the environment the template gives it: what
    test_the_5xx_alarm_names_the_metric_a_failing_handler_prints observes."""
    variables = environment(template, logical_id, table_names(template, "table"))
    service = (("service", variables["POWERTOOLS_SERVICE_NAME"]),)
    return variables["POWERTOOLS_METRICS_NAMESPACE"], METRIC_5XX, service


def test_every_alarm_notifies_the_topic_when_it_fires_and_when_it_clears(template: dict[str, Any]) -> None:
    assert template["Conditions"]["HasAlarmTopic"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    for name, alarm in alarms(template).items():
        assert alarm["AlarmActions"] == alarm["OKActions"] == TOPIC, name
        assert alarm["TreatMissingData"] == "notBreaching", name


def test_each_function_alarms_on_errors_throttles_p99_duration_and_its_own_5xx_answers(
    template: dict[str, Any],
) -> None:
    metrics = watched(template)
    durations = {
        a["Dimensions"][0]["Value"]["Ref"] for a in alarms(template).values() if a.get("ExtendedStatistic") == "p99"
    }
    for logical_id in functions(template):
        function = (("FunctionName", ref(logical_id)),)
        assert {("AWS/Lambda", "Errors", function), ("AWS/Lambda", "Throttles", function)} <= metrics, logical_id
        assert logical_id in durations
        assert reported_5xx(template, logical_id) in metrics, logical_id
    # one 5xx series per function: no two functions report under the same service name
    assert len({reported_5xx(template, logical_id) for logical_id in functions(template)}) == len(functions(template))


def test_the_5xx_alarm_names_the_metric_a_failing_handler_prints(template: dict[str, Any]) -> None:
    # Given a function's handler with the environment the template gives it, and no table: DynamoDB answers
    # ResourceNotFoundException, which the service turns into a 503
    function = function_for(template, PROBED)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "DYNAMODB_"))}
    env |= environment(template, function.logical_id, table_names(template, "no-such-table"))
    env |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    env |= {"AWS_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true"}  # no X-Ray daemon here
    # When it runs on its event in a fresh interpreter under moto
    probe = (
        "import importlib, json, sys\n"
        "from moto import mock_aws\n"
        "from recsys_tools.events import FakeLambdaContext\n"
        "with mock_aws():\n"
        "    handler = importlib.import_module(sys.argv[1]).handler\n"
        "    response = handler(json.load(open(sys.argv[2])), FakeLambdaContext())\n"
        "print(json.dumps({'probe_status': response['statusCode']}))\n"
    )
    event = EVENTS_DIR / f"{function.operation}.json"
    run = subprocess.run(
        [sys.executable, "-c", probe, function.module, str(event)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    # Then it answered 503 and printed one EMF record of Responses5xx
    assert {"probe_status": 503} in lines, run.stdout + run.stderr
    (record,) = [r for r in lines if METRIC_5XX in r and "_aws" in r]
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    assert [m["Name"] for m in directive["Metrics"]] == [METRIC_5XX]
    (dimensions,) = directive["Dimensions"]
    emitted = (directive["Namespace"], METRIC_5XX, tuple((name, record[name]) for name in dimensions))
    # And that is the metric the function's 5xx alarm watches
    assert emitted == reported_5xx(template, function.logical_id)
    assert emitted in watched(template)


def test_api_5xx_is_alarmed(template: dict[str, Any], transformed: dict[str, Any]) -> None:
    (api,) = [name for name, r in transformed["Resources"].items() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    assert ("AWS/ApiGateway", "5xx", (("ApiId", ref(api)),)) in watched(template)


def test_table_throttles_and_system_errors_are_alarmed_for_every_operation_the_policies_grant(
    template: dict[str, Any],
) -> None:
    # DynamoDB publishes ThrottledRequests and SystemErrors per table and operation only: per table, every operation
    # any policy grants on it must be in that table's alarms
    granted: dict[str, set[str]] = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::ManagedPolicy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            table = statement["Resource"]["Fn::GetAtt"][0]
            granted.setdefault(table, set()).update(a.removeprefix("dynamodb:") for a in statement["Action"])
    assert granted.keys() == tables(template).keys()
    summed: dict[tuple[str, str], set[str]] = {}
    for alarm in alarms(template).values():
        queries = alarm.get("Metrics", [])
        if not queries:
            continue
        (total,) = [q for q in queries if "Expression" in q]
        assert total["Expression"] == "SUM(METRICS())"
        for query in (q for q in queries if q is not total):
            assert query["ReturnData"] is False
            metric = query["MetricStat"]["Metric"]
            dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            assert metric["Namespace"] == "AWS/DynamoDB"
            table = dimensions["TableName"]["Ref"]
            summed.setdefault((metric["MetricName"], table), set()).add(dimensions["Operation"])
    assert summed == {
        (metric, table): operations
        for table, operations in granted.items()
        for metric in ("ThrottledRequests", "SystemErrors")
    }
