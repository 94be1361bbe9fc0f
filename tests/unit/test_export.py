"""export_model: a SavedModel with the query tower, ScaNN + exact retrieval and scoring, loadable with tensorflow +
scann only, and nothing per customer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

pytest.importorskip("scann")

import tensorflow as tf

from recsys_tools.bench.synthetic import synthetic_ranking
from recsys_tools.training.export import (
    IndexParams,
    Ranking,
    Towers,
    _build_searcher,
    _kth_exact_scores,
    _recall_at_10,
    _search,
    _tune_leaves,
    export_model,
    index_params_for,
)

DIM = 16
K_MAX = 50
Floats = npt.NDArray[np.float32]


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def _embeddings(n: int, seed: int) -> Floats:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def _load(path: Path) -> Any:
    return tf.saved_model.load(str(path / "saved_model"))


COUNTRIES = ["France", "United Kingdom"]


def _ranking(products: Floats) -> Ranking:
    """A ranking stage of the right shapes (these tests are about the retrieval stage and the index)."""
    return synthetic_ranking(len(products), np.random.default_rng(0))


def _towers(queries: Floats, products: Floats, product_ids: list[str] | None = None) -> Towers:
    """Towers over ``products`` (ids p0, p1, ...); history and country tables drawn at random."""
    return Towers(
        products=product_ids if product_ids is not None else _ids("p", len(products)),
        product_embeddings=products,
        history_embeddings=_embeddings(len(products), seed=11),
        countries=COUNTRIES,
        country_embeddings=_embeddings(len(COUNTRIES), seed=12),
        sample_queries=queries,
    )


@pytest.fixture(scope="module")
def catalogue() -> tuple[Floats, Floats]:
    return _embeddings(40, seed=1), _embeddings(1500, seed=2)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, catalogue: tuple[Floats, Floats]) -> tuple[Path, dict[str, Any]]:
    customers, products = catalogue
    out = tmp_path_factory.mktemp("export")
    info = export_model(out, _towers(customers, products), _ranking(products), k_max=K_MAX, half_life_days=30.0)
    return out, info


def test_index_params_scale_with_catalogue() -> None:
    assert index_params_for(5).kind == "brute_force"
    big = index_params_for(1_000_000, k_max=200)
    assert big.kind == "tree_ah"
    assert big.num_leaves == 1000
    assert 1 <= big.leaves_to_search <= big.num_leaves
    assert big.reorder_num_neighbors >= 200
    mid = index_params_for(1500)
    assert mid.num_leaves * mid.min_partition_size <= 1500  # k-means can fill every leaf
    with pytest.raises(ValueError):
        index_params_for(0)


def test_info_reports_index_and_recall(exported: tuple[Path, dict[str, Any]]) -> None:
    _, info = exported
    assert info["k_max"] == K_MAX
    assert info["embedding_dim"] == DIM
    assert info["index"]["kind"] == "tree_ah"
    assert info["index"]["num_products"] == 1500
    assert info["scann_recall_at_10"] >= 0.95
    json.dumps(info)  # goes into the manifest


def test_recommend_agrees_with_exact_dot_products(
    exported: tuple[Path, dict[str, Any]], catalogue: tuple[Floats, Floats]
) -> None:
    customers, products = catalogue
    model = _load(exported[0])
    ids = tf.constant(customers)
    exact_scores = customers @ products.T
    expected = np.argsort(-exact_scores, axis=1)[:, :K_MAX]

    exact = model.signatures["recommend_exact"](queries=ids)
    assert exact["product_ids"].shape == (len(customers), K_MAX)
    got = np.array([[int(p.decode()[1:]) for p in row] for row in exact["product_ids"].numpy()])
    np.testing.assert_array_equal(got, expected)
    assert np.allclose(exact["scores"].numpy(), np.take_along_axis(exact_scores, expected, 1), rtol=1e-5)

    approx = model.signatures["recommend"](queries=ids)
    assert approx["product_ids"].dtype == tf.string
    assert approx["scores"].dtype == tf.float32
    approx_ids = np.array([[int(p.decode()[1:]) for p in row] for row in approx["product_ids"].numpy()])
    # ScaNN re-orders exactly, so its scores are the true dot products, best first
    assert np.allclose(approx["scores"].numpy(), np.take_along_axis(exact_scores, approx_ids, 1), rtol=1e-4)
    assert np.all(np.diff(approx["scores"].numpy(), axis=1) <= 1e-6)
    overlap = np.mean([len(set(a[:10]) & set(e[:10])) / 10 for a, e in zip(approx_ids, expected, strict=True)])
    assert overlap >= 0.9


def test_score_matches_embeddings_and_unknown_is_zero(
    exported: tuple[Path, dict[str, Any]], catalogue: tuple[Floats, Floats]
) -> None:
    customers, products = catalogue
    model = _load(exported[0])
    out = model.signatures["score"](query=tf.constant(customers[3]), product_ids=tf.constant(["p7", "p0", "unknown"]))
    expected = [customers[3] @ products[7], customers[3] @ products[0], 0.0]
    np.testing.assert_allclose(out["scores"].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_query_is_the_recency_weighted_history_mean_plus_the_country(
    exported: tuple[Path, dict[str, Any]], catalogue: tuple[Floats, Floats]
) -> None:
    # Given a history of two known products and one unknown, bought 3 and 1 times, 0 and 30 days ago (half-life 30)
    _, products = catalogue
    towers = _towers(catalogue[0], products)
    model = _load(exported[0])

    def query(ids: list[str], counts: list[float], ages: list[float], country: str) -> Floats:
        out = model.signatures["query"](
            product_ids=tf.constant(ids, tf.string),
            counts=tf.constant(counts, tf.float32),
            ages_days=tf.constant(ages, tf.float32),
            country=tf.constant(country),
        )
        return np.asarray(out["query"].numpy())

    got = query(["p4", "p9", "unknown"], [3.0, 1.0, 5.0], [0.0, 30.0, 0.0], "France")
    # Then it is the mean of the history rows weighted log(1 + count) x 2^(-age / 30), plus France's row
    weights = np.array([np.log1p(3.0), np.log1p(1.0) * 0.5])
    history = weights @ towers.history_embeddings[[4, 9]] / weights.sum()
    np.testing.assert_allclose(got, history + towers.country_embeddings[0], rtol=1e-5, atol=1e-6)
    # And only relative ages count: the same history a year older gives the same query
    older = query(["p4", "p9", "unknown"], [3.0, 1.0, 5.0], [365.0, 395.0, 0.0], "France")
    np.testing.assert_allclose(older, got, rtol=1e-5, atol=1e-6)
    # And an unknown country adds nothing; a history of unknown products leaves the country's row alone
    np.testing.assert_allclose(query(["p4", "p9"], [3.0, 1.0], [0.0, 30.0], "Atlantis"), history, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(query(["nope"], [2.0], [1.0], "United Kingdom"), towers.country_embeddings[1], atol=1e-6)


def test_nothing_per_customer_is_exported(exported: tuple[Path, dict[str, Any]]) -> None:
    model = _load(exported[0])
    assert [name for name in dir(model) if "customer" in name] == []
    assert {"product_embeddings", "history_embeddings", "country_embeddings", "scann"} <= set(dir(model))


def test_tiny_catalogue_smaller_than_k_max_is_padded(tmp_path: Path) -> None:
    customers, products = _embeddings(3, seed=3), _embeddings(5, seed=4)
    info = export_model(tmp_path, _towers(customers, products), _ranking(products), k_max=200)
    assert info["index"]["kind"] == "brute_force"
    model = _load(tmp_path)
    for signature in ("recommend", "recommend_exact"):
        out = model.signatures[signature](queries=tf.constant(customers[[0, 2]]))
        ids, scores = out["product_ids"].numpy(), out["scores"].numpy()
        assert ids.shape == scores.shape == (2, 200)
        expected = np.argsort(-(customers[[0, 2]] @ products.T), axis=1)
        assert [[int(p.decode()[1:]) for p in row[:5]] for row in ids] == expected.tolist()
        assert set(ids[:, 5:].ravel().tolist()) == {b""}
        assert np.all(np.isneginf(scores[:, 5:]))
        assert np.all(np.isfinite(scores[:, :5]))


def test_scann_short_rows_are_padded_without_nan_or_duplicates(tmp_path: Path) -> None:
    """Searching 1 of 32 leaves for 200 neighbours: ScaNN fills the rest with index 0 and NaN."""
    customers, products = _embeddings(4, seed=5), _embeddings(1000, seed=6)
    params = replace(index_params_for(1000, k_max=200), leaves_to_search=1, target_recall_at_10=0.0)
    info = export_model(tmp_path, _towers(customers, products), _ranking(products), k_max=200, index=params)
    assert info["index"]["leaves_to_search"] == 1
    out = _load(tmp_path).signatures["recommend"](queries=tf.constant(customers))
    for ids, scores in zip(out["product_ids"].numpy(), out["scores"].numpy(), strict=True):
        real = ids != b""
        assert 0 < real.sum() < 200, "expected a short row from a single leaf"
        assert not np.isnan(scores).any()
        assert np.all(np.isneginf(scores[~real]))
        assert np.all(np.isfinite(scores[real]))
        assert real[: real.sum()].all(), "padding comes last"
        assert len(set(ids[real].tolist())) == real.sum()


def test_scann_rows_are_best_first_without_duplicates() -> None:
    """_finalise relies on this instead of de-duplicating and re-sorting: tree + AH + reorder, full and short rows."""
    products, queries = _embeddings(3000, seed=7), _embeddings(200, seed=8)
    params = index_params_for(3000, k_max=200)
    searcher = _build_searcher(products, params, 200)
    for leaves in (1, 2, params.leaves_to_search, params.num_leaves):
        indices, distances = _search(searcher, tf.constant(queries), replace(params, leaves_to_search=leaves), 200)
        for row, scores in zip(indices.numpy(), distances.numpy(), strict=True):
            valid = np.isfinite(scores)
            assert valid[: valid.sum()].all(), "invalid entries come last"
            assert len(set(row[valid].tolist())) == valid.sum(), "duplicate index"
            assert np.all(np.diff(scores[valid]) <= 1e-6), "best first"


def _clustered(n: int, seed: int) -> Floats:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(32, DIM))
    return (centres[rng.integers(32, size=n)] + 0.3 * rng.normal(size=(n, DIM))).astype(np.float32)


@pytest.mark.parametrize("clustered", [True, False])
def test_leaves_to_search_is_the_smallest_meeting_the_target(clustered: bool) -> None:
    """Clustered data meet the target below the initial 10% of leaves (bisect down), isotropic data above it."""
    make = _clustered if clustered else _embeddings
    products, queries = make(2000, seed=9), make(300, seed=10)
    params = index_params_for(2000, k_max=K_MAX)
    searcher = _build_searcher(products, params, K_MAX)
    tuned, recall = _tune_leaves(searcher, queries, products, params, K_MAX)
    kth = _kth_exact_scores(queries, products, 10)

    def measured(leaves: int) -> float:
        return _recall_at_10(searcher, queries, kth, products, replace(params, leaves_to_search=leaves), K_MAX)

    leaves = tuned.leaves_to_search
    assert (leaves < params.leaves_to_search) if clustered else (leaves > params.leaves_to_search)
    assert recall == measured(leaves) >= params.target_recall_at_10
    assert leaves == 1 or measured(leaves - 1) < params.target_recall_at_10


@pytest.mark.parametrize(
    ("products", "match"),
    [
        (["p", "p"], "not unique"),
        (["p", ""], "reserved"),
        (["p"], "ids for"),
    ],
)
def test_invalid_inputs_are_rejected(tmp_path: Path, products: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        export_model(tmp_path, _towers(_embeddings(2, 0), _embeddings(2, 1), products), _ranking(_embeddings(2, 1)))


def test_tree_needs_reorder_of_at_least_k(tmp_path: Path) -> None:
    params = IndexParams(kind="tree_ah", num_leaves=4, leaves_to_search=2, reorder_num_neighbors=10)
    with pytest.raises(ValueError, match="reorder"):
        export_model(
            tmp_path,
            _towers(_embeddings(1, 0), _embeddings(100, 1)),
            _ranking(_embeddings(100, 1)),
            k_max=50,
            index=params,
        )


def test_loads_with_tensorflow_and_scann_only(exported: tuple[Path, dict[str, Any]]) -> None:
    script = textwrap.dedent(
        """
        import sys
        import scann  # registers the Scann ops the SavedModel needs
        import tensorflow as tf

        model = tf.saved_model.load(sys.argv[1])
        query = model.signatures["query"](
            product_ids=tf.constant(["p1", "unknown"]), counts=tf.constant([1.0, 2.0]),
            ages_days=tf.constant([3.0, 4.0]), country=tf.constant("France"),
        )["query"]
        out = model.signatures["recommend"](queries=tf.stack([query, query]))
        assert out["product_ids"].shape == (2, int(sys.argv[2])), out["product_ids"].shape
        assert "tensorflow_recommenders" not in sys.modules
        assert "tf_keras" not in sys.modules
        print(sorted(model.signatures.keys()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(exported[0] / "saved_model"), str(K_MAX)],
        env={k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"},  # as in the Lambda image
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        result.stdout.strip().splitlines()[-1]
        == "['query', 'rank_all', 'rank_new', 'recommend', 'recommend_exact', 'score']"
    )
