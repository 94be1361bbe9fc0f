"""Schemathesis against the local app's own OpenAPI document, on moto's DynamoDB with the real (small) model.

Every generated request, valid or deliberately invalid, gets a response the document describes and never a 5xx;
invalid ones are rejected. The default run is a smoke-sized sample; `make stress` runs thousands of cases.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from recsys.api import create_app
from recsys.service import RecommendationService
from recsys.settings import Settings

# the app (and so its OpenAPI document) is built at collection; each test hands it the service of its moto table
_services: list[RecommendationService] = []
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings(), lambda: _services[-1]))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
OPERATIONS = 5
DEFAULT_EXAMPLES = 50
STRESS_EXAMPLES = 600
STRESS_MIN_CASES = 2000
_quiet = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much]


@pytest.fixture(scope="module")
def cases() -> Iterator[Counter[str]]:
    """Cases run per status class in this module; printed at the end (`pytest -s` shows them)."""
    counter: Counter[str] = Counter()
    yield counter
    print(f"\nschemathesis: {counter.total()} cases, by status class: {dict(sorted(counter.items()))}")


@pytest.fixture
def served(service: RecommendationService) -> Iterator[None]:
    """The app serves ``service`` (moto's DynamoDB), with the model loaded up front so no case waits for it."""
    service.load_model()
    _services.append(service)
    yield
    _services.pop()


def call_and_check(case: schemathesis.Case[Any], cases: Counter[str]) -> None:
    response = case.call_and_validate(checks=CHECKS)
    cases[f"{response.status_code // 100}xx"] += 1


@schema.parametrize()
@settings(max_examples=DEFAULT_EXAMPLES, deadline=None, suppress_health_check=_quiet, database=None)
def test_every_operation_answers_within_its_contract(
    case: schemathesis.Case[Any], served: None, cases: Counter[str]
) -> None:
    # Given the app on moto with the model; When schemathesis sends a generated request; Then the checks hold
    call_and_check(case, cases)


@pytest.mark.stress
@schema.parametrize()
@settings(max_examples=STRESS_EXAMPLES, deadline=None, suppress_health_check=_quiet, database=None)
def test_every_operation_answers_within_its_contract_under_thousands_of_cases(
    case: schemathesis.Case[Any], served: None, cases: Counter[str]
) -> None:
    # Given the app on moto with the model; When schemathesis sends thousands of generated requests
    # Then every one is answered within the contract, without a 5xx
    call_and_check(case, cases)


@pytest.mark.stress
def test_the_stress_run_covered_enough_cases(cases: Counter[str]) -> None:
    # Given the stress cases above ran in this module (same module-scoped counter)
    # Then there were at least STRESS_MIN_CASES of them, none a 5xx
    assert cases.total() >= STRESS_MIN_CASES, dict(cases)
    assert cases["5xx"] == 0
