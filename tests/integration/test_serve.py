"""`recsys serve` (the README's first command, after set-up): /docs and a generate/show round trip over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KNOWN_CUSTOMER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def request(method: str, url: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=30) as response:
        body = response.read()
        return response.status, json.loads(body) if response.headers.get_content_type() == "application/json" else body


@pytest.fixture
def server(model_dir: Path) -> Iterator[str]:
    port, dynamodb_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"TABLE_NAME", "DYNAMODB_ENDPOINT_URL"}}
    env |= {"MODEL_DIR": str(model_dir), "AWS_DEFAULT_REGION": "us-east-1"}
    command = [sys.executable, "-m", "recsys.cli", "serve", "--port", str(port), "--dynamodb-port", str(dynamodb_port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                request("GET", f"{base}/openapi.json")
                break
            except OSError:
                time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_serve_answers_docs_and_a_generate_show_round_trip(server: str) -> None:
    status, docs = request("GET", f"{server}/docs")
    assert status == 200
    assert b"swagger" in docs.lower()

    status, generated = request("POST", f"{server}/customers/{KNOWN_CUSTOMER}/recommendations?k=5")
    assert status == 200
    assert len(generated["items"]) == 5

    status, shown = request("GET", f"{server}/customers/{KNOWN_CUSTOMER}/recommendations")
    assert status == 200
    assert shown == generated
