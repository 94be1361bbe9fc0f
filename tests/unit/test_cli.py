"""`recsys` command line: the help of every subcommand is answered without importing TensorFlow or pandas."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from recsys_tools.cli import SUBCOMMANDS

HEAVY = ("tensorflow", "pandas")
OWN_FLAG = {  # one per command
    "train": "--epochs",
    "evaluate": "--variants",
    "import-history": "--replace",
    "serve": "--port",
    "batch": "--popular-for-unknown",
    "bench": "--quick",
}

# in a fresh interpreter: ask for the help, print it, then (last line) which heavy modules were imported
CHILD = textwrap.dedent(
    """
    import json, sys
    from recsys_tools.cli import main
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
    print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in {heavy})))
    """
).format(heavy=set(HEAVY))


def _help(*command: str) -> tuple[str, list[str]]:
    """The help text of ``recsys <command> --help`` and the heavy modules it imported, in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", CHILD, *command, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text, _, imported = done.stdout.rstrip().rpartition("\n")
    return text, json.loads(imported)


def test_every_subcommand_is_checked() -> None:
    assert set(OWN_FLAG) == set(SUBCOMMANDS)


def test_recsys_help_imports_neither_tensorflow_nor_pandas() -> None:
    text, imported = _help()
    assert imported == []
    assert text.startswith("usage: recsys")
    assert all(name in text for name in SUBCOMMANDS)


@pytest.mark.parametrize("command", sorted(OWN_FLAG))
def test_subcommand_help_imports_neither_tensorflow_nor_pandas(command: str) -> None:
    text, imported = _help(command)
    assert imported == []
    assert text.startswith(f"usage: recsys {command}")
    assert OWN_FLAG[command] in text  # the subcommand's own flags were added
