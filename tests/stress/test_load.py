"""Load: a few thousand mixed requests over many customers against `recsys serve` on loopback, with no 5xx."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.stress.loadtest import customers_for, run_load
from tests.support.data import SliceHistories

REQUESTS = 3000
CONCURRENCY = 16
TIME_LIMIT = 240.0  # seconds: the run stops by itself, however slow the machine


@pytest.mark.stress
def test_thousands_of_mixed_requests_get_no_server_error(
    served: str, histories: SliceHistories, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Given `recsys serve` on loopback seeded with the slice's histories, and those customers followed by new ones
    customers = customers_for(REQUESTS, sorted(histories.by_customer))
    # When each is taken through show (none yet), generate, show, update, delete, show, 16 customers at a time
    report = asyncio.run(run_load(served, customers, requests=REQUESTS, concurrency=CONCURRENCY, time_limit=TIME_LIMIT))
    summary = report.summary() | {"concurrency": CONCURRENCY, "customers": len(customers)}
    path = tmp_path_factory.mktemp("stress") / "load.json"
    path.write_text(json.dumps(summary, indent=2))
    print(f"\nload test ({path}): {json.dumps(summary)}")
    # Then every request got its expected answer, none a 5xx, and the run was not cut short by the time limit
    assert report.server_errors == 0, summary
    assert report.unexpected == [], summary
    assert report.requests == REQUESTS, summary
