"""The batch state machine of template.yaml, executed: moto's Step Functions interpreter (ASL, from LocalStack) runs
the definition as deployed (its substitutions applied) and its Distributed Map invokes the batch function once per
segment. Lambda's runtime cannot run here, so the invocation runs the batch function's handler in-process and answers
as Lambda's Python runtime does (an exception becomes a FunctionError with its errorType, what the Retry rules
match). DynamoDB under moto, the session's model."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto.awslambda.models import LambdaBackend

from recsys.batch import make_handler
from recsys.service import RecommendationService
from recsys_tools.events import FakeLambdaContext
from recsys_tools.template import load_template, state_machine_definition
from tests.support.data import SliceHistories

FUNCTION = "batch-generate"
ROLE = "arn:aws:iam::123456789012:role/batch-generate"
K = 5


class FifteenMinutes(FakeLambdaContext):
    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@dataclass
class BatchFunction:
    """The batch function as the state machine invokes it: the events it got, in order, and the Lambda context each
    invocation gets (default: 15 minutes left)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    context_of: Callable[[dict[str, Any]], FakeLambdaContext] = lambda _: FifteenMinutes()


@pytest.fixture
def batch_function(service: RecommendationService, monkeypatch: pytest.MonkeyPatch) -> BatchFunction:
    handler = make_handler(lambda _: service)
    function = BatchFunction()

    def invoke(_: LambdaBackend, name: str, qualifier: Any, body: str, headers: Any, response: dict[str, str]) -> bytes:
        assert name == FUNCTION
        event = json.loads(body)
        function.events.append(event)
        try:
            context: Any = function.context_of(event)  # the attributes Powertools reads
            return json.dumps(handler(event, context)).encode()
        except Exception as error:  # what Lambda's Python runtime reports for an unhandled exception
            response["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(error).__name__, "errorMessage": str(error)}).encode()

    monkeypatch.setattr(LambdaBackend, "invoke", invoke)
    return function


def execute(execution_input: dict[str, Any]) -> dict[str, Any]:
    """Create the template's state machine and run one execution to its end; its description."""
    definition = state_machine_definition(
        load_template(), "BatchGenerateStateMachine", {"BatchGenerateFunction.Alias": FUNCTION}
    )
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = sfn.create_state_machine(name="batch-generate", definition=definition, roleArn=ROLE)
    execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input=json.dumps(execution_input))
    deadline = time.monotonic() + 120
    while (described := sfn.describe_execution(executionArn=execution["executionArn"]))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not finish"
        time.sleep(0.05)
    return dict(described)


def test_a_run_regenerates_every_customer_once_per_segment(
    service: RecommendationService, histories: SliceHistories, batch_function: BatchFunction
) -> None:
    # When the state machine runs with three segments and k 5 (the other options: the template's defaults)
    described = execute({"total_segments": 3, "k": K})
    # Then it succeeded, invoking the batch function once per segment with the merged options
    assert described["status"] == "SUCCEEDED", described
    assert sorted(e["segment"] for e in batch_function.events) == [0, 1, 2]
    assert {(e["total_segments"], e["k"], e["force"], e["popular_for_unknown"]) for e in batch_function.events} == {
        (3, K, False, False)
    }
    # And every customer with a history has a list of k products from the model
    for customer in histories.by_customer:
        stored = service.store.get(customer)
        assert stored is not None, customer
        assert stored.model_version == service.model_version()
        assert len(stored.items) == K


def test_a_segment_stopped_before_its_end_is_retried_and_finished(
    service: RecommendationService, histories: SliceHistories, batch_function: BatchFunction
) -> None:
    # Given segment 1's first invocation with too little time left to start (it raises SegmentIncomplete)
    first = [True]

    def context(event: dict[str, Any]) -> FakeLambdaContext:
        if event["segment"] == 1 and first[0]:
            first[0] = False
            return FakeLambdaContext()  # 30 s left: below the batch function's stop margin
        return FifteenMinutes()

    batch_function.context_of = context
    # When the state machine runs
    described = execute({"total_segments": 2})
    # Then the Retry rule for SegmentIncomplete invoked segment 1 again and the run succeeded with every customer
    assert described["status"] == "SUCCEEDED", described
    assert [e["segment"] for e in batch_function.events].count(1) == 2
    assert all(service.store.get(customer) is not None for customer in histories.by_customer)


def test_a_failing_segment_is_counted_failed_in_the_map_run(
    service: RecommendationService, batch_function: BatchFunction
) -> None:
    # When the batch function refuses its event (no Retry rule matches: a bug, not a transient fault)
    described = execute({"total_segments": 2, "k": 0})
    # Then both segments were tried once and the map run counts them failed, with the function's error in the history
    assert sorted(e["segment"] for e in batch_function.events) == [0, 1]
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    (run,) = sfn.list_map_runs(executionArn=described["executionArn"])["mapRuns"]
    counts = sfn.describe_map_run(mapRunArn=run["mapRunArn"])["itemCounts"]
    assert (counts["failed"], counts["succeeded"], counts["total"]) == (2, 0, 2)
    # Library fact: moto's interpreter ignores ToleratedFailurePercentagePath (it logs so) and ends the execution
    # SUCCEEDED; Step Functions fails it with States.ExceedToleratedFailureThreshold (the template tolerates 0%).
    assert described["status"] == "SUCCEEDED"
