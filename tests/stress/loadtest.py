"""A bounded load test: many customers, each through generate -> show -> update -> delete -> show, over loopback.

Stops by itself after ``requests`` requests or ``time_limit`` seconds, whichever comes first. Usable on its own
against a running `recsys serve`::

    python -m tests.stress.loadtest --url http://127.0.0.1:8000 --requests 3000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# One customer's round: (method, expected status, body); a first GET finds no list yet.
ROUND: tuple[tuple[str, int, dict[str, Any] | None], ...] = (
    ("GET", 404, None),
    ("POST", 200, None),
    ("GET", 200, None),
    ("PATCH", 200, {"products": [{"product_id": "LOAD-1", "score": 1.5}, {"product_id": "LOAD-2", "score": 0.5}]}),
    ("DELETE", 200, {"product_ids": ["LOAD-2"]}),
    ("GET", 200, None),
)


@dataclass
class LoadReport:
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.percentile(0.50), 1),
            "p99_ms": round(self.percentile(0.99), 1),
            "max_ms": round(max(self.latencies_ms, default=0.0), 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "server_errors": self.server_errors,
            "unexpected": self.unexpected[:20],
        }


async def run_load(
    base_url: str,
    customers: Sequence[str],
    *,
    requests: int = 3000,
    concurrency: int = 16,
    time_limit: float = 120.0,
) -> LoadReport:
    """Send up to ``requests`` requests, ``concurrency`` customers at a time, for at most ``time_limit`` seconds."""
    if urlsplit(base_url).hostname not in LOOPBACK:
        raise ValueError(f"the load test only targets loopback, not {base_url}")
    report = LoadReport()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for customer in customers:
        queue.put_nowait(customer)
    started = time.perf_counter()
    deadline = started + time_limit

    def budget_left() -> bool:
        return report.requests < requests and time.perf_counter() < deadline

    async def worker(client: httpx.AsyncClient) -> None:
        while budget_left() and not queue.empty():
            customer = queue.get_nowait()
            for method, expected, body in ROUND:
                if not budget_left():
                    return
                report.requests += 1
                sent = time.perf_counter()
                response = await client.request(method, f"/customers/{customer}/recommendations", json=body)
                report.latencies_ms.append((time.perf_counter() - sent) * 1000)
                report.statuses[response.status_code] += 1
                if response.status_code != expected:
                    report.unexpected.append(f"{method} {customer}: {response.status_code} {response.text[:200]}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    report.seconds = time.perf_counter() - started
    return report


def customers_for(requests: int, known: Sequence[str]) -> list[str]:
    """Enough distinct customers for ``requests`` requests: the model's known ones first, then new ones."""
    needed = -(-requests // len(ROUND))
    return [*known[:needed], *(f"load-{i}" for i in range(max(0, needed - len(known))))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--time-limit", type=float, default=120.0)
    args = parser.parse_args(argv)
    report = asyncio.run(
        run_load(
            args.url,
            customers_for(args.requests, []),
            requests=args.requests,
            concurrency=args.concurrency,
            time_limit=args.time_limit,
        )
    )
    print(json.dumps(report.summary() | {"settings": vars(args)}, indent=2))
    return 1 if report.server_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
