"""`recsys bench`: measure the service on this machine and write infra/bench/results.json and results.md (a full run)
or infra/bench/runs/<UTC time>-<sections>.json and .md (a partial one: ``--only``, ``--quick``), unless ``--out``.

Sections: retrieval through the SavedModel signatures (ScaNN vs exact, recall@10) on the current model and on
synthetic catalogues of 100k and 1M products; the Python wrapper and the update path's scoring; warm Lambda handlers
end to end (DynamoDB under moto, DynamoDB replayed, an in-memory store); cold starts in fresh interpreters, also
under a CPU quota of each function's Lambda CPU share (``cold_start_share``: where a cgroup quota can be set); batch
generation; the serving dependencies' installed size. Heavy modules are imported by the sections, not here.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.settings import REPO_ROOT, Settings

DEFAULT_OUT = REPO_ROOT / "infra" / "bench"  # a full run's results.json and results.md, the committed figures
PARTIAL_OUT = DEFAULT_OUT / "runs"  # a partial run's, named by time and sections (so it never replaces a full run's)
DEFAULT_EMBEDDING_DIM = 64
SECTIONS = (
    "footprint",
    "cold_start",
    "cold_start_share",
    "retrieval",
    "wrapper",
    "batch",
    "batch_store",
    "handlers",
    "synthetic",
)


@dataclass(frozen=True)
class Sizes:
    repeat: int  # timed calls per figure (retail, wrappers)
    warmup: int
    synthetic_products: tuple[int, ...]
    synthetic_customers: int
    synthetic_repeat: tuple[int, ...]  # per synthetic catalogue: exact search on 1M products is slow
    recall_customers: int
    handler_repeat: int
    cold_repeat: int
    batch_repeat: int
    single_customers: int  # customers in the one-per-call generation loop
    batch_store_customers: int | None  # customers in the end-to-end batch run against moto's server (None: all)
    cold_operations: tuple[str, ...] | None = None  # functions whose cold start is measured (None: all)


FULL = Sizes(
    repeat=2000,
    warmup=100,
    synthetic_products=(100_000, 1_000_000),
    synthetic_customers=1000,
    synthetic_repeat=(1000, 300),
    recall_customers=200,
    handler_repeat=300,
    cold_repeat=9,
    batch_repeat=5,
    single_customers=1000,
    batch_store_customers=None,
)
QUICK = Sizes(
    repeat=50,
    warmup=5,
    synthetic_products=(2_000, 5_000),
    synthetic_customers=200,
    synthetic_repeat=(30, 30),
    recall_customers=50,
    handler_repeat=20,
    cold_repeat=1,
    batch_repeat=1,
    single_customers=50,
    batch_store_customers=300,
    cold_operations=("customer_recommendations", "show_recommendations"),  # one with the model, one without
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        help="directory for results.json and results.md (default: infra/bench for a full run; a partial run, --only or "
        "--quick, writes infra/bench/runs/<UTC time>-<sections>.json and .md)",
    )
    parser.add_argument("--model-dir", type=Path, help="model artifact to measure (default: the current model)")
    parser.add_argument("--quick", action="store_true", help="small catalogues, few repetitions (a smoke test)")
    parser.add_argument("--skip-1m", action="store_true", help="leave out the largest synthetic catalogue")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only this section (repeatable)")
    parser.add_argument(
        "--batch-customers", type=int, help="batch_store: the first N retail customers only (default: all; --quick 300)"
    )


def _label(products: int) -> str:
    return f"synthetic_{products // 1_000_000}m" if products % 1_000_000 == 0 else f"synthetic_{products // 1000}k"


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces the run (from the parsed flags: `cli.main` may be given its own argv)."""
    words = ["recsys", "bench", *(["--quick"] if args.quick else []), *(["--skip-1m"] if args.skip_1m else [])]
    words += [word for section in args.only or () for word in ("--only", section)]
    words += ["--model-dir", str(args.model_dir)] if args.model_dir else []
    words += ["--batch-customers", str(args.batch_customers)] if args.batch_customers else []
    words += ["--out", str(args.out)] if args.out else []
    return shlex.join(words)


def destination(args: argparse.Namespace, now: datetime) -> tuple[Path, Path]:
    """Where the run's JSON and markdown go: ``--out``'s results.json and results.md; without it a full run's go to
    DEFAULT_OUT, a partial run's to PARTIAL_OUT, named by ``now`` (UTC) and what ran."""
    if args.out or not (args.only or args.quick):
        stem: Path = (args.out or DEFAULT_OUT) / "results"
    else:
        label = "-".join([*dict.fromkeys(args.only or ()), *(["quick"] if args.quick else [])])
        stem = PARTIAL_OUT / f"{now.astimezone(UTC):%Y-%m-%d-%H%M}-{label}"
    return stem.with_suffix(".json"), stem.with_suffix(".md")


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _synthetic(results: dict[str, Any], sizes: Sizes, dim: int, skip_largest: bool) -> None:
    from recsys_tools.bench.retrieval import retrieval
    from recsys_tools.bench.synthetic import build_artifact

    catalogues = list(zip(sizes.synthetic_products, sizes.synthetic_repeat, strict=True))
    for products, repeat in catalogues[:-1] if skip_largest else catalogues:
        with tempfile.TemporaryDirectory(prefix="recsys-bench-") as tmp:
            _log(f"exporting a synthetic catalogue of {products:,} products")
            workload = build_artifact(Path(tmp), products, sizes.synthetic_customers, dim)
            _log(f"retrieval on {products:,} products")
            results["retrieval"][_label(products)] = retrieval(
                Path(tmp), workload, repeat=repeat, warmup=sizes.warmup, recall_customers=sizes.recall_customers
            )


def run(args: argparse.Namespace) -> int:
    from recsys.artifact import Artifact
    from recsys_tools.bench import environment, report

    sizes = QUICK if args.quick else FULL
    model_dir: Path = args.model_dir or Settings().resolved_model_dir()
    model = Artifact(model_dir)
    wanted = set(args.only or SECTIONS)
    dim = int(model.manifest.get("embedding_dim", DEFAULT_EMBEDDING_DIM))
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "command": _command(args),
        "generated_at": started.isoformat(timespec="seconds"),
        "machine": environment.machine(),
        "versions": environment.versions(),
        "model": {
            "version": model.version,
            "products": len(model.catalogue),
            "embedding_dim": dim,
        },
        "sizes": asdict(sizes),
        "retrieval": {},
    }
    if "footprint" in wanted:
        results["footprint"] = environment.serving_footprint()
    if "cold_start" in wanted:  # first, while this process is still small
        from recsys_tools.bench.coldstart import cold_starts

        _log(f"cold starts ({sizes.cold_repeat} rounds)")
        results["cold_start"] = cold_starts(
            model_dir, repeat=sizes.cold_repeat, operations=sizes.cold_operations, concurrent=args.quick
        )
    if "cold_start_share" in wanted:
        from recsys_tools.bench.coldstart import cold_starts_at_lambda_share

        _log(f"cold starts at each function's Lambda CPU share ({sizes.cold_repeat} rounds)")
        results["cold_start_share"] = cold_starts_at_lambda_share(
            model_dir, repeat=sizes.cold_repeat, operations=sizes.cold_operations
        )
        if "skipped" in results["cold_start_share"]:
            _log(f"cold starts at the Lambda CPU share skipped: {results['cold_start_share']['skipped']}")
    if wanted & {"retrieval", "wrapper", "batch", "batch_store"}:
        from recsys_tools.bench import retrieval

        _log("customers' histories from the shipped data")
        workload = retrieval.retail_workload()
        results["model"]["customers"] = len(workload.histories)
        if "retrieval" in wanted:
            _log("retrieval on the current model")
            results["retrieval"]["retail"] = retrieval.retrieval(
                model_dir, workload, repeat=sizes.repeat, warmup=sizes.warmup, recall_customers=sizes.recall_customers
            )
        if "wrapper" in wanted:
            _log("Recommender.recommend / score")
            results["wrapper"] = retrieval.wrapper(model_dir, workload, repeat=sizes.repeat, warmup=sizes.warmup)
        if "batch" in wanted:
            _log("batch generation")
            results["batch"] = retrieval.batch_generation(
                model_dir, workload, repeat=sizes.batch_repeat, single_customers=sizes.single_customers
            )
        if "batch_store" in wanted:
            from recsys_tools.bench.batch_store import batch_end_to_end

            customers = args.batch_customers or sizes.batch_store_customers
            _log(f"batch generation end to end against moto's server ({customers or 'all'} customers)")
            results["batch_store"] = batch_end_to_end(model_dir, workload.histories[:customers], workload.now)
    if "handlers" in wanted:
        from recsys_tools.bench.handlers import warm_handlers

        _log("warm handlers")
        results["handlers"] = warm_handlers(model_dir, repeat=sizes.handler_repeat, warmup=sizes.warmup)
    if "synthetic" in wanted:
        _synthetic(results, sizes, dim, args.skip_1m)
    results["targets"] = report.evaluate_targets(results)
    json_path, markdown_path = destination(args, started)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    text = report.markdown(results)
    markdown_path.write_text(text, encoding="utf-8")
    print(text)
    _log(f"wrote {json_path} and {markdown_path.name}")
    return 0
