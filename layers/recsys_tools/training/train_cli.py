"""`recsys train` on the command line: its flags, built from ``params`` (no pandas, no TensorFlow, so ``--help`` is
quick), and ``run``, which imports ``recsys_tools.training.train`` to do the work. The data flags are shared with
`recsys evaluate`."""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.settings import Settings
from recsys_tools.training.params import DEFAULT_DATA, DEFAULT_SPLIT_DATE, K_MAX, Columns, TrainParams

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def add_csv_arguments(parser: argparse.ArgumentParser) -> None:
    """Which purchase CSV and how to read it (shared with `recsys evaluate` and `recsys import-history`)."""
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="purchases CSV (default: the shipped file)")
    defaults = Columns()
    for field in fields(Columns):
        parser.add_argument(
            f"--{field.name}-column", default=getattr(defaults, field.name), help=f"CSV column of the {field.name}"
        )
    parser.add_argument(
        "--product-pattern",
        help="regex product ids must match (default: the Online Retail one with the retail rules, none otherwise)",
    )
    parser.add_argument(
        "--retail-rules",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="clean with the Online Retail rules (its product id pattern, invoices starting with C are "
        "cancellations); default: on for the shipped file only (recognised by its sha256, not its column names)",
    )


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Data flags shared with `recsys evaluate`: the CSV, the evaluation split and where artifacts live."""
    add_csv_arguments(parser)
    parser.add_argument("--split-date", default=DEFAULT_SPLIT_DATE, help="evaluation split (YYYY-MM-DD)")
    parser.add_argument("--artifacts-root", type=Path, default=Settings().artifacts_root)


def load_data(args: argparse.Namespace) -> tuple[pd.DataFrame, str, dict[str, Any]]:
    """The cleaned purchases the data flags name, the file's sha256 and what the cleaning did
    (``recsys_tools.training.data.clean_with_report``)."""
    from recsys_tools.training.data import file_sha256, load_purchases_with_report

    columns = Columns(**{f.name: getattr(args, f"{f.name}_column") for f in fields(Columns)})
    purchases, cleaning = load_purchases_with_report(args.data, columns, args.product_pattern, args.retail_rules)
    return purchases, file_sha256(args.data), cleaning


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--version", help="artifact version (default: UTC YYYYMMDD-HHMMSS)")
    parser.add_argument("--k-max", type=int, default=K_MAX, help="columns returned by the recommend signatures")
    parser.add_argument("--no-evaluate", action="store_true", help="skip the time-split evaluation")
    parser.add_argument("--no-current", action="store_true", help="do not mark the new version current")
    defaults = TrainParams()
    for field in fields(TrainParams):
        value = getattr(defaults, field.name)
        flag = f"--{field.name.replace('_', '-')}"
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)


def run(args: argparse.Namespace) -> int:
    from recsys_tools.training.train import train_and_export

    configure_logging()
    params = TrainParams(**{f.name: getattr(args, f.name) for f in fields(TrainParams)})
    purchases, sha, cleaning = load_data(args)
    started = time.monotonic()
    path = train_and_export(
        purchases,
        args.artifacts_root,
        params=params,
        evaluate=not args.no_evaluate,
        version=args.version,
        split_date=args.split_date,
        k_max=args.k_max,
        data_sha256=sha,
        cleaning=cleaning,
        make_current=not args.no_current,
        report_dir=args.artifacts_root / "reports",
    )
    log.info("done in %.0f s", time.monotonic() - started)
    print(path)
    return 0
