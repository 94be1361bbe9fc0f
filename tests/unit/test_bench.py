"""`recsys bench --quick` end to end on the small session model: every section is written, with medians, p90 and
p99, and the markdown has its tables. Timings are not asserted (they depend on the machine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recsys_tools.cli import main

pytest.importorskip("scann")
pytest.importorskip("moto")

SECTIONS = (
    "machine",
    "versions",
    "model",
    "footprint",
    "cold_start",
    "retrieval",
    "wrapper",
    "batch",
    "batch_store",
    "handlers",
)
OPERATIONS = (
    "customer_recommendations",
    "show_recommendations",
    "update_recommendations",
    "delete_recommendations",
    "record_purchases",
)


def _figures(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every timing figure in the results: the dicts with a unit and a median."""
    if isinstance(node, dict):
        if "median" in node:
            return [(path, node)]
        return [found for key, value in node.items() for found in _figures(value, f"{path}/{key}")]
    if isinstance(node, list):
        return [found for i, value in enumerate(node) for found in _figures(value, f"{path}/{i}")]
    return []


@pytest.fixture(scope="module")
def results(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", "--quick", "--model-dir", str(model_dir), "--out", str(out)]) == 0
    return json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


def test_every_section_is_written(results: tuple[dict[str, Any], str]) -> None:
    data, _ = results
    for section in SECTIONS:
        assert data.get(section), section
    assert {"retail", "synthetic_2k", "synthetic_5k"} <= data["retrieval"].keys()
    for catalogue in data["retrieval"].values():
        assert {"scann", "scann_native", "exact", "scann_signature", "exact_signature"} <= catalogue.keys()
        assert {"speedup", "served_vs_native", "recall_at_10"} <= catalogue.keys()
        assert catalogue["served_vs_native"] > 0
        assert 0.0 <= catalogue["recall_at_10"] <= 1.0
        # faiss next to the served search, on the same vectors and queries, with recall and the served / best ratio
        assert set(catalogue["peers"]) == {"faiss_hnsw", "faiss_ivf"}
        for peer in catalogue["peers"].values():
            assert {"description", "setting", "recall_at_10", "build_seconds", "search"} <= peer.keys()
            assert 0.0 <= peer["recall_at_10"] <= 1.0
        if catalogue["best_peer"] is None:
            assert catalogue["served_vs_best_peer"] is None
        else:
            assert catalogue["peers"][catalogue["best_peer"]]["recall_at_10"] >= 0.99
            assert catalogue["served_vs_best_peer"] > 0
    assert {"recommend", "score", "score_signature"} <= data["wrapper"].keys()
    assert {"batched", "two_stage", "single", "two_stage_speedup", "identical", "profile"} <= data["batch"].keys()
    assert data["batch"]["identical"] == 1.0  # recommend_many gives each customer what recommend gives them
    batch = data["batch_store"]  # --quick: the first 300 retail customers, every one written, none failed
    assert (batch["customers"], batch["accounting"]["written"], batch["accounting"]["failed"]) == (300, 300, 0)
    assert batch["bottleneck"] in {"model", "write path (GetItem + conditional PutItem)"}
    assert set(batch["item_bytes"]) == {"list", "history"}
    for store in ("dynamodb_moto", "dynamodb_replayed", "in_memory_store"):
        assert set(data["handlers"][store]) == set(OPERATIONS)
    cold = data["cold_start"]  # --quick: one function with the model, one without, and the reference import
    assert {"import", "model_load", "first_call", "total", "cpu"} <= cold["customer_recommendations"].keys()
    assert {"import", "first_call", "total", "cpu"} <= cold["show_recommendations"].keys()
    assert cold["show_recommendations"]["tensorflow_imported"] is False
    assert cold["customer_recommendations"]["tensorflow_imported"] is True
    assert "tensorflow_import" in cold["reference"]
    # the same at each function's Lambda CPU share (MemorySize / 1,769 MB), unless no cgroup quota can be set here
    shared = data["cold_start_share"]
    if "skipped" in shared:
        assert "no CPU quota" in shared["skipped"]
    else:
        assert set(shared["memory_mb"]) == {"customer_recommendations", "show_recommendations", "reference"}
        assert shared["cpu_share"]["show_recommendations"] == round(
            shared["memory_mb"]["show_recommendations"] / 1769, 3
        )
        assert shared["cpu_share"]["reference"] == shared["cpu_share"]["customer_recommendations"]
        assert {"import", "first_call", "total", "cpu"} <= shared["show_recommendations"].keys()
        assert shared["show_recommendations"]["tensorflow_imported"] is False
    assert data["footprint"]["total_mb"] > 0
    assert len(data["footprint"]["largest"]) == 5
    assert {t["target"] for t in data["targets"]} >= {"show cold start", "warm generate end to end p50"}


def test_every_figure_has_median_p90_p99(results: tuple[dict[str, Any], str]) -> None:
    figures = _figures(results[0])
    assert len(figures) > 30
    for path, figure in figures:
        assert {"unit", "median", "p90", "p99", "n"} <= figure.keys(), path
        assert figure["median"] <= figure["p90"] <= figure["p99"], path


def test_markdown_has_the_tables(results: tuple[dict[str, Any], str]) -> None:
    _, text = results
    for heading in ("## Targets", "## Retrieval", "## All figures", "## Cold start phases", "Lambda CPU share"):
        assert heading in text
    assert "| figure | median | p90 | p99 | unit |" in text
    assert "| retail |" in text
    assert "faiss HNSW (M=32" in text
    assert "faiss IVFFlat (" in text
    assert "served / best peer at recall >= 0.99" in text


def test_callables_take_turns_in_blocks_and_each_is_timed_repeat_times() -> None:
    from recsys_tools.bench.timing import time_interleaved

    order: list[tuple[str, int]] = []
    samples = time_interleaved(
        {"a": lambda i: order.append(("a", i)), "b": lambda i: order.append(("b", i))}, repeat=5, warmup=1, block=2
    )
    assert {name: len(times) for name, times in samples.items()} == {"a": 5, "b": 5}
    assert order[2:] == [
        ("a", 0),
        ("a", 1),
        ("b", 0),
        ("b", 1),
        ("a", 2),
        ("a", 3),
        ("b", 2),
        ("b", 3),
        ("a", 4),
        ("b", 4),
    ]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], ("infra/bench/results.json", "infra/bench/results.md")),
        (
            ["--only", "batch", "--only", "handlers", "--only", "batch"],
            (
                "infra/bench/runs/2026-12-01-0651-batch-handlers.json",
                "infra/bench/runs/2026-12-01-0651-batch-handlers.md",
            ),
        ),
        (["--quick"], ("infra/bench/runs/2026-12-01-0651-quick.json", "infra/bench/runs/2026-12-01-0651-quick.md")),
        (["--only", "batch", "--out", "elsewhere"], ("elsewhere/results.json", "elsewhere/results.md")),
    ],
)
def test_a_partial_run_never_replaces_the_full_runs_results(flags: list[str], expected: tuple[str, str]) -> None:
    import argparse
    from datetime import UTC, datetime, timedelta, timezone

    from recsys.settings import REPO_ROOT
    from recsys_tools.bench import add_arguments, destination

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(flags)
    at = datetime(2026, 12, 1, 6, 51, tzinfo=UTC).astimezone(timezone(timedelta(hours=-5)))  # named in UTC
    paths = destination(args, at)
    assert paths == tuple(Path(path) if path.startswith("elsewhere") else REPO_ROOT / path for path in expected)
