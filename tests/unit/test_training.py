"""Training: cleaning, split, metrics, and a tiny real model trained, exported and loaded like serving does."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys import artifact
from recsys_tools.training.data import (
    CLEAN_COLUMNS,
    clean,
    features_used,
    is_retail_file,
    load_purchases,
    load_purchases_with_report,
    product_names,
    synthetic_purchases,
    time_split,
)
from recsys_tools.training.evaluate import ndcg_at_k, rank, recall_at_k
from recsys_tools.training.params import DEFAULT_DATA, Columns, TrainParams

RAW_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]


def _raw(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=RAW_COLUMNS)


# --- cleaning and split -----------------------------------------------------------------------------------------


def test_cleaning_drops_cancellations_non_products_and_missing_customers() -> None:
    raw = _raw(
        [
            ("536365", "85123A", "HEART", 6, "2010-12-01 08:26", 2.55, "17850.0", "United Kingdom"),  # kept
            ("C536379", "85123A", "HEART", -1, "2010-12-01 09:41", 2.55, "17850.0", "United Kingdom"),  # cancel
            ("536366", "POST", "POSTAGE", 1, "2010-12-01 09:00", 18.0, "12583.0", "France"),  # non-product
            ("536367", "DCGS0076", "SUNJAR", 1, "2010-12-01 09:00", 2.0, "12583.0", "France"),  # non-product
            ("536368", "22633", "HAND WARMER", 6, "2010-12-01 09:00", 1.85, None, "United Kingdom"),  # no customer
            ("536369", "22633", "HAND WARMER", 0, "2010-12-01 09:00", 1.85, "13047.0", "United Kingdom"),  # qty 0
            ("536370", "22633", "HAND WARMER", 2, "2010-12-01 09:00", 0.0, "13047.0", "United Kingdom"),  # free
            ("536371", "22633", None, 3, "2010-12-01 10:00", 1.85, "13047.0", "United Kingdom"),  # kept, no name
        ]
    )
    cleaned = clean(raw, retail_rules=True)
    assert list(cleaned.columns) == CLEAN_COLUMNS
    assert cleaned[["customer_id", "product_id"]].to_numpy().tolist() == [["17850", "85123A"], ["13047", "22633"]]
    assert cleaned["quantity"].tolist() == [6.0, 3.0]
    assert cleaned["name"].tolist() == ["HEART", ""]
    assert cleaned["country"].tolist() == ["United Kingdom", "United Kingdom"]


def test_cleaning_other_csv_applies_only_rules_whose_columns_exist() -> None:
    raw = pd.DataFrame(
        {
            "user": ["u1", "u2", None],
            "sku": ["SKU-1", "SKU-2", "SKU-1"],
            "ts": ["2024-01-02", "2024-01-01", "2024-01-03"],
        }
    )
    cleaned = clean(raw, Columns(customer="user", product="sku", timestamp="ts"))
    # no invoice, quantity, price or name columns; the Online Retail product pattern is not applied to "sku"
    assert cleaned["product_id"].tolist() == ["SKU-2", "SKU-1"]  # sorted by time
    assert cleaned["quantity"].tolist() == [1.0, 1.0]
    assert cleaned["name"].tolist() == ["", ""]
    with pytest.raises(ValueError, match="column"):
        clean(raw, Columns(customer="missing", product="sku", timestamp="ts"))


def test_retail_rules_need_the_retail_file_or_the_flag(tmp_path: Path) -> None:
    # Given another shop's CSV whose columns are named like the Online Retail ones (ids that are not five digits,
    # an invoice numbering that starts with C)
    raw = _raw(
        [
            ("C-1001", "SKU-RED", "RED MUG", 2, "2024-01-02 10:00", 3.5, "u1", "Norway"),
            ("C-1002", "SKU-BLUE", "BLUE MUG", 1, "2024-01-03 10:00", 3.5, "u2", "Norway"),
        ]
    )
    path = tmp_path / "shop.csv"
    raw.to_csv(path, index=False)
    # Then by default none of the retail rules apply: every purchase is kept
    assert load_purchases(path)["product_id"].tolist() == ["SKU-RED", "SKU-BLUE"]
    _, report = load_purchases_with_report(path)
    assert report["retail_rules"] is False
    assert report["rules"]["retail: cancellations (invoice starts with C)"].startswith("off")
    # Asked for explicitly, they apply (and say which rules dropped the rows)
    with pytest.raises(ValueError, match=r"no purchases left after cleaning.*product id pattern"):
        load_purchases(path, retail_rules=True)
    # The shipped file is recognised by its content, not its columns
    assert is_retail_file(DEFAULT_DATA)
    assert not is_retail_file(path)


@pytest.mark.parametrize(
    ("values", "unit"),
    [
        ([1293753600, 1293840000], "unix seconds"),  # integers
        ([1293753600.0, 1293840000.5], "unix seconds"),  # floats
        (["1293753600", "1293840000"], "unix seconds"),  # numeric text
        ([1293753600000, 1293840000000], "unix milliseconds"),
        (["1293753600000", "1293840000000"], "unix milliseconds"),
        (["2010-12-31T01:00:00+01:00", "2011-01-01T00:00:00Z"], "date text"),  # offsets: converted to UTC
    ],
)
def test_unix_timestamps_are_read_by_magnitude(tmp_path: Path, values: list[Any], unit: str) -> None:
    path = tmp_path / "times.csv"
    pd.DataFrame({"user": ["u1", "u2"], "sku": ["a", "b"], "ts": values}).to_csv(path, index=False)
    cleaned, report = load_purchases_with_report(path, Columns(customer="user", product="sku", timestamp="ts"))
    assert cleaned["timestamp"].dt.floor("D").tolist() == [pd.Timestamp("2010-12-31"), pd.Timestamp("2011-01-01")]
    assert cleaned["timestamp"].dt.tz is None
    assert report["timestamp_format"] == f"{unit} (column 'ts')"


def test_timestamps_of_no_known_magnitude_are_refused_naming_the_column(tmp_path: Path) -> None:
    path = tmp_path / "times.csv"
    columns = Columns(customer="user", product="sku", timestamp="when")
    for values in ([20110101, 20110102], [1293753600, 1293840000000], ["soon", "later"]):  # YYYYMMDD; mixed
        pd.DataFrame({"user": ["u1", "u2"], "sku": ["a", "b"], "when": values}).to_csv(path, index=False)
        with pytest.raises(ValueError, match="timestamp column 'when'"):
            load_purchases(path, columns)


def test_a_data_set_without_optional_columns_turns_their_features_off(tmp_path: Path) -> None:
    path = tmp_path / "bare.csv"
    pd.DataFrame({"user": ["u1", "u2"], "sku": ["a", "b"], "ts": ["2024-01-02", "2024-01-03"]}).to_csv(
        path, index=False
    )
    purchases, cleaning = load_purchases_with_report(path, Columns(customer="user", product="sku", timestamp="ts"))
    assert cleaning["columns"]["name"] is None
    assert cleaning["columns"]["price"] is None
    assert cleaning["rules"]["unit price > 0"] == "off: no column 'UnitPrice'"
    params, features = features_used(purchases, TrainParams(), cleaning)
    assert (params.use_names, params.use_country) == (False, False)
    assert params == TrainParams(use_names=False, use_country=False)
    assert features["used"] == ["product id, purchase history (counts, recency)"]
    assert "no name column" in features["off"]["product names (use_names)"]
    assert "no country column" in features["off"]["country (use_country)"]
    # with the columns present and filled, nothing is off; turned off by a flag, the record says so
    full, _ = features_used(synthetic_purchases(), TrainParams(use_country=False))
    assert full == TrainParams(use_country=False)


def test_time_split_restricts_test_to_known_customers_and_products() -> None:
    frame = synthetic_purchases()
    late = pd.DataFrame(
        [
            ["99999", "20000", pd.Timestamp("2011-12-01"), 1.0, "x", ""],
            ["12000", "29999", pd.Timestamp("2011-12-01"), 1.0, "y", ""],
        ],
        columns=CLEAN_COLUMNS,
    )
    split = time_split(pd.concat([frame, late], ignore_index=True), "2011-11-01")
    assert (split.train["timestamp"] < split.cutoff).all()
    assert (split.test["timestamp"] >= split.cutoff).all()
    assert set(split.test["customer_id"]) <= set(split.train["customer_id"])
    assert set(split.test["product_id"]) <= set(split.train["product_id"])
    assert "99999" not in set(split.test["customer_id"])
    fallback = time_split(frame, "1999-01-01")  # outside the data: the latest 15% become the test period
    assert fallback.cutoff > frame["timestamp"].min()


def test_product_names_take_the_most_frequent() -> None:
    frame = synthetic_purchases().head(3).copy()
    frame["product_id"] = ["1", "1", "2"]
    frame["name"] = ["B", "B", ""]
    frame.loc[len(frame)] = [frame["customer_id"][0], "1", frame["timestamp"][0], 1.0, "A", ""]
    assert product_names(frame) == {"1": "B", "2": ""}


def test_synthetic_purchases_are_in_the_cleaned_format() -> None:
    frame = synthetic_purchases(num_customers=9, num_products=5, seed=1)
    assert list(frame.columns) == CLEAN_COLUMNS
    assert frame["customer_id"].nunique() == 9
    assert frame["product_id"].nunique() <= 5
    assert frame["timestamp"].is_monotonic_increasing
    assert (frame["quantity"] > 0).all()


# --- metrics ----------------------------------------------------------------------------------------------------


def test_recall_and_ndcg_on_hand_computed_examples() -> None:
    ranked = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
    targets = [{2, 9}, {6}]
    # customer 1: 1 hit of min(2, 2); customer 2: 0 hits in the top 2
    assert recall_at_k(ranked, targets, 2) == pytest.approx((0.5 + 0.0) / 2)
    assert recall_at_k(ranked, targets, 3) == pytest.approx((0.5 + 1.0) / 2)
    # NDCG@3: hit at rank 2 -> (1/log2 3) / (1 + 1/log2 3); hit at rank 3 -> (1/log2 4) / 1
    first = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(ranked, targets, 3) == pytest.approx((first + 0.5) / 2)
    assert ndcg_at_k(np.array([[7, 8]], dtype=np.int64), [{7, 8, 9}], 2) == pytest.approx(1.0)


def test_rank_orders_and_excludes() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7]], dtype=np.float32)
    assert rank(scores, 3).tolist() == [[1, 3, 2]]
    bought = sp.csr_matrix(np.array([[0, 1, 0, 0]], dtype=np.float32))
    assert rank(scores, 3, bought).tolist() == [[3, 2, 0]]


# --- artifact files and the evaluate command's parameters (no model) -------------------------------------------


def _write_files(path: Path, version: str, parameters: dict[str, Any]) -> None:
    artifact.write_artifact(
        path,
        manifest={"version": version, "k_max": 5, "parameters": parameters},
        catalogue={"p1": "Ünïcode name", "p2": ""},
        popular=[("p2", 3.0), ("p1", 1.0)],
    )


def test_written_artifact_reads_back_and_is_published_whole(tmp_path: Path) -> None:
    staging = artifact.staging_dir(tmp_path, "v1")
    staging.mkdir()
    (staging / "left-over").write_text("from an interrupted run")
    staging = artifact.staging_dir(tmp_path, "v1")
    assert not staging.exists()
    _write_files(staging, "v1", {})

    final = artifact.publish(staging, tmp_path, "v1", make_current=False)
    assert final == tmp_path / "v1"
    assert not staging.exists()
    assert not (tmp_path / artifact.CURRENT).exists()
    art = artifact.Artifact(final)
    assert (art.version, art.k_max) == ("v1", 5)
    assert art.catalogue == {"p1": "Ünïcode name", "p2": ""}
    assert art.popular == [("p2", 3.0), ("p1", 1.0)]

    staging = artifact.staging_dir(tmp_path, "v2")
    _write_files(staging, "v2", {})
    artifact.publish(staging, tmp_path, "v2")
    assert (tmp_path / artifact.CURRENT).read_text().strip() == "v2"


def test_evaluate_takes_the_current_artifacts_parameters(tmp_path: Path) -> None:
    from recsys_tools.training.evaluate_cli import add_arguments, stored_params

    assert stored_params(None, tmp_path) == TrainParams()  # no current artifact: the defaults
    _write_files(tmp_path / "v1", "v1", {"epochs": 3, "use_names": False, "split_date": "2011-11-01"})
    artifact.mark_current(tmp_path, "v1")
    assert stored_params(None, tmp_path) == TrainParams(epochs=3, use_names=False)
    _write_files(tmp_path / "v0", "v0", {"epochs": 1})
    assert stored_params(tmp_path / "v0", tmp_path) == TrainParams(epochs=1)

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--variants", "all", "--artifacts-root", str(tmp_path)])
    assert (args.variants, args.artifacts_root, args.split_date) == (["all"], tmp_path, "2011-11-01")


# --- a tiny real model ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recsys_tools.training.train import train_and_export

    root = tmp_path_factory.mktemp("artifacts")
    return train_and_export(
        synthetic_purchases(),
        root,
        params=TrainParams.tiny(),
        evaluate=True,
        version="tiny",
        k_max=50,
        report_dir=root / "reports",
    )


@pytest.fixture(scope="module")
def loaded(trained: Path) -> Any:
    import scann  # noqa: F401  # registers the Scann ops
    import tensorflow as tf

    return tf.saved_model.load(str(trained / artifact.SAVED_MODEL_DIR))


def test_artifact_layout_and_manifest(trained: Path) -> None:
    assert (trained.parent / artifact.CURRENT).read_text().strip() == "tiny"
    art = artifact.Artifact(trained)
    manifest = art.manifest
    for key in (
        "version",
        "created_at",
        "data_sha256",
        "parameters",
        "vocabulary_sizes",
        "k_max",
        "embedding_dim",
        "index",
        "scann_recall_at_10",
        "metrics",
    ):
        assert key in manifest, key
    assert art.version == "tiny"
    assert art.k_max == 50
    assert manifest["embedding_dim"] == 8
    assert manifest["index"]["kind"] == "brute_force"  # 12 products: fewer than any tree's leaves
    assert manifest["scann_recall_at_10"] >= 0.95
    assert set(manifest["metrics"]["two-stage (shipped parameters): retrieval stage alone (exact)"]) == {"all", "new"}
    served = [name for name in manifest["metrics"] if name.startswith("two-stage (shipped parameters), served")]
    assert len(served) == 1
    assert set(manifest["metrics"][served[0]]) == {"all", "new"}
    for view in ("all", "new"):  # figures with standard errors, paired differences against the best baseline
        metrics = manifest["metrics"][served[0]][view]
        assert {"recall@20", "recall@20_se", "ndcg@20", "ndcg@20_se", "customers", "vs_best_baseline"} <= set(metrics)
        assert metrics["vs_best_baseline"]["baseline"] in manifest["metrics"]
        assert "per_customer" not in metrics
        assert "lambda" in manifest["metrics"]["EASE (item-item, closed form)"][view]["chosen"]
    assert {"EASE + recency", "buy-again, recency-decayed", "iALS (implicit, 64 factors)"} <= set(manifest["metrics"])
    runs = manifest["training"]["epochs"]  # each fit's mean loss per example per epoch
    assert set(runs) == {"retrieval", "retrieval (validation period)", "ranking head all", "ranking head new"}
    for epochs in runs.values():
        assert [e["epoch"] for e in epochs] == [1, 2]
        assert all(math.isfinite(e["loss_per_example"]) and e["loss_per_example"] > 0 for e in epochs)
    assert manifest["features"]["off"] == {}
    assert manifest["vocabulary_sizes"]["customers"] == 30
    assert manifest["vocabulary_sizes"]["products"] == len(art.catalogue)
    assert all(name.startswith("PRODUCT ") for name in art.catalogue.values())
    scores = [score for _, score in art.popular]
    assert scores == sorted(scores, reverse=True)
    assert {p for p, _ in art.popular} <= set(art.catalogue)
    assert sorted(path.name for path in trained.iterdir()) == [
        "catalogue.json",
        "manifest.json",
        "popular.json",
        "saved_model",
    ]


def test_the_report_has_standard_errors_paired_differences_and_the_loss_per_epoch(trained: Path) -> None:
    reports = trained.parent / "reports"
    text = (reports / "evaluation.md").read_text(encoding="utf-8")
    assert " ± " in text
    assert "## Paired differences against the best baseline per view" in text
    assert "## Choices made on the validation period" in text
    stored = json.loads((reports / "evaluation.json").read_text(encoding="utf-8"))
    training = stored["training"]
    assert set(training) == {
        f"two-stage (shipped parameters): {run}"
        for run in ("retrieval", "retrieval (validation period)", "ranking head all", "ranking head new")
    }
    assert all([e["epoch"] for e in losses] == [1, 2] for losses in training.values())
    assert (reports / "training_loss.png").stat().st_size > 0
    assert stored["choices"]["validation"]["cutoff"] == "2011-10-02 00:00:00"


def test_epoch_loss_is_the_mean_loss_per_example() -> None:
    from recsys_tools.training.progress import EpochLoss, recording

    with recording() as runs:
        callback = EpochLoss(examples=5)
    logs: dict[str, Any] = {}
    callback.on_epoch_begin(0)
    for loss in (6.0, 4.0):  # the task's loss summed over each batch (3 and 2 examples)
        callback.on_train_batch_end(0, {"loss": loss, "regularization_loss": 1.0})
    callback.on_epoch_end(0, logs)
    assert logs["loss_per_example"] == 2.0
    assert runs == {"fit": [{"epoch": 1, "loss_per_example": 2.0, "regularization_per_batch": 1.0}]}
    assert EpochLoss(examples=5).epochs is not runs["fit"]  # outside recording(): not collected


def test_retrieval_agrees_with_exact_dot_products(trained: Path, loaded: Any) -> None:
    import tensorflow as tf

    art = artifact.Artifact(trained)
    products = np.array(sorted(art.catalogue))
    queries = np.random.default_rng(0).normal(size=(7, 8)).astype(np.float32)
    exact = queries @ loaded.product_embeddings.numpy()[: len(products)].T
    out = loaded.signatures["recommend"](queries=tf.constant(queries))
    ids, scores = out["product_ids"].numpy().astype(str), out["scores"].numpy()
    assert ids.shape == (len(queries), 50)  # 12 products, padded to k_max
    assert (ids[:, len(products) :] == "").all()
    assert np.isneginf(scores[:, len(products) :]).all()
    expected = products[np.argsort(-exact, axis=1, kind="stable")]
    assert np.allclose(scores[:, : len(products)], -np.sort(-exact, axis=1), rtol=1e-5, atol=1e-6)
    assert (ids[:, :3] == expected[:, :3]).mean() > 0.95  # exact ties aside, the same order


def test_every_product_has_its_own_trained_rows_and_unknown_ids_score_zero(trained: Path, loaded: Any) -> None:
    import tensorflow as tf

    art = artifact.Artifact(trained)
    products = loaded.product_embeddings.numpy()
    history = loaded.history_embeddings.numpy()
    assert products.shape == history.shape == (len(art.catalogue) + 1, 8)
    assert np.all(np.abs(products[:-1]).sum(axis=1) > 0)
    assert not products[-1].any()  # the last row: OOV
    query = tf.constant(np.ones(8, np.float32))
    out = loaded.signatures["score"](query=query, product_ids=tf.constant(["20001", "99999"]))
    assert np.allclose(out["scores"].numpy(), [products[1].sum(), 0.0], rtol=1e-5, atol=1e-6)


def test_existing_version_is_not_overwritten(trained: Path) -> None:
    from recsys_tools.training.train import train_and_export

    with pytest.raises(FileExistsError):
        train_and_export(synthetic_purchases(), trained.parent, params=TrainParams.tiny(), version="tiny")


def test_cli_defaults_are_the_default_parameters() -> None:
    from recsys_tools.training.train_cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--epochs", "3", "--no-use-names"])
    params = {name: getattr(args, name) for name in TrainParams.__dataclass_fields__}
    assert TrainParams(**params) == TrainParams(epochs=3, use_names=False)
    assert args.customer_column == "CustomerID"


def test_train_on_a_csv_without_optional_columns_records_the_truth(tmp_path: Path) -> None:
    from recsys_tools.cli import main

    # Given a CSV with only customer, product and unix-millisecond timestamps, its product column named StockCode
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2024-01-01").value // 1_000_000
    rows = [
        (f"u{c}", f"SKU-{(c % 3) * 4 + int(rng.integers(4))}", start + int(rng.integers(0, 90 * 86_400_000)))
        for c in range(40)
        for _ in range(5)
    ]
    path = tmp_path / "shop.csv"
    pd.DataFrame(rows, columns=["user", "StockCode", "ms"]).to_csv(path, index=False)
    flags = ["--customer-column", "user", "--timestamp-column", "ms", "--split-date", "2024-03-01"]
    tiny = ["--epochs", "2", "--embedding-dim", "8", "--batch-size", "64", "--verbose", "0", "--no-evaluate"]
    args = ["train", "--data", str(path), *flags, *tiny, "--artifacts-root", str(tmp_path / "a"), "--version", "v"]
    assert main(args) == 0
    manifest = artifact.Artifact(tmp_path / "a" / "v").manifest
    # Then the retail rules stayed off, the times are 2024's, and the manifest says which features are off and why
    assert manifest["cleaning"]["retail_rules"] is False
    assert manifest["cleaning"]["rows_kept"] == len(rows)
    assert manifest["cleaning"]["timestamp_format"] == "unix milliseconds (column 'ms')"
    assert (manifest["parameters"]["use_names"], manifest["parameters"]["use_country"]) == (False, False)
    assert set(manifest["features"]["off"]) == {"product names (use_names)", "country (use_country)"}
    runs = manifest["training"]["epochs"]
    assert len(runs["retrieval"]) == len(runs["retrieval (validation period)"]) == 2


def test_the_artifact_does_not_grow_with_the_number_of_customers(tmp_path: Path) -> None:
    from recsys_tools.training.train import train_and_export

    # Given two data sets that differ only in the number of customers (same products, same countries)
    def trained(customers: int) -> Path:
        data = synthetic_purchases(num_customers=customers, num_products=12, seed=3)
        return train_and_export(data, tmp_path / str(customers), params=TrainParams.tiny(), make_current=False)

    small, large = trained(30), trained(600)

    def sizes(path: Path) -> dict[str, int]:
        return {str(f.relative_to(path)): f.stat().st_size for f in path.rglob("*") if f.is_file()}

    # Then the artifacts hold the same files, the SavedModel's tables are the same size, and in all they differ by
    # a few bytes of manifest (the customer count, timings)
    small_sizes, large_sizes = sizes(small), sizes(large)
    assert small_sizes.keys() == large_sizes.keys()
    variables = "saved_model/variables/variables.data-00000-of-00001"
    assert small_sizes[variables] == large_sizes[variables]
    assert abs(sum(large_sizes.values()) - sum(small_sizes.values())) < 1024
