"""`recsys evaluate` (its flags: ``evaluate_cli``): time-split evaluation of the two-tower model against popularity,
buy-again and iALS; `recsys train` uses it for the manifest's metrics (``split_metrics``).

Protocol (model_artifacts/data/README.md): train before the split date; test customers bought on/after it and
appear in training; products restricted to the training vocabulary. Views: "all" (every product bought in the test
period) and "new" (only products the customer had not bought before; those are excluded from the ranking).
Recall@K = hits / min(|test set|, K); NDCG@K with binary gains; both averaged over test customers (in "new", over
customers with at least one new product).

A shipped artifact is trained on all data, so evaluating it on the test period would leak: this command retrains on
the split with the artifact's parameters (or the variants named by --variants) and writes
model_artifacts/reports/evaluation.md and recall_at_k.png.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recsys_tools.training import baselines
from recsys_tools.training.data import Split, popular_products, product_names, time_split
from recsys_tools.training.params import K_MAX, TrainParams, Variant

log = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]
VIEWS = ("all", "new")
REPORT_K = 20
CURVE_K = 50
DEVELOPMENT_LOG = "variants.json"
SHIPPED = "two-tower (shipped parameters)"


def recall_at_k(ranked: Ints, targets: list[set[int]], k: int) -> float:
    """Mean over customers of |top-k ∩ targets| / min(|targets|, k)."""
    return float(
        np.mean([len(set(row[:k].tolist()) & t) / min(len(t), k) for row, t in zip(ranked, targets, strict=True)])
    )


def ndcg_at_k(ranked: Ints, targets: list[set[int]], k: int) -> float:
    """Mean NDCG@k with binary gains; the ideal ranking puts min(|targets|, k) hits first."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values = []
    for row, t in zip(ranked, targets, strict=True):
        gains = np.array([item in t for item in row[:k].tolist()], dtype=float)
        values.append(float(gains @ discounts[: len(gains)]) / float(discounts[: min(len(t), k)].sum()))
    return float(np.mean(values))


def rank(scores: Floats, k: int, exclude: sp.csr_matrix | None = None) -> Ints:
    """Top-k product columns per row, best first; ``exclude``'s non-zero entries are never ranked."""
    scores = scores.astype(np.float32, copy=True)
    if exclude is not None:
        coo = exclude.tocoo()
        scores[coo.row, coo.col] = -np.inf
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1).astype(np.int64)


@dataclass(frozen=True)
class EvalData:
    """The split coded against the training vocabularies."""

    customers: list[str]  # training customers (rows of counts)
    products: list[str]  # training products (columns)
    counts: sp.csr_matrix  # training purchases per (customer, product)
    test_rows: Ints  # rows of the test customers
    targets: dict[str, list[set[int]]]  # per view, per test customer (in "new": only customers with targets)
    view_rows: dict[str, Ints]  # per view, index into test_rows


def eval_data(split: Split) -> EvalData:
    customers = sorted(split.train["customer_id"].unique().tolist())
    products = sorted(split.train["product_id"].unique().tolist())
    c_index, p_index = pd.Index(customers), pd.Index(products)
    counts = sp.csr_matrix(
        (
            np.ones(len(split.train), dtype=np.float32),
            (c_index.get_indexer(split.train["customer_id"]), p_index.get_indexer(split.train["product_id"])),
        ),
        shape=(len(customers), len(products)),
    )
    counts.sum_duplicates()
    test = pd.DataFrame(
        {"c": c_index.get_indexer(split.test["customer_id"]), "p": p_index.get_indexer(split.test["product_id"])}
    )
    grouped = test.groupby("c")["p"].agg(set)
    test_rows = grouped.index.to_numpy(np.int64)
    all_targets: list[set[int]] = list(grouped)
    new_targets = [t - set(counts[row].indices.tolist()) for row, t in zip(test_rows, all_targets, strict=True)]
    has_new = np.array([i for i, t in enumerate(new_targets) if t], dtype=np.int64)
    return EvalData(
        customers=customers,
        products=products,
        counts=counts,
        test_rows=test_rows,
        targets={"all": all_targets, "new": [new_targets[i] for i in has_new]},
        view_rows={"all": np.arange(len(test_rows), dtype=np.int64), "new": has_new},
    )


def evaluate_ranked(ranked: dict[str, Ints], data: EvalData) -> dict[str, dict[str, Any]]:
    """Recall@1..CURVE_K and NDCG@REPORT_K per view, for each view's ranked product columns [customers, CURVE_K]
    (-1 pads a row with fewer products)."""
    result: dict[str, dict[str, Any]] = {}
    for view in VIEWS:
        targets = data.targets[view]
        curve = [recall_at_k(ranked[view], targets, k) for k in range(1, CURVE_K + 1)]
        result[view] = {
            f"recall@{REPORT_K}": round(curve[REPORT_K - 1], 4),
            f"ndcg@{REPORT_K}": round(ndcg_at_k(ranked[view], targets, REPORT_K), 4),
            "recall_curve": [round(r, 4) for r in curve],
            "customers": len(targets),
        }
    return result


def evaluate_scores(scores: Floats, data: EvalData) -> dict[str, dict[str, Any]]:
    """Metrics of scores [test customers, products]; in "new" what a customer bought is never ranked."""
    ranked = {}
    for view in VIEWS:
        rows = data.view_rows[view]
        exclude = data.counts[data.test_rows[rows]] if view == "new" else None
        ranked[view] = rank(scores[rows], CURVE_K, exclude)
    return evaluate_ranked(ranked, data)


def baseline_scores(data: EvalData) -> dict[str, Floats]:
    return {
        "popularity": baselines.popularity(data.counts, data.test_rows),
        "buy-again frequency": baselines.buy_again(data.counts, data.test_rows),
        "iALS (implicit, 64 factors)": baselines.ials(data.counts, data.test_rows),
    }


# --- the two-tower model on the split --------------------------------------------------------------------------


def served_ranking(split: Split, data: EvalData, path: Path, *, exact_retrieval: bool = False) -> dict[str, Ints]:
    """What serving returns for each test customer, through ``recsys.recommender`` on the artifact at ``path``: the
    query from the customer's history before the split (as of the cut-off), ScaNN, the buy-again blend ("all") or
    only never-bought products ("new"); as ranked product columns per view."""
    from recsys.artifact import Artifact
    from recsys.recommender import Recommender
    from recsys.settings import Settings
    from recsys_tools.history import purchase_histories

    served = Recommender(Artifact(path), exact_retrieval=exact_retrieval)
    now = split.cutoff.timestamp()
    column = {p: i for i, p in enumerate(data.products)}
    test_customers = {data.customers[row] for row in data.test_rows}
    histories = {
        h.customer_id: h
        for h in purchase_histories(
            split.train[split.train["customer_id"].isin(test_customers)], Settings().max_history_products
        )
    }
    ranked: dict[str, Ints] = {}
    for view in VIEWS:
        rows = np.full((len(data.view_rows[view]), CURVE_K), -1, dtype=np.int64)
        for i, row in enumerate(data.test_rows[data.view_rows[view]]):
            history = histories[data.customers[row]]
            result = served.recommend(history.products, history.country, now, exclude_purchased=view == "new")
            top = [column[p] for p, _ in result.top(CURVE_K)] if result is not None else []
            rows[i, : len(top)] = top
        ranked[view] = rows
    return ranked


def evaluate_model(
    split: Split, data: EvalData, params: TrainParams, name: str
) -> dict[str, dict[str, dict[str, Any]]]:
    """The two-stage model trained on the split (its ranking stage on a validation period before the cut-off): the
    retrieval stage alone (its query as of the training data's end, exact scores over the catalogue) and as served
    (exported, then ``served_ranking``: ScaNN, then the ranking heads)."""
    from recsys_tools.training.export import export_artifact  # TensorFlow only when the model is evaluated
    from recsys_tools.training.two_stage import fit_two_stage

    names = product_names(split.train)
    towers, ranking, _ = fit_two_stage(split.train, params, names)
    assert towers.products == data.products
    alone = towers.sample_queries[data.test_rows] @ towers.product_embeddings.T
    results = {f"{name}: retrieval stage alone (exact)": evaluate_scores(np.asarray(alone, dtype=np.float32), data)}
    with tempfile.TemporaryDirectory() as tmp:
        export_artifact(
            Path(tmp),
            towers,
            ranking,
            manifest={"version": f"split-{split.cutoff.date()}", "parameters": asdict(params)},
            catalogue=names,
            popular=popular_products(split.train),
            k_max=K_MAX,
            half_life_days=params.recency_half_life_days,
        )
        served = served_ranking(split, data, Path(tmp))
        exact = served_ranking(split, data, Path(tmp), exact_retrieval=True)
    results[f"{name}, served (live history, ScaNN, ranking heads)"] = evaluate_ranked(served, data)
    results[f"{name}, exact retrieval instead of ScaNN"] = evaluate_ranked(exact, data)
    return results


# --- report -----------------------------------------------------------------------------------------------------


def write_report(
    out_dir: Path, results: dict[str, dict[str, dict[str, Any]]], notes: dict[str, str], header: str
) -> Path:
    """Markdown table (Recall@20, NDCG@20 per view) and a Recall@K plot of every result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Evaluation: two-tower retrieval vs baselines",
        "",
        header,
        "",
        f"| model / variant | Recall@{REPORT_K} all | NDCG@{REPORT_K} all | Recall@{REPORT_K} new "
        f"| NDCG@{REPORT_K} new | notes |",
        "|---|---|---|---|---|---|",
    ]
    for name, metrics in results.items():
        cells = [f"{metrics[v][f'{m}@{REPORT_K}']:.4f}" for v in VIEWS for m in ("recall", "ndcg")]
        lines.append(f"| {name} | {' | '.join(cells)} | {notes.get(name, '')} |")
    lines += ["", "![Recall@K](recall_at_k.png)", "", *development_log(out_dir / DEVELOPMENT_LOG)]
    (out_dir / "evaluation.md").write_text("\n".join(lines), encoding="utf-8")

    figure, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    ks = np.arange(1, CURVE_K + 1)
    for axis, view in zip(axes, VIEWS, strict=True):
        for name, metrics in results.items():
            axis.plot(ks, metrics[view]["recall_curve"], label=name, linewidth=1.2)
        axis.set(title=f'Recall@K, view "{view}"', xlabel="K", ylabel="Recall@K")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out_dir / "recall_at_k.png", dpi=110)
    plt.close(figure)
    (out_dir / "evaluation.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return out_dir / "evaluation.md"


def report_header(purchases: int, split_date: str | None, params: TrainParams) -> str:
    return f"Data: {purchases} cleaned purchases; split date {split_date}. Parameters: `{asdict(params)}`"


def development_log(path: Path) -> list[str]:
    """The variants tried while developing (reports/variants.json: a list of {name, changes, metrics, note})."""
    if not path.exists():
        return []
    lines = [
        "## Every variant tried during development",
        "",
        f"Same split and metrics. `changes` are relative to the TrainParams defaults of the time. Source: {path.name}.",
        "",
        "| variant | changes | Recall@20 all | NDCG@20 all | Recall@20 new | NDCG@20 new | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in json.loads(path.read_text(encoding="utf-8")):
        m = entry["metrics"]
        cells = " | ".join(str(m.get(key, "")) for key in ("recall_all", "ndcg_all", "recall_new", "ndcg_new"))
        lines.append(f"| {entry['name']} | `{json.dumps(entry['changes'])}` | {cells} | {entry.get('note', '')} |")
    return [*lines, ""]


def evaluate_all(
    purchases: pd.DataFrame, split_date: str | None, params: TrainParams, variants: dict[str, Variant]
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, str]]:
    """Baselines, every named variant (a function of the base parameters) and the model with ``params``."""
    split = time_split(purchases, split_date)
    data = eval_data(split)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    notes: dict[str, str] = {}
    for name, scores in baseline_scores(data).items():
        results[name] = evaluate_scores(scores, data)
    for name, changed in [*((n, make(params)) for n, make in variants.items()), (SHIPPED, params)]:
        started = time.monotonic()
        results.update(evaluate_model(split, data, changed, name))
        notes[name] = f"trained in {time.monotonic() - started:.0f} s"
    return results, notes


def split_metrics(
    purchases: pd.DataFrame, params: TrainParams, split_date: str | None, report_dir: Path | None
) -> dict[str, Any]:
    """Recall/NDCG@20 of these parameters trained on the time split, with the baselines for context (the metrics
    of a trained artifact's manifest); optionally also the markdown report and plot."""
    results, notes = evaluate_all(purchases, split_date, params, {})
    if report_dir is not None:
        write_report(report_dir, results, notes, report_header(len(purchases), split_date, params))
    return {
        name: {view: {k: v for k, v in metrics.items() if k != "recall_curve"} for view, metrics in by_view.items()}
        for name, by_view in results.items()
    }
