"""`recsys` command line: train | evaluate | import-history | serve | batch | bench.

Subcommands import heavy modules lazily."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> module exposing `add_arguments(parser)` and `run(args) -> int`
SUBCOMMANDS = {
    "train": ("recsys_tools.training.train_cli", "train, evaluate and export a model; mark it current"),
    "evaluate": ("recsys_tools.training.evaluate_cli", "time-split evaluation of a model against baselines"),
    "import-history": ("recsys_tools.import_history", "seed the purchase histories in DynamoDB from a purchase CSV"),
    "serve": ("recsys_tools.serve", "run the API locally on an embedded DynamoDB"),
    "batch": ("recsys_tools.batch", "regenerate every customer's list with a model (resumable)"),
    "bench": ("recsys_tools.bench", "run the benchmarks and write a results file"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    wanted = (list(argv) if argv is not None else sys.argv[1:])[:1]
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        if wanted == [name]:  # only the chosen subcommand's module is imported
            importlib.import_module(module_name).add_arguments(sub)
    args = parser.parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    return int(module.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
