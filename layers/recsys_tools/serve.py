"""`recsys serve`: the four routers as one local app with /docs, on an embedded DynamoDB unless one is configured.

With neither DYNAMODB_ENDPOINT_URL nor TABLE_NAME in the environment it starts moto's DynamoDB server on loopback and
creates the table from template.yaml; otherwise it uses the configured endpoint/table as they are.
"""

from __future__ import annotations

import argparse
import os

from recsys.artifact import CURRENT
from recsys.settings import Settings

EXAMPLE_CUSTOMER = "17850"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dynamodb-port", type=int, default=8001, help="port of the embedded DynamoDB")


def _ensure_model(settings: Settings) -> None:
    if settings.model_dir is None and not (settings.artifacts_root / CURRENT).exists():
        print("No current model: training one from the shipped data first (a few minutes).", flush=True)
        from recsys_tools.cli import main

        if main(["train", "--artifacts-root", str(settings.artifacts_root)]) != 0:
            raise SystemExit("training failed")


def _start_embedded_dynamodb(host: str, port: int) -> str:
    from moto.server import ThreadedMotoServer

    from recsys.store import RecommendationStore
    from recsys_tools.local_stack import create_table

    ThreadedMotoServer(ip_address=host, port=port, verbose=False).start()
    endpoint = f"http://{host}:{port}"
    os.environ["DYNAMODB_ENDPOINT_URL"] = endpoint
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "local")  # moto accepts any credentials
    settings = Settings()
    create_table(RecommendationStore(settings).client, settings.table_name)
    return endpoint


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from recsys.api import create_app

    _ensure_model(Settings())
    if "DYNAMODB_ENDPOINT_URL" in os.environ or "TABLE_NAME" in os.environ:
        where = (
            f"configured DynamoDB table {Settings().table_name!r} at {os.environ.get('DYNAMODB_ENDPOINT_URL', 'AWS')}"
        )
    else:
        where = f"embedded DynamoDB at {_start_embedded_dynamodb('127.0.0.1', args.dynamodb_port)}"
    try:
        from recsys.dependencies import get_recommender

        get_recommender()  # load now: the first request is fast and a broken model shows here
    except Exception as error:
        print(f"WARNING: {error}; generate and update will answer 503 until it loads", flush=True)
    base = f"http://{args.host}:{args.port}"
    print(
        f"\nrecsys serving on {base} ({where})\n"
        f"  API docs:  {base}/docs\n"
        f"  OpenAPI:   {base}/openapi.json\n"
        "Try:\n"
        f"  curl -s -X POST '{base}/customers/{EXAMPLE_CUSTOMER}/recommendations?k=5'\n"
        f"  curl -s {base}/customers/{EXAMPLE_CUSTOMER}/recommendations\n",
        flush=True,
    )
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")
    return 0
