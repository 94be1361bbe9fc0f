"""`recsys evaluate` on the command line: its flags (no pandas, no TensorFlow, so ``--help`` is quick) and ``run``,
which imports ``recsys_tools.training.evaluate`` to do the work."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

from recsys import artifact
from recsys_tools.training.params import VARIANTS, TrainParams
from recsys_tools.training.train_cli import add_data_arguments, configure_logging, load_data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--model-dir", type=Path, help="artifact whose parameters are evaluated (default: current)")
    parser.add_argument(
        "--variants", nargs="*", default=[], help="also train these named variants (see VARIANTS in params.py; 'all')"
    )
    parser.add_argument("--reports-dir", type=Path, help="default: <artifacts root>/reports")
    parser.add_argument(
        "--readme-table",
        nargs="+",
        type=Path,
        metavar="EVALUATION_JSON",
        help="only print the README's model table (markdown) from these evaluation.json files, one per split date; "
        "nothing is trained",
    )


def stored_params(model_dir: Path | None, artifacts_root: Path) -> TrainParams:
    """The parameters of ``model_dir`` (default: the current artifact, if any) over the defaults."""
    params = TrainParams()
    if model_dir is None and (artifacts_root / artifact.CURRENT).exists():
        model_dir = artifacts_root / (artifacts_root / artifact.CURRENT).read_text().strip()
    if model_dir is None:
        return params
    stored = artifact.Artifact(model_dir).manifest["parameters"]
    return replace(params, **{f.name: stored[f.name] for f in fields(TrainParams) if f.name in stored})


def run(args: argparse.Namespace) -> int:
    from recsys_tools.training.evaluate import evaluate_all, readme_table, report_header, write_report

    if args.readme_table:
        print(readme_table(args.readme_table))
        return 0
    from recsys_tools.training.data import features_used

    configure_logging()
    purchases, _, cleaning = load_data(args)
    params, _ = features_used(purchases, stored_params(args.model_dir, args.artifacts_root), cleaning)
    names = list(VARIANTS) if args.variants == ["all"] else args.variants
    evaluation = evaluate_all(purchases, args.split_date, params, {n: VARIANTS[n] for n in names})
    header = report_header(len(purchases), args.split_date, params)
    path = write_report(args.reports_dir or args.artifacts_root / "reports", evaluation, header)
    print(path)
    return 0
