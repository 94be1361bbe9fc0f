"""A process delivering one order several times at once (threads) to the service, on the DynamoDB the environment
names: the test of deliveries racing in several processes runs a few of these against one moto server.

``python -m tests.support.deliveries <customer_id> <order JSON> <threads>`` prints ``ready`` once warm, waits for a
line on stdin (the test releases every process together), delivers, then prints one JSON line: the answers (or error
codes) and the conditional writes it lost."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from recsys.errors import RecsysError
from recsys.schemas import RecordPurchasesRequest
from recsys.service import default_service
from recsys.settings import load_settings
from tests.support.races import LostRaces


def main(customer_id: str, body: str, threads: int) -> None:
    settings = load_settings()
    service = default_service(settings, LostRaces(settings))
    order = RecordPurchasesRequest.model_validate_json(body)
    service.store.get_history(f"{customer_id}-warm-up")  # the client's first call is slower: not in the race

    def deliver(_: int) -> dict[str, Any] | str:
        try:
            return service.record_purchases(customer_id, order)
        except RecsysError as error:
            return error.code

    print("ready", flush=True)
    sys.stdin.readline()
    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(deliver, range(threads)))
    print(json.dumps({"answers": answers, "lost_races": LostRaces.lost}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
