"""`recsys evaluate` (its flags: ``evaluate_cli``): time-split evaluation of the two-tower model against popularity,
buy-again (by count, and recency-decayed), iALS, EASE and EASE + recency; `recsys train` uses it for the manifest's
metrics (``split_metrics``).

Protocol (model_artifacts/data/README.md): train before the split date; test customers bought on/after it and
appear in training; products restricted to the training vocabulary. Views: "all" (every product bought in the test
period) and "new" (only products the customer had not bought before; those are excluded from the ranking).
Recall@K = hits / min(|test set|, K); NDCG@K with binary gains; both averaged over test customers (in "new", over
customers with at least one new product). Every figure comes with its standard error over customers
(std(ddof=1) / sqrt(n)); each model row has its paired per-customer difference against the best baseline of each
view (mean, SE, z).

Nothing is chosen on the test period: the baselines' settings (EASE's lambda per view, the decayed buy-again's
half-life, EASE + recency's lambda / half-life / weight) are chosen on a validation period inside the training data
(inputs before the cut-off - 30 days, labels in the 30 days before the cut-off) and recorded.

A shipped artifact is trained on all data, so evaluating it on the test period would leak: this command retrains on
the split with the artifact's parameters (or the variants named by --variants) and writes
model_artifacts/reports/evaluation.md, recall_at_k.png, training_loss.png (mean loss per example per epoch),
evaluation.json and per_customer.json. `recsys evaluate --readme-table A/evaluation.json B/evaluation.json ...`
prints the README's model table from such files (one per split date) without training anything.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recsys.recommender import EXACT_SEARCH_MAX_PRODUCTS, Retrieval
from recsys_tools.training import baselines, ease
from recsys_tools.training.data import Split, popular_products, product_names, time_split
from recsys_tools.training.params import K_MAX, TrainParams, Variant

log = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]
Metric = npt.NDArray[np.float64]
VIEWS = ("all", "new")
REPORT_K = 20
CURVE_K = 50
DEVELOPMENT_LOG = "variants.json"
SHIPPED = "two-stage (shipped parameters)"
PER_CUSTOMER = "per_customer"  # per view: the per-customer Recall/NDCG@REPORT_K (not in the manifest)
VALIDATION_DAYS = 30  # baselines' choices: inputs before cut-off - 30 days, labels in the 30 days before the cut-off
HALF_LIVES = (30.0, 90.0)  # recency decay of the buy-again baselines, days
RECENCY_WEIGHTS = (0.25, 0.5, 1.0, 2.0)  # EASE + w * log1p(decayed purchases)
EASE_MAX_PRODUCTS = ease.MAX_PRODUCTS  # above, no EASE rows
POPULARITY = "popularity"
BUY_AGAIN = "buy-again frequency"
DECAYED = "buy-again, recency-decayed"
EASE = "EASE (item-item, closed form)"
EASE_RECENCY = "EASE + recency"


def hit_matrix(ranked: Ints, targets: list[set[int]], k: int) -> npt.NDArray[np.float64]:
    """[customers, k]: 1 where the product ranked at that position is one of the customer's targets."""
    hits = np.zeros((len(targets), k), dtype=np.float64)
    for i, (row, t) in enumerate(zip(ranked, targets, strict=True)):
        top = row[:k].tolist()
        hits[i, : len(top)] = [item in t for item in top]
    return hits


def per_customer(ranked: Ints, targets: list[set[int]], k: int) -> tuple[Metric, Metric]:
    """Per-customer Recall@k (hits / min(|targets|, k)) and NDCG@k (binary gains; the ideal ranking puts
    min(|targets|, k) hits first)."""
    return _per_customer(hit_matrix(ranked, targets, k), np.array([len(t) for t in targets]), k)


def _per_customer(hits: npt.NDArray[np.float64], sizes: Ints, k: int) -> tuple[Metric, Metric]:
    ideal = np.minimum(sizes, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recall = hits[:, :k].sum(axis=1) / ideal
    ndcg = (hits[:, :k] @ discounts) / np.cumsum(discounts)[ideal - 1]
    return recall, ndcg


def recall_at_k(ranked: Ints, targets: list[set[int]], k: int) -> float:
    """Mean over customers of |top-k ∩ targets| / min(|targets|, k)."""
    return float(np.mean(per_customer(ranked, targets, k)[0]))


def ndcg_at_k(ranked: Ints, targets: list[set[int]], k: int) -> float:
    """Mean NDCG@k with binary gains; the ideal ranking puts min(|targets|, k) hits first."""
    return float(np.mean(per_customer(ranked, targets, k)[1]))


def standard_error(values: Sequence[float] | Metric) -> float | None:
    """std(ddof=1) / sqrt(n): the standard error of the mean over customers (None below two customers)."""
    x = np.asarray(values, dtype=np.float64)
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else None


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, float | None]:
    """Mean of the per-customer differences a - b (the same customers, in the same order), its standard error and
    z = mean / SE."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    se = standard_error(d)
    mean = float(d.mean())
    return {"mean": round(mean, 5), "se": _round(se, 5), "z": round(mean / se, 2) if se else None}


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


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
    decayed: dict[float, sp.csr_matrix]  # per half-life (days): sum over purchases of 2^(-age at the cut-off / h)


def eval_data(split: Split) -> EvalData:
    customers = sorted(split.train["customer_id"].unique().tolist())
    products = sorted(split.train["product_id"].unique().tolist())
    c_index, p_index = pd.Index(customers), pd.Index(products)
    rows = c_index.get_indexer(split.train["customer_id"])
    columns = p_index.get_indexer(split.train["product_id"])

    def matrix(values: npt.NDArray[np.float64]) -> sp.csr_matrix:
        summed = sp.csr_matrix((values.astype(np.float32), (rows, columns)), shape=(len(customers), len(products)))
        summed.sum_duplicates()
        return summed

    counts = matrix(np.ones(len(split.train)))
    age_days = (split.cutoff - split.train["timestamp"]).dt.total_seconds().to_numpy() / 86400.0
    decayed = {h: matrix(np.exp2(-age_days / h)) for h in HALF_LIVES}
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
        decayed=decayed,
    )


def evaluate_ranked(ranked: dict[str, Ints], data: EvalData) -> dict[str, dict[str, Any]]:
    """Per view, for each view's ranked product columns [customers, CURVE_K] (-1 pads a row with fewer products):
    Recall@REPORT_K and NDCG@REPORT_K with their standard errors over customers, Recall@1..CURVE_K, and the
    per-customer values (``per_customer``, in the order of ``data.targets[view]``; for paired differences)."""
    result: dict[str, dict[str, Any]] = {}
    for view in VIEWS:
        targets = data.targets[view]
        hits = hit_matrix(ranked[view], targets, CURVE_K)
        sizes = np.array([len(t) for t in targets], dtype=np.int64)
        curve = [float(np.mean(_per_customer(hits, sizes, k)[0])) for k in range(1, CURVE_K + 1)]
        recall, ndcg = _per_customer(hits, sizes, REPORT_K)
        result[view] = {
            f"recall@{REPORT_K}": round(float(recall.mean()), 4),
            f"recall@{REPORT_K}_se": _round(standard_error(recall), 4),
            f"ndcg@{REPORT_K}": round(float(ndcg.mean()), 4),
            f"ndcg@{REPORT_K}_se": _round(standard_error(ndcg), 4),
            "recall_curve": [round(r, 4) for r in curve],
            "customers": len(targets),
            PER_CUSTOMER: {
                f"recall@{REPORT_K}": [round(float(x), 6) for x in recall],
                f"ndcg@{REPORT_K}": [round(float(x), 6) for x in ndcg],
            },
        }
    return result


def evaluate_scores(scores: Floats | dict[str, Floats], data: EvalData) -> dict[str, dict[str, Any]]:
    """Metrics of scores [test customers, products] (one matrix, or one per view); in "new" what a customer bought
    is never ranked."""
    ranked = {}
    for view in VIEWS:
        rows = data.view_rows[view]
        exclude = data.counts[data.test_rows[rows]] if view == "new" else None
        view_scores = scores[view] if isinstance(scores, dict) else scores
        ranked[view] = rank(view_scores[rows], CURVE_K, exclude)
    return evaluate_ranked(ranked, data)


# --- baselines, with their choices made on a validation period inside the training data -------------------------


def validation_recall(scores: Floats, data: EvalData, view: str) -> float:
    """Recall@REPORT_K of scores [test customers, products] in one view (for choices on validation)."""
    rows = data.view_rows[view]
    if len(rows) == 0:
        return 0.0
    exclude = data.counts[data.test_rows[rows]] if view == "new" else None
    return float(np.mean(per_customer(rank(scores[rows], REPORT_K, exclude), data.targets[view], REPORT_K)[0]))


def decayed_buy_again(data: EvalData, half_life: float) -> Floats:
    """log1p(purchases) + log1p(purchases decayed with ``half_life`` days) of the test customers, ties (and
    never-bought products) broken by popularity."""
    rows = data.test_rows
    tie = baselines.popularity(data.counts, rows)
    tie *= 1e-3 / (float(tie.max(initial=0.0)) + 1.0)
    counts = np.asarray(data.counts[rows].toarray(), dtype=np.float32)
    recent = np.asarray(data.decayed[half_life][rows].toarray(), dtype=np.float32)
    scores: Floats = np.log1p(counts) + np.log1p(recent) + tie
    return scores


def log_decayed(data: EvalData, half_life: float) -> Floats:
    return np.log1p(np.asarray(data.decayed[half_life][data.test_rows].toarray(), dtype=np.float32))


def ease_scores_by_lambda(data: EvalData, lambdas: Sequence[float]) -> dict[float, Floats]:
    """EASE's scores of the test customers for each lambda (one [P, P] weight matrix alive at a time)."""
    gram_matrix = ease.gram(data.counts)
    history = data.counts[data.test_rows]
    return {lam: ease.ease_scores(history, ease.ease_weights(gram_matrix, lam)) for lam in sorted(set(lambdas))}


def choose_ease_lambda(split: Split) -> tuple[float, dict[str, float]]:
    """EASE's lambda (of ease.LAMBDAS) with the best Recall@REPORT_K on new products in ``split``'s test period, and
    the recall of each; the middle lambda when there is nothing to choose by (no customer buying a new product, or
    more than EASE_MAX_PRODUCTS products)."""
    data = eval_data(split)
    if not len(data.view_rows["new"]) or len(data.products) > EASE_MAX_PRODUCTS:
        return ease.LAMBDAS[len(ease.LAMBDAS) // 2], {}
    scores = ease_scores_by_lambda(data, ease.LAMBDAS)
    recalls = {lam: validation_recall(s, data, "new") for lam, s in scores.items()}
    return max(recalls, key=recalls.__getitem__), {f"{lam:g}": round(r, 4) for lam, r in recalls.items()}


@dataclass(frozen=True)
class BaselineChoices:
    """What the baselines use, chosen on the validation period (inputs before the cut-off - VALIDATION_DAYS,
    labels in [that day, cut-off)) by Recall@REPORT_K: EASE's lambda per view, the decayed buy-again's half-life
    and EASE + recency's (lambda, half-life, weight) on "all". ``validation`` holds the figures they were chosen
    by."""

    ease_lambda: dict[str, float]
    decayed_half_life: float
    ease_recency: tuple[float, float, float]
    validation: dict[str, Any]


DEFAULT_CHOICES = BaselineChoices({"all": 500.0, "new": 500.0}, 90.0, (1000.0, 90.0, 0.5), {})


def choose_baselines(split: Split) -> BaselineChoices:
    """The baselines' choices, made on the validation period inside ``split.train`` (never on the test period).
    Without validation customers (too little data) the defaults are used, and the record says so."""
    validation_cutoff = split.cutoff - pd.Timedelta(days=VALIDATION_DAYS)
    times = split.train["timestamp"]
    if len(times) == 0 or not times.min() < validation_cutoff <= times.max():
        return replace(DEFAULT_CHOICES, validation={"note": "no validation period in the training data: defaults"})
    data = eval_data(time_split(split.train, str(validation_cutoff)))
    if len(data.test_rows) == 0:
        return replace(DEFAULT_CHOICES, validation={"note": "no validation customers: defaults"})
    if len(data.products) > EASE_MAX_PRODUCTS:
        decayed = {h: validation_recall(decayed_buy_again(data, h), data, "all") for h in HALF_LIVES}
        return replace(
            DEFAULT_CHOICES,
            decayed_half_life=max(decayed, key=decayed.__getitem__),
            validation={"note": f"more than {EASE_MAX_PRODUCTS} products: no EASE baselines"},
        )
    scores = ease_scores_by_lambda(data, ease.LAMBDAS)
    ease_recall = {view: {lam: validation_recall(s, data, view) for lam, s in scores.items()} for view in VIEWS}
    recent = {h: log_decayed(data, h) for h in HALF_LIVES}
    blends = {
        (lam, h, w): validation_recall(scores[lam] + w * recent[h], data, "all")
        for lam in ease.LAMBDAS
        for h in HALF_LIVES
        for w in RECENCY_WEIGHTS
    }
    decayed = {h: validation_recall(decayed_buy_again(data, h), data, "all") for h in HALF_LIVES}
    return BaselineChoices(
        ease_lambda={view: max(ease_recall[view], key=ease_recall[view].__getitem__) for view in VIEWS},
        decayed_half_life=max(decayed, key=decayed.__getitem__),
        ease_recency=max(blends, key=blends.__getitem__),
        validation={
            "cutoff": str(validation_cutoff),
            "customers": {view: len(data.targets[view]) for view in VIEWS},
            f"EASE recall@{REPORT_K} by lambda": {
                view: {f"{lam:g}": round(r, 4) for lam, r in by_lambda.items()}
                for view, by_lambda in ease_recall.items()
            },
            f"decayed buy-again recall@{REPORT_K} all by half-life": {
                f"{h:g}": round(r, 4) for h, r in decayed.items()
            },
            f"EASE + recency recall@{REPORT_K} all, best": round(max(blends.values()), 4),
        },
    )


def baseline_scores(
    data: EvalData, choices: BaselineChoices = DEFAULT_CHOICES
) -> dict[str, Floats | dict[str, Floats]]:
    """Every baseline's scores of the test customers (EASE: one matrix per view, each with its own lambda; no EASE
    rows above EASE_MAX_PRODUCTS products)."""
    scores: dict[str, Floats | dict[str, Floats]] = {
        POPULARITY: baselines.popularity(data.counts, data.test_rows),
        BUY_AGAIN: baselines.buy_again(data.counts, data.test_rows),
        DECAYED: decayed_buy_again(data, choices.decayed_half_life),
        "iALS (implicit, 64 factors)": baselines.ials(data.counts, data.test_rows),
    }
    if len(data.products) <= EASE_MAX_PRODUCTS:
        lam, half_life, weight = choices.ease_recency
        by_lambda = ease_scores_by_lambda(data, [*choices.ease_lambda.values(), lam])
        scores[EASE] = {view: by_lambda[choices.ease_lambda[view]] for view in VIEWS}
        scores[EASE_RECENCY] = by_lambda[lam] + weight * log_decayed(data, half_life)
    return scores


def baseline_notes(choices: BaselineChoices) -> dict[str, dict[str, dict[str, Any]]]:
    """What each chosen baseline uses, per view (lands in the results as ``chosen``)."""
    lam, half_life, weight = choices.ease_recency
    recency = {"lambda": lam, "half_life_days": half_life, "weight": weight}
    return {
        DECAYED: {view: {"half_life_days": choices.decayed_half_life} for view in VIEWS},
        EASE: {view: {"lambda": choices.ease_lambda[view]} for view in VIEWS},
        EASE_RECENCY: dict.fromkeys(VIEWS, recency),
    }


def describe_choices(choices: BaselineChoices) -> str:
    lam, half_life, weight = choices.ease_recency
    return (
        f"EASE lambda {choices.ease_lambda['all']:g} (all) / {choices.ease_lambda['new']:g} (new); "
        f"decayed buy-again: log1p(n) + log1p(n decayed, half-life {choices.decayed_half_life:g} d); "
        f"EASE + recency: EASE lambda {lam:g} + {weight:g} * log1p(n decayed, half-life {half_life:g} d)"
    )


# --- the two-tower model on the split --------------------------------------------------------------------------


def served_ranking(split: Split, data: EvalData, path: Path, *, retrieval: Retrieval = "auto") -> dict[str, Ints]:
    """What serving returns for each test customer, through ``recsys.recommender`` on the artifact at ``path``: the
    query from the customer's history before the split (as of the cut-off), ScaNN, the buy-again blend ("all") or
    only never-bought products ("new"); as ranked product columns per view."""
    from recsys.artifact import Artifact
    from recsys.recommender import Recommender
    from recsys.settings import Settings
    from recsys_tools.history import purchase_histories

    served = Recommender(Artifact(path), retrieval=retrieval)
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
        exact = len(towers.products) <= EXACT_SEARCH_MAX_PRODUCTS  # what "auto" serves
        other = served_ranking(split, data, Path(tmp), retrieval="scann" if exact else "exact")
    how = "exact retrieval" if exact else "ScaNN"
    results[f"{name}, served (live history, {how}, ranking heads)"] = evaluate_ranked(served, data)
    results[f"{name}, {'ScaNN' if exact else 'exact retrieval'} instead"] = evaluate_ranked(other, data)
    return results


# --- the whole evaluation -----------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Everything the report shows: per model the metrics by view (``results``: baselines first; a baseline's
    ``chosen`` entry says what was picked for it on validation; a model's ``vs_best_baseline`` entry is its paired
    per-customer difference against the best baseline of that view), which rows are baselines, the choices with
    their validation figures, the per-epoch training progress of each trained model, and notes per row."""

    results: dict[str, dict[str, dict[str, Any]]]
    baselines: list[str]
    choices: dict[str, Any]
    cutoff: str  # the split's cut-off (the split date, or the fallback when it lies outside the data)
    training: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def best_baselines(evaluation: Evaluation) -> dict[str, str]:
    """Per view, the baseline with the highest Recall@REPORT_K in that view."""
    key = f"recall@{REPORT_K}"
    return {view: max(evaluation.baselines, key=lambda n: evaluation.results[n][view][key]) for view in VIEWS}


def add_paired_differences(evaluation: Evaluation) -> None:
    """Each model row gets, per view, its paired per-customer difference (Recall and NDCG@REPORT_K: mean, SE, z)
    against that view's best baseline (``vs_best_baseline``)."""
    best = best_baselines(evaluation)
    for name, by_view in evaluation.results.items():
        if name in evaluation.baselines:
            continue
        for view, metrics in by_view.items():
            baseline = evaluation.results[best[view]][view][PER_CUSTOMER]
            metrics["vs_best_baseline"] = {
                "baseline": best[view],
                **{m: paired_difference(metrics[PER_CUSTOMER][m], baseline[m]) for m in baseline},
            }


def quality_warnings(evaluation: Evaluation) -> list[str]:
    """What a user must know before shipping: a served model row below popularity on "new", or below the best
    baseline of a view by more than two paired standard errors (logged, in the report and in the manifest)."""
    key = f"recall@{REPORT_K}"
    warnings = []
    for name, by_view in evaluation.results.items():
        if name in evaluation.baselines or ", served" not in name:
            continue
        popularity = evaluation.results[POPULARITY]["new"][PER_CUSTOMER][key]
        versus = paired_difference(by_view["new"][PER_CUSTOMER][key], popularity)
        if (versus["mean"] or 0.0) < 0:
            warnings.append(f"{name} loses to popularity on new products (ΔRecall@{REPORT_K} {_difference(versus)})")
        for view, metrics in by_view.items():
            d = metrics["vs_best_baseline"][key]
            if d["z"] is not None and d["z"] < -2:
                baseline = metrics["vs_best_baseline"]["baseline"]
                warnings.append(f"{name} is below {baseline} on {view} (ΔRecall@{REPORT_K} {_difference(d)})")
    return warnings


def evaluate_all(
    purchases: pd.DataFrame, split_date: str | None, params: TrainParams, variants: dict[str, Variant]
) -> Evaluation:
    """Baselines (their choices made on the validation period), every named variant (a function of the base
    parameters) and the model with ``params``, with paired differences against the best baseline per view."""
    from recsys_tools.training import progress

    split = time_split(purchases, split_date)
    data = eval_data(split)
    started = time.monotonic()
    choices = choose_baselines(split)
    log.info("baselines' choices on validation (%.0f s): %s", time.monotonic() - started, describe_choices(choices))
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name, scores in baseline_scores(data, choices).items():
        results[name] = evaluate_scores(scores, data)
    for name, chosen in baseline_notes(choices).items():
        for view in VIEWS:
            if name in results:
                results[name][view]["chosen"] = chosen[view]
    evaluation = Evaluation(
        results,
        baselines=list(results),
        choices={**asdict(choices), "description": describe_choices(choices)},
        cutoff=str(split.cutoff),
        notes={
            EASE: "lambda per view chosen on validation",
            DECAYED: "half-life chosen on validation",
            EASE_RECENCY: "lambda, half-life and weight chosen on validation (all)",
        },
    )
    for name, changed in [*((n, make(params)) for n, make in variants.items()), (SHIPPED, params)]:
        started = time.monotonic()
        with progress.recording() as runs:
            results.update(evaluate_model(split, data, changed, name))
        evaluation.notes[name] = f"trained in {time.monotonic() - started:.0f} s"
        for run, epochs in runs.items():
            evaluation.training[f"{name}: {run}"] = epochs
    add_paired_differences(evaluation)
    evaluation.warnings = quality_warnings(evaluation)
    for warning in evaluation.warnings:
        log.warning("do not ship without a look: %s", warning)
    return evaluation


def manifest_metrics(evaluation: Evaluation) -> dict[str, Any]:
    """The metrics a manifest keeps: the report's figures without the curves and per-customer values."""
    return {
        **{
            name: {
                view: {k: v for k, v in metrics.items() if k not in ("recall_curve", PER_CUSTOMER)}
                for view, metrics in by_view.items()
            }
            for name, by_view in evaluation.results.items()
        },
        "warnings": evaluation.warnings,
    }


def split_metrics(
    purchases: pd.DataFrame, params: TrainParams, split_date: str | None, report_dir: Path | None
) -> dict[str, Any]:
    """Recall/NDCG@20 (± SE) of these parameters trained on the time split, with the baselines for context and the
    paired differences (the metrics of a trained artifact's manifest); optionally also the report and plots."""
    evaluation = evaluate_all(purchases, split_date, params, {})
    if report_dir is not None:
        write_report(report_dir, evaluation, report_header(len(purchases), split_date, params))
    return manifest_metrics(evaluation)


# --- report -----------------------------------------------------------------------------------------------------


def _cell(metrics: dict[str, Any], metric: str, digits: int = 4) -> str:
    value, se = metrics[f"{metric}@{REPORT_K}"], metrics.get(f"{metric}@{REPORT_K}_se")
    return f"{value:.{digits}f} ± {se:.{digits}f}" if se is not None else f"{value:.{digits}f}"


def _difference(d: dict[str, Any], digits: int = 4) -> str:
    se = f" ± {d['se']:.{digits}f}" if d["se"] is not None else ""
    z = f" (z = {d['z']:.1f})" if d["z"] is not None else ""
    return f"{d['mean']:+.{digits}f}{se}{z}"


def write_report(out_dir: Path, evaluation: Evaluation, header: str) -> Path:
    """evaluation.md (tables with ± SE, the baselines' choices, paired differences), recall_at_k.png,
    training_loss.png (mean training loss per example per epoch), evaluation.json (all but the per-customer
    values) and per_customer.json (those, for paired comparisons of later runs)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = evaluation.results
    lines = [
        "# Evaluation: the two-stage model vs baselines",
        "",
        header,
        "",
        f"Figures: mean over test customers ± standard error (std(ddof=1) / sqrt(n)). Baselines' choices were made on "
        f"the validation period inside the training data ({VALIDATION_DAYS} days before the split), never on the test "
        f"period: {evaluation.choices['description']}.",
        "",
        f"| model / variant | Recall@{REPORT_K} all | NDCG@{REPORT_K} all | Recall@{REPORT_K} new "
        f"| NDCG@{REPORT_K} new | notes |",
        "|---|---|---|---|---|---|",
    ]
    for name, metrics in results.items():
        cells = [_cell(metrics[v], m) for v in VIEWS for m in ("recall", "ndcg")]
        lines.append(f"| {name} | {' | '.join(cells)} | {evaluation.notes.get(name, '')} |")
    customers = " / ".join(f"{next(iter(results.values()))[v]['customers']} ({v})" for v in VIEWS)
    lines += [
        "",
        f"Test customers: {customers}.",
        "",
        "## Paired differences against the best baseline per view",
        "",
        f"Per customer, model minus the baseline with the highest Recall@{REPORT_K} in that view (the same customers); "
        "mean ± standard error, z = mean / SE.",
        "",
        f"| model | view | best baseline | ΔRecall@{REPORT_K} | ΔNDCG@{REPORT_K} |",
        "|---|---|---|---|---|",
    ]
    for name, by_view in results.items():
        for view, metrics in by_view.items():
            if "vs_best_baseline" in metrics:
                d = metrics["vs_best_baseline"]
                lines.append(
                    f"| {name} | {view} | {d['baseline']} | {_difference(d[f'recall@{REPORT_K}'])} "
                    f"| {_difference(d[f'ndcg@{REPORT_K}'])} |"
                )
    if evaluation.warnings:
        lines += ["", "## Warnings: look before shipping", "", *(f"- {w}" for w in evaluation.warnings)]
    lines += ["", "## Choices made on the validation period", ""]
    lines += [f"- {key}: `{json.dumps(value)}`" for key, value in evaluation.choices.items() if key != "validation"]
    lines += [
        f"- validation {key}: `{json.dumps(value)}`" for key, value in evaluation.choices.get("validation", {}).items()
    ]
    lines += ["", "![Recall@K](recall_at_k.png)", ""]
    if evaluation.training:
        lines += [
            "## Training progress",
            "",
            "Mean training loss per example per epoch (the task's summed batch losses over the epoch / examples; "
            "the regularisation is not included).",
            "",
            "![training loss](training_loss.png)",
            "",
        ]
    lines += development_log(out_dir / DEVELOPMENT_LOG)
    (out_dir / "evaluation.md").write_text("\n".join(lines), encoding="utf-8")
    _plot_recall(out_dir / "recall_at_k.png", results)
    if evaluation.training:
        _plot_training(out_dir / "training_loss.png", evaluation.training)
    summary = {
        "header": header,
        "cutoff": evaluation.cutoff,
        "results": {
            n: {v: {k: x for k, x in m.items() if k != PER_CUSTOMER} for v, m in by.items()}
            for n, by in results.items()
        },
        "baselines": evaluation.baselines,
        "choices": evaluation.choices,
        "training": evaluation.training,
        "notes": evaluation.notes,
        "warnings": evaluation.warnings,
    }
    (out_dir / "evaluation.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    per_customer = {n: {v: m[PER_CUSTOMER] for v, m in by.items()} for n, by in results.items()}
    (out_dir / "per_customer.json").write_text(json.dumps(per_customer, separators=(",", ":")), encoding="utf-8")
    return out_dir / "evaluation.md"


def _plot_recall(path: Path, results: dict[str, dict[str, dict[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    ks = np.arange(1, CURVE_K + 1)
    for axis, view in zip(axes, VIEWS, strict=True):
        for name, metrics in results.items():
            axis.plot(ks, metrics[view]["recall_curve"], label=name, linewidth=1.2)
        axis.set(title=f'Recall@K, view "{view}"', xlabel="K", ylabel="Recall@K")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_training(path: Path, training: dict[str, list[dict[str, float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, epochs in training.items():
        axis.plot([e["epoch"] for e in epochs], [e["loss_per_example"] for e in epochs], marker="o", label=name)
    axis.set(title="Mean training loss per example", xlabel="epoch", ylabel="loss per example")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report_header(purchases: int, split_date: str | None, params: TrainParams) -> str:
    return f"Data: {purchases} cleaned purchases; split date {split_date}. Parameters: `{asdict(params)}`"


def readme_table(paths: Sequence[Path], digits: int = 3) -> str:
    """The README's model table from evaluation.json files (one per split date): Recall / NDCG@20 ± SE per view
    and, for model rows, the paired ΔRecall@20 against the best baseline of each view. Reads JSON only."""
    lines = [
        f"| split | model | Recall@{REPORT_K} all | NDCG@{REPORT_K} all | Recall@{REPORT_K} new | NDCG@{REPORT_K} new "
        f"| ΔRecall@{REPORT_K} vs best baseline, all / new |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        stored = json.loads(path.read_text(encoding="utf-8"))
        results = stored.get("results", stored)  # evaluation.json files before issue 13 held only the results
        split = re.search(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", stored.get("cutoff", "") or stored.get("header", ""))
        when = split.group(0) if split else path.parent.name
        best = {v: max(r[v][f"recall@{REPORT_K}"] for r in results.values()) for v in VIEWS}
        for name, by_view in results.items():
            cells = []
            for view in VIEWS:
                for metric in ("recall", "ndcg"):
                    cell = _cell(by_view[view], metric, digits)
                    top = metric == "recall" and by_view[view][f"recall@{REPORT_K}"] == best[view]
                    cells.append(f"**{cell}**" if top else cell)
            paired = [by_view[v].get("vs_best_baseline") for v in VIEWS]
            delta = " / ".join(_difference(p[f"recall@{REPORT_K}"], digits) for p in paired if p)
            lines.append(f"| {when} | {name} | {' | '.join(cells)} | {delta} |")
    return "\n".join(lines)


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
