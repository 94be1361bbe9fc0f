"""What `recsys train` does (its flags: ``train_cli``): clean the data, evaluate on the time split, train the served
model on all data, export it as ``model_artifacts/<version>/`` (written by ``recsys.artifact``) and mark it current.

The served model is the two-stage model of ``two_stage``: the ranking stage is trained on a validation period at
the end of the data, then the retrieval model and the product tables are fitted on all of it (so products first sold
in that period are in the vocabulary); the metrics in the manifest are those of the same parameters trained on the
evaluation split. The artifact holds nothing per customer: serving computes a customer's query and ranking features
from the purchase history kept in DynamoDB.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recsys import artifact
from recsys_tools.training.data import (
    features_used,
    file_sha256,
    frame_sha256,
    load_purchases_with_report,
    popular_products,
    product_names,
    validate,
)
from recsys_tools.training.evaluate import split_metrics
from recsys_tools.training.params import DEFAULT_SPLIT_DATE, K_MAX, TrainParams

__all__ = ["TrainParams", "train_and_export"]

log = logging.getLogger(__name__)


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
    cleaning: dict[str, Any] | None = None,
) -> Path:
    """Train on all of ``purchases`` (a CSV with the Online Retail columns, or a cleaned frame as made by
    ``recsys_tools.training.data``), export ``artifacts_root/<version>`` and (by default) mark it current.
    Features the data cannot feed (no product names, no country) are turned off in the parameters, and the manifest
    says so (``features``), with what the cleaning did (``cleaning``, when known)."""
    from recsys_tools.training.export import export_artifact
    from recsys_tools.training.progress import recording
    from recsys_tools.training.two_stage import fit_two_stage

    params = params or TrainParams()
    if isinstance(purchases, Path):
        data_sha256 = data_sha256 or file_sha256(purchases)
        purchases, cleaning = load_purchases_with_report(purchases)
    else:
        purchases = validate(purchases)
        data_sha256 = data_sha256 or frame_sha256(purchases)
    version = version or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    final = artifacts_root / version
    if final.exists():
        raise FileExistsError(f"{final} exists; choose another --version")

    params, features = features_used(purchases, params, cleaning)
    metrics = split_metrics(purchases, params, split_date, report_dir) if evaluate else {}
    started = time.monotonic()
    names = product_names(purchases)
    with recording() as runs:
        towers, ranking, sizes = fit_two_stage(purchases, params, names)
    train_seconds = time.monotonic() - started

    staging = artifact.staging_dir(artifacts_root, version)
    manifest = {
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_sha256": data_sha256,
        "parameters": {**asdict(params), "split_date": split_date},
        "vocabulary_sizes": sizes,
        "metrics": metrics,
        "features": features,
        "cleaning": cleaning,
        "training": {
            "purchases": len(purchases),
            "train_seconds": round(train_seconds, 1),
            "epochs": runs,  # the mean loss per example per epoch, by fit
        },
    }
    written = export_artifact(
        staging,
        towers,
        ranking,
        manifest=manifest,
        catalogue={p: names[p] for p in towers.products},
        popular=popular_products(purchases),
        k_max=k_max,
        half_life_days=params.recency_half_life_days,
    )
    final = artifact.publish(staging, artifacts_root, version, make_current=make_current)
    log.info("exported %s (ScaNN recall@10 %.3f)", final, written["scann_recall_at_10"])
    return final
