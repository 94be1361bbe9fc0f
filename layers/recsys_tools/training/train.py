"""`recsys train`: clean the data, evaluate on the time split, train the served model on all data, export it as
``model_artifacts/<version>/`` (layout in ``recsys.artifact``) and mark it current.

The served model is retrained on the full data (same parameters), so every customer's query embedding comes from
the customer's full history and products first sold after the split date are in the vocabulary; the metrics in the
manifest are those of the same parameters trained on the split.

Serve-time blend (``parameters.buy_again_weight`` = w in the manifest), applied by ``recsys.recommender``: for a
known customer c, served_score(c, p) = model_score(c, p) + w * log(1 + n(c, p)), where model_score is the
``recommend``/``score`` signature's dot product (a softmax logit) and n(c, p) the times c bought p (purchases.json).
To rank products c bought that are not in the ScaNN top-K_MAX, the recommender scores them with ``score`` and merges.
w = 0 disables it; ranking only new products ("exclude_purchased") drops c's purchases instead, where the blend adds
nothing. The evaluation report gives this blend ("served") beside the plain indicator blend w * [p bought].
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from dataclasses import asdict, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recsys import artifact
from recsys.settings import Settings
from recsys_tools.training.data import (
    DEFAULT_DATA,
    DEFAULT_SPLIT_DATE,
    Columns,
    file_sha256,
    frame_sha256,
    load_purchases,
    product_names,
    validate,
)
from recsys_tools.training.model import TrainParams

__all__ = ["VARIANTS", "TrainParams", "add_arguments", "run", "train_and_export"]

log = logging.getLogger(__name__)

K_MAX = 200
POPULAR_SIZE = 500

# every variant tried, as a change of the shipped parameters (reported by `recsys evaluate --variants all`)
VARIANTS: dict[str, Any] = {
    "two-tower ID-only (no names, no country, no logQ)": lambda p: replace(
        p, use_names=False, use_country=False, logq_correction=False, buy_again_weight=0.0
    ),
    "two-tower, no product names": lambda p: replace(p, use_names=False),
    "two-tower, no logQ correction": lambda p: replace(p, logq_correction=False),
    "two-tower, target kept in history": lambda p: replace(p, leave_target_out=False),
    "two-tower + customer id embedding": lambda p: replace(p, use_customer_id=True),
    "two-tower, no buy-again blend": lambda p: replace(p, buy_again_weight=0.0),
}


def popular_products(purchases: pd.DataFrame, size: int = POPULAR_SIZE) -> list[dict[str, Any]]:
    """Most distinct customers first (ties: quantity)."""
    stats = purchases.groupby("product_id").agg(customers=("customer_id", "nunique"), quantity=("quantity", "sum"))
    top = stats.sort_values(["customers", "quantity"], ascending=False, kind="stable").head(size)
    return [{"product_id": p, "score": float(n)} for p, n in zip(top.index, top["customers"], strict=True)]


def customer_purchases(purchases: pd.DataFrame) -> dict[str, dict[str, int]]:
    """How many times each customer bought each product, most often bought first (ties: most recent first)."""
    stats = purchases.groupby(["customer_id", "product_id"]).agg(n=("timestamp", "size"), last=("timestamp", "max"))
    ordered = stats.reset_index().sort_values(["customer_id", "n", "last"], ascending=[True, False, False])
    return {
        customer: dict(zip(group["product_id"], group["n"].astype(int).tolist(), strict=True))
        for customer, group in ordered.groupby("customer_id", sort=True)
    }


def split_metrics(
    purchases: pd.DataFrame, params: TrainParams, split_date: str | None, report_dir: Path | None
) -> dict[str, Any]:
    """Recall/NDCG@20 of these parameters trained on the time split, with the baselines for context; optionally
    also the markdown report and plot."""
    from recsys_tools.training.evaluate import evaluate_all, report_header, write_report

    results, notes = evaluate_all(purchases, split_date, params, {})
    if report_dir is not None:
        write_report(report_dir, results, notes, report_header(len(purchases), split_date, params))
    return {
        name: {view: {k: v for k, v in metrics.items() if k != "recall_curve"} for view, metrics in by_view.items()}
        for name, by_view in results.items()
    }


def train_and_export(
    purchases: pd.DataFrame | Path,
    artifacts_root: Path,
    *,
    params: TrainParams | None = None,
    evaluate: bool = False,
    version: str | None = None,
    split_date: str | None = DEFAULT_SPLIT_DATE,
    k_max: int = K_MAX,
    data_sha256: str | None = None,
    make_current: bool = True,
    report_dir: Path | None = None,
) -> Path:
    """Train on all of ``purchases`` (a CSV with the Online Retail columns, or a cleaned frame as made by
    ``recsys_tools.training.data``), export ``artifacts_root/<version>`` and (by default) mark it current."""
    from recsys_tools.training.export import export_model
    from recsys_tools.training.model import fit

    params = params or TrainParams()
    if isinstance(purchases, Path):
        data_sha256 = data_sha256 or file_sha256(purchases)
        purchases = load_purchases(purchases)
    else:
        purchases = validate(purchases)
        data_sha256 = data_sha256 or frame_sha256(purchases)
    version = version or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    final = artifacts_root / version
    if final.exists():
        raise FileExistsError(f"{final} exists; choose another --version")

    metrics = split_metrics(purchases, params, split_date, report_dir) if evaluate else {}
    started = time.monotonic()
    names = product_names(purchases)
    embeddings, sizes = fit(purchases, params, names)
    train_seconds = time.monotonic() - started

    staging = artifacts_root / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    exported = export_model(
        staging,
        embeddings.customers,
        embeddings.customer_embeddings,
        embeddings.products,
        embeddings.product_embeddings,
        k_max=k_max,
    )
    manifest = {
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_sha256": data_sha256,
        "parameters": {**asdict(params), "split_date": split_date},
        "vocabulary_sizes": sizes,
        **exported,
        "metrics": metrics,
        "training": {"purchases": len(purchases), "train_seconds": round(train_seconds, 1)},
    }
    artifact.write_json(staging / artifact.MANIFEST, manifest)
    artifact.write_json(staging / artifact.CUSTOMERS, embeddings.customers)
    artifact.write_json(staging / artifact.CATALOGUE, {p: names[p] for p in embeddings.products})
    artifact.write_json(staging / artifact.POPULAR, popular_products(purchases))
    artifact.write_json(staging / artifact.PURCHASES, customer_purchases(purchases))
    staging.replace(final)
    if make_current:
        artifact.mark_current(artifacts_root, version)
    log.info("exported %s (ScaNN recall@10 %.3f)", final, exported["scann_recall_at_10"])
    return final


# --- CLI --------------------------------------------------------------------------------------------------------


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Data flags shared with `recsys evaluate`."""
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="purchases CSV (default: the shipped file)")
    defaults = Columns()
    for field in fields(Columns):
        parser.add_argument(
            f"--{field.name}-column", default=getattr(defaults, field.name), help=f"CSV column of the {field.name}"
        )
    parser.add_argument(
        "--product-pattern",
        help="regex product ids must match (default: the Online Retail one when the product column is StockCode)",
    )
    parser.add_argument("--split-date", default=DEFAULT_SPLIT_DATE, help="evaluation split (YYYY-MM-DD)")
    parser.add_argument("--artifacts-root", type=Path, default=Settings().artifacts_root)


def load_data(args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    columns = Columns(**{f.name: getattr(args, f"{f.name}_column") for f in fields(Columns)})
    return load_purchases(args.data, columns, args.product_pattern), file_sha256(args.data)


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
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = TrainParams(**{f.name: getattr(args, f.name) for f in fields(TrainParams)})
    purchases, sha = load_data(args)
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
        make_current=not args.no_current,
        report_dir=args.artifacts_root / "reports",
    )
    log.info("done in %.0f s", time.monotonic() - started)
    print(path)
    return 0
