"""The time budget of a request: a deadline, per request, after which no DynamoDB attempt starts.

A service operation runs ``within(settings)``; the DynamoDB client asks ``check(attempt_seconds)`` before every attempt
(a botocore ``before-send`` hook, so botocore's own retries too): an attempt that could still be running at the
deadline (the connect plus the read timeout) does not start, and the request answers 503 in time, below its
function's timeout, instead of being killed by Lambda. Without a budget (tooling, tests of the store) nothing is
checked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("recsys_request_deadline", default=None)


class BudgetExhausted(Exception):
    """The request's time budget has not enough left for another DynamoDB attempt."""


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Run the block with a deadline ``seconds`` from now (an enclosing budget's, if earlier, stays)."""
    deadline = time.monotonic() + seconds
    current = _deadline.get()
    token = _deadline.set(deadline if current is None else min(current, deadline))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left until the deadline (None without a budget)."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def check(needed: float) -> None:
    """BudgetExhausted unless ``needed`` seconds are left (or there is no budget)."""
    left = remaining()
    if left is not None and left < needed:
        raise BudgetExhausted(f"{max(left, 0):.2f} s left of the request's budget, {needed:.2f} s needed")
