"""`recsys serve`: every operation's router as one local app with /docs, on an embedded DynamoDB unless one is
configured.

With neither DYNAMODB_ENDPOINT_URL nor TABLE_NAME in the environment it starts moto's DynamoDB server on loopback,
creates the tables from template.yaml and seeds the purchase histories of the shipped data (`--seed-data`, as
`recsys import-history` does), so the example customer is personalised; otherwise it uses the configured
endpoint/tables as they are.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from recsys.artifact import CURRENT
from recsys.settings import Settings, load_settings
from recsys_tools.training.params import DEFAULT_DATA

EXAMPLE_CUSTOMER = "17850"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dynamodb-port", type=int, default=8001, help="port of the embedded DynamoDB")
    parser.add_argument(
        "--seed-data",
        type=Path,
        default=DEFAULT_DATA,
        help="purchase CSV whose histories seed the embedded DynamoDB (default: the shipped data)",
    )
    parser.add_argument("--no-seed", action="store_true", help="start the embedded DynamoDB without histories")


def _ensure_model(settings: Settings) -> None:
    if settings.model_dir is None and not (settings.artifacts_root / CURRENT).exists():
        print("No current model: training one from the shipped data first (a few minutes).", flush=True)
        from recsys_tools.cli import main

        if main(["train", "--artifacts-root", str(settings.artifacts_root)]) != 0:
            raise SystemExit("training failed")


def _start_embedded_dynamodb(settings: Settings, host: str, port: int) -> Settings:
    """moto's DynamoDB server on ``host:port`` with the template's table; the settings that point at it."""
    from moto.server import ThreadedMotoServer

    from recsys_tools.local_stack import create_table

    ThreadedMotoServer(ip_address=host, port=port, verbose=False).start()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "local")  # boto3 needs credentials; moto accepts any
    local = settings.model_copy(update={"dynamodb_endpoint_url": f"http://{host}:{port}"})
    create_table(local)
    return local


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from recsys.api import create_app
    from recsys.service import default_service

    settings = load_settings()
    _ensure_model(settings)
    if settings.dynamodb_endpoint_url is not None or "TABLE_NAME" in os.environ:
        where = f"configured DynamoDB table {settings.table_name!r} at {settings.dynamodb_endpoint_url or 'AWS'}"
    else:
        settings = _start_embedded_dynamodb(settings, "127.0.0.1", args.dynamodb_port)
        where = f"embedded DynamoDB at {settings.dynamodb_endpoint_url}"
        if not args.no_seed:
            from recsys_tools.import_history import import_histories
            from recsys_tools.training.data import load_purchases

            print(f"Seeding the purchase histories of {args.seed_data.name}", flush=True)
            outcomes = import_histories(settings, load_purchases(args.seed_data))
            where += f", {outcomes['written']} customers' histories seeded"
    service = default_service(settings)
    try:
        service.load_model()  # load now: the first request is fast and a broken model shows here
    except Exception as error:
        print(f"WARNING: {error}; generate and update will answer 503 until it loads", flush=True)
    base = f"http://{args.host}:{args.port}"
    print(
        f"\nrecsys serving on {base} ({where})\n"
        f"  API docs:  {base}/docs\n"
        f"  OpenAPI:   {base}/openapi.json\n"
        "Try:\n"
        f"  curl -s -X POST '{base}/customers/{EXAMPLE_CUSTOMER}/recommendations?k=5'\n"
        f"  curl -s {base}/customers/{EXAMPLE_CUSTOMER}/recommendations\n"
        f"  curl -s -X POST -H 'content-type: application/json' {base}/customers/{EXAMPLE_CUSTOMER}/purchases \\\n"
        """    -d '{"order_id": "536365", "purchases": [{"product_id": "85123A", "quantity": 6}]}'\n""",
        flush=True,
    )
    uvicorn.run(create_app(settings, lambda: service), host=args.host, port=args.port, log_level="info")
    return 0
