"""What `recsys train` does (its flags: ``train_cli``): clean the data, evaluate on the time split, train the served
model on all data, export it as ``model_artifacts/<version>/`` (written by ``recsys.artifact``) and mark it current.

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

import logging
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from recsys import artifact
from recsys_tools.training.data import file_sha256, frame_sha256, load_purchases, product_names, validate
from recsys_tools.training.evaluate import split_metrics
from recsys_tools.training.params import DEFAULT_SPLIT_DATE, K_MAX, TrainParams

__all__ = ["TrainParams", "train_and_export"]

log = logging.getLogger(__name__)

POPULAR_SIZE = 500


def popular_products(purchases: pd.DataFrame, size: int = POPULAR_SIZE) -> list[tuple[str, float]]:
    """(product, distinct customers), most distinct customers first (ties: quantity)."""
    stats = purchases.groupby("product_id").agg(customers=("customer_id", "nunique"), quantity=("quantity", "sum"))
    top = stats.sort_values(["customers", "quantity"], ascending=False, kind="stable").head(size)
    return [(p, float(n)) for p, n in zip(top.index, top["customers"], strict=True)]


def customer_purchases(purchases: pd.DataFrame) -> dict[str, dict[str, int]]:
    """How many times each customer bought each product, most often bought first (ties: most recent first)."""
    stats = purchases.groupby(["customer_id", "product_id"]).agg(n=("timestamp", "size"), last=("timestamp", "max"))
    ordered = stats.reset_index().sort_values(["customer_id", "n", "last"], ascending=[True, False, False])
    return {
        customer: dict(zip(group["product_id"], group["n"].astype(int).tolist(), strict=True))
        for customer, group in ordered.groupby("customer_id", sort=True)
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

    staging = artifact.staging_dir(artifacts_root, version)
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
    artifact.write_artifact(
        staging,
        manifest=manifest,
        customers=embeddings.customers,
        catalogue={p: names[p] for p in embeddings.products},
        popular=popular_products(purchases),
        purchases=customer_purchases(purchases),
    )
    final = artifact.publish(staging, artifacts_root, version, make_current=make_current)
    log.info("exported %s (ScaNN recall@10 %.3f)", final, exported["scann_recall_at_10"])
    return final
