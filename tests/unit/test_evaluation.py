"""The evaluation report's statistics and baselines (no TensorFlow): per-customer metrics, standard errors, paired
differences, the baselines' choices on the validation period, the report files and the README table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys_tools.training import evaluate as ev
from recsys_tools.training.data import Split, synthetic_purchases, time_split


def _reference(ranked: npt.NDArray[np.int64], targets: list[set[int]], k: int) -> tuple[list[float], list[float]]:
    """The definitions written out per customer, as evaluate.py computed them before per-customer arrays."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recall, ndcg = [], []
    for row, t in zip(ranked, targets, strict=True):
        gains = np.array([item in t for item in row[:k].tolist()], dtype=float)
        recall.append(gains.sum() / min(len(t), k))
        ndcg.append(float(gains @ discounts[: len(gains)]) / float(discounts[: min(len(t), k)].sum()))
    return recall, ndcg


def test_per_customer_metrics_keep_the_definitions() -> None:
    rng = np.random.default_rng(0)
    ranked = np.stack([rng.permutation(40)[:25] for _ in range(60)]).astype(np.int64)
    ranked[3, 20:] = -1  # a short row
    targets = [set(rng.choice(40, size=int(rng.integers(1, 30)), replace=False).tolist()) for _ in range(60)]
    for k in (1, 5, 20, 25):
        recall, ndcg = ev.per_customer(ranked, targets, k)
        expected_recall, expected_ndcg = _reference(ranked, targets, k)
        assert recall == pytest.approx(expected_recall)
        assert ndcg == pytest.approx(expected_ndcg)
        assert ev.recall_at_k(ranked, targets, k) == pytest.approx(np.mean(expected_recall))


def test_standard_error_and_paired_difference_by_hand() -> None:
    assert ev.standard_error([1.0, 0.0, 0.5, 0.5]) == pytest.approx(math.sqrt(1 / 6) / 2)
    assert ev.standard_error([0.3]) is None
    # differences 0.5, 0.0, 0.5, 0.0: mean 0.25, std(ddof=1) = sqrt(1/12), SE = sqrt(1/12) / 2
    d = ev.paired_difference([1.0, 0.5, 1.0, 0.5], [0.5, 0.5, 0.5, 0.5])
    se = math.sqrt(1 / 12) / 2
    assert d == {"mean": 0.25, "se": pytest.approx(se, abs=1e-5), "z": pytest.approx(0.25 / se, abs=0.01)}
    assert ev.paired_difference([1.0, 1.0], [1.0, 1.0])["z"] is None  # no variation: no z


@pytest.fixture(scope="module")
def split() -> Split:
    return time_split(synthetic_purchases(num_customers=120, num_products=30, seed=1), "2011-11-01")


def test_evaluated_scores_carry_standard_errors_and_per_customer_values(split: Split) -> None:
    data = ev.eval_data(split)
    result = ev.evaluate_scores(ev.baseline_scores(data)[ev.BUY_AGAIN], data)
    for view in ev.VIEWS:
        metrics = result[view]
        per_customer = metrics[ev.PER_CUSTOMER]
        assert len(per_customer["recall@20"]) == len(per_customer["ndcg@20"]) == metrics["customers"]
        assert metrics["recall@20"] == pytest.approx(np.mean(per_customer["recall@20"]), abs=1e-4)
        assert metrics["recall@20_se"] == pytest.approx(ev.standard_error(per_customer["recall@20"]), abs=1e-4)
        assert metrics["ndcg@20_se"] == pytest.approx(ev.standard_error(per_customer["ndcg@20"]), abs=1e-4)
        assert metrics["recall_curve"][19] == metrics["recall@20"]
    json.dumps(result, allow_nan=False)  # JSON as it is


def test_baselines_are_chosen_on_the_validation_period_only(split: Split) -> None:
    choices = ev.choose_baselines(split)
    assert choices.validation["cutoff"] == str(split.cutoff - pd.Timedelta(days=ev.VALIDATION_DAYS))
    assert set(choices.ease_lambda) == set(ev.VIEWS)
    assert choices.decayed_half_life in ev.HALF_LIVES
    _, half_life, weight = choices.ease_recency
    assert (half_life, weight) in {(h, w) for h in ev.HALF_LIVES for w in ev.RECENCY_WEIGHTS}
    by_lambda = choices.validation["EASE recall@20 by lambda"]
    for view in ev.VIEWS:
        assert by_lambda[view][f"{choices.ease_lambda[view]:g}"] == max(by_lambda[view].values())

    # Whatever happens in the test period, the choices are the same
    shuffled = split.test.copy()
    shuffled["product_id"] = shuffled["product_id"].sample(frac=1.0, random_state=3).to_numpy()
    assert ev.choose_baselines(Split(split.train, shuffled, split.cutoff)) == choices

    # Without a validation period in the training data: the defaults, and the record says so
    late = split.train[split.train["timestamp"] >= split.cutoff - pd.Timedelta(days=10)]
    fallback = ev.choose_baselines(Split(late, split.test, split.cutoff))
    assert (fallback.ease_lambda, fallback.ease_recency) == (
        ev.DEFAULT_CHOICES.ease_lambda,
        ev.DEFAULT_CHOICES.ease_recency,
    )
    assert "defaults" in fallback.validation["note"]


def test_decayed_buy_again_and_ease_recency_scores(split: Split) -> None:
    data = ev.eval_data(split)
    choices = ev.BaselineChoices({"all": 100.0, "new": 2000.0}, 30.0, (250.0, 90.0, 0.5), {})
    scores = ev.baseline_scores(data, choices)
    rows = data.test_rows
    counts = data.counts[rows].toarray()
    decayed30 = data.decayed[30.0][rows].toarray()
    decayed = scores[ev.DECAYED]
    assert isinstance(decayed, np.ndarray)
    assert np.allclose(decayed, np.log1p(counts) + np.log1p(decayed30), atol=1.5e-3)  # + a popularity tie-break
    # the decay: one purchase d days before the cut-off counts 2^(-d / half-life)
    age = (split.cutoff - split.train["timestamp"]).dt.total_seconds() / 86400
    first = split.train.index[0]
    c = data.customers.index(split.train.loc[first, "customer_id"])
    p = data.products.index(split.train.loc[first, "product_id"])
    same = (split.train["customer_id"] == data.customers[c]) & (split.train["product_id"] == data.products[p])
    assert data.decayed[90.0][c, p] == pytest.approx(np.exp2(-age[same] / 90.0).sum(), rel=1e-5)
    # EASE: one matrix per view, each with its own lambda
    ease_scores = scores[ev.EASE]
    assert isinstance(ease_scores, dict)
    assert not np.allclose(ease_scores["all"], ease_scores["new"])
    assert set(ev.baseline_notes(choices)[ev.EASE]["new"].values()) == {2000.0}


def _toy_evaluation() -> ev.Evaluation:
    def metrics(values: list[float]) -> dict[str, Any]:
        return {
            "recall@20": round(float(np.mean(values)), 4),
            "recall@20_se": ev.standard_error(values),
            "ndcg@20": round(float(np.mean(values)) / 2, 4),
            "ndcg@20_se": ev.standard_error([v / 2 for v in values]),
            "recall_curve": [float(np.mean(values))] * ev.CURVE_K,
            "customers": len(values),
            ev.PER_CUSTOMER: {"recall@20": values, "ndcg@20": [v / 2 for v in values]},
        }

    results = {
        "popularity": {"all": metrics([0.1, 0.2, 0.0, 0.1]), "new": metrics([0.1, 0.0, 0.1])},
        "EASE": {"all": metrics([0.3, 0.2, 0.5, 0.2]), "new": metrics([0.2, 0.1, 0.3])},
        "buy-again": {"all": metrics([0.5, 0.4, 0.5, 0.2]), "new": metrics([0.1, 0.0, 0.1])},
        "model": {"all": metrics([0.6, 0.4, 0.7, 0.2]), "new": metrics([0.3, 0.2, 0.3])},
    }
    return ev.Evaluation(
        results,
        baselines=["popularity", "EASE", "buy-again"],
        choices={"description": "EASE lambda 100"},
        cutoff="2011-11-01 00:00:00",
        training={"model": [{"epoch": 1, "loss_per_example": 7.1}, {"epoch": 2, "loss_per_example": 6.5}]},
    )


def test_paired_differences_are_against_the_best_baseline_of_each_view() -> None:
    evaluation = _toy_evaluation()
    assert ev.best_baselines(evaluation) == {"all": "buy-again", "new": "EASE"}
    ev.add_paired_differences(evaluation)
    all_view = evaluation.results["model"]["all"]["vs_best_baseline"]
    assert all_view["baseline"] == "buy-again"
    # per customer 0.1, 0, 0.2, 0: mean 0.075, std(ddof=1) 0.0957, SE 0.0479
    assert all_view["recall@20"] == {"mean": 0.075, "se": pytest.approx(0.04787, abs=1e-5), "z": 1.57}
    assert all_view["ndcg@20"]["mean"] == pytest.approx(0.0375)
    new_view = evaluation.results["model"]["new"]["vs_best_baseline"]
    assert (new_view["baseline"], new_view["recall@20"]["mean"]) == ("EASE", pytest.approx(0.06667, abs=1e-5))
    assert "vs_best_baseline" not in evaluation.results["EASE"]["all"]


def test_report_files_and_the_readme_table(tmp_path: Path) -> None:
    from recsys_tools.training.evaluate_cli import add_arguments, run

    evaluation = _toy_evaluation()
    ev.add_paired_differences(evaluation)
    report = ev.write_report(tmp_path / "11-01", evaluation, "Data: toy; split date 2011-11-01.")
    text = report.read_text(encoding="utf-8")
    assert "0.4750 ± 0.1109" in text  # the model's Recall@20 "all" with its standard error
    assert "## Paired differences against the best baseline per view" in text
    assert "| model | all | buy-again | +0.0750 ± 0.0479 (z = 1.6) |" in text
    assert "training_loss.png" in text
    for name in ("recall_at_k.png", "training_loss.png", "evaluation.json", "per_customer.json"):
        assert (tmp_path / "11-01" / name).stat().st_size > 0
    stored = json.loads((tmp_path / "11-01" / "evaluation.json").read_text(encoding="utf-8"))
    assert ev.PER_CUSTOMER not in stored["results"]["model"]["all"]
    assert stored["training"]["model"][1]["loss_per_example"] == 6.5
    per_customer = json.loads((tmp_path / "11-01" / "per_customer.json").read_text(encoding="utf-8"))
    assert per_customer["model"]["new"]["recall@20"] == [0.3, 0.2, 0.3]

    # a second split date, and a file in the format before issue 13 (results only)
    other = _toy_evaluation()
    other.cutoff = "2011-10-01 00:00:00"
    ev.add_paired_differences(other)
    ev.write_report(tmp_path / "10-01", other, "Data: toy; split date 2011-10-01.")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "evaluation.json").write_text(json.dumps({"popularity": stored["results"]["popularity"]}))
    paths = [
        tmp_path / "11-01" / "evaluation.json",
        tmp_path / "10-01" / "evaluation.json",
        tmp_path / "old" / "evaluation.json",
    ]
    table = ev.readme_table(paths).splitlines()
    assert table[0].startswith("| split | model | Recall@20 all |")
    assert len(table) == 2 + 4 + 4 + 1
    model_row = next(line for line in table if line.startswith("| 2011-11-01 | model |"))
    assert "**0.475 ± 0.111**" in model_row  # the best Recall@20 "all" of its split, in bold
    assert model_row.endswith("| +0.075 ± 0.048 (z = 1.6) / +0.067 ± 0.033 (z = 2.0) |")
    assert table[-1].startswith("| old | popularity |")

    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--readme-table", *map(str, paths[:1])])
    assert run(args) == 0


def test_rank_excludes_with_sparse_history() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7]], dtype=np.float32)
    bought = sp.csr_matrix(np.array([[0, 1, 0, 0]], dtype=np.float32))
    assert ev.rank(scores, 4, bought)[0, :3].tolist() == [3, 2, 0]


def test_no_ease_rows_for_catalogues_too_large_to_invert(split: Split, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ev, "EASE_MAX_PRODUCTS", 5)
    choices = ev.choose_baselines(split)
    assert "no EASE baselines" in choices.validation["note"]
    scores = ev.baseline_scores(ev.eval_data(split), choices)
    assert set(scores) == {ev.POPULARITY, ev.BUY_AGAIN, ev.DECAYED, "iALS (implicit, 64 factors)"}


def test_a_served_model_below_popularity_or_the_best_baseline_is_flagged() -> None:
    from recsys_tools.training.evaluate import PER_CUSTOMER, POPULARITY, REPORT_K, Evaluation, quality_warnings

    def row(recall: list[float], baseline: str, z: float) -> dict[str, Any]:
        difference = {"mean": -0.1, "se": 0.01, "z": z}
        return {
            PER_CUSTOMER: {f"recall@{REPORT_K}": recall},
            "vs_best_baseline": {"baseline": baseline, f"recall@{REPORT_K}": difference},
        }

    good = [0.5, 0.4, 0.6]
    results = {
        POPULARITY: {"all": row(good, POPULARITY, 0.0), "new": row([0.2, 0.3, 0.1], POPULARITY, 0.0)},
        "m, served (x)": {"all": row(good, POPULARITY, -1.0), "new": row([0.1, 0.2, 0.0], POPULARITY, -3.0)},
        "m: retrieval stage alone": {"all": row(good, POPULARITY, -9.0), "new": row([0.0] * 3, POPULARITY, -9.0)},
    }
    evaluation = Evaluation(results=results, baselines=[POPULARITY], choices={}, cutoff="2011-11-01")
    warnings = quality_warnings(evaluation)
    # only the served row counts; it loses to popularity on new and is 3 SEs below the best baseline there
    assert len(warnings) == 2
    assert all(w.startswith("m, served (x)") for w in warnings)
    assert "loses to popularity on new products" in warnings[0]
    assert "on new" in warnings[1]
