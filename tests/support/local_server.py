"""HTTP on loopback for the tests: free ports, a small JSON client and `recsys serve` started as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recsys_tools.local_stack import free_port

STARTUP_SECONDS = 180


def request(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """(status, JSON body or raw bytes) of one request, with ``body`` as JSON if given; raises OSError (HTTPError) on
    failure."""
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"content-type": "application/json"}
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=30) as response:  # nosec B310
        body = response.read()
        return response.status, json.loads(body) if response.headers.get_content_type() == "application/json" else body


@contextmanager
def recsys_serve(model_dir: Path, log: Path, seed_data: Path) -> Iterator[str]:
    """`recsys serve` on free loopback ports with its embedded DynamoDB seeded with ``seed_data``'s histories; yields
    the base URL. Output goes to ``log``: under load the access log alone would fill a pipe nobody reads and stall the
    server."""
    port, dynamodb_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"TABLE_NAME", "DYNAMODB_ENDPOINT_URL"}}
    env |= {"MODEL_DIR": str(model_dir), "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true"}
    command = [
        sys.executable,
        "-m",
        "recsys_tools.cli",
        "serve",
        "--port",
        str(port),
        "--dynamodb-port",
        str(dynamodb_port),
        "--seed-data",
        str(seed_data),
    ]
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)  # nosec B603
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while True:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"recsys serve did not start:\n{log.read_text()}"
                try:
                    request("GET", f"{base}/openapi.json")
                    break
                except OSError:
                    time.sleep(0.5)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)
