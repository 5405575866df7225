"""The ``cni-metrics`` command line: the library's jobs, run by hand to diagnose a cluster."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cni_metrics import __version__

# Each subcommand lives in its own module exposing ``register(subparsers)``; the parser it adds sets
# ``func`` (args -> exit code).
_SUBCOMMANDS = ("aggregate", "collect", "dashboard")


def plain(text: str | None) -> str | None:
    """Docstring text as a terminal should show it: the ``literal`` markup taken off."""
    return text.replace("``", "") if text else text


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="cni-metrics", description=plain(__doc__))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in _SUBCOMMANDS:
        importlib.import_module(f"cni_metrics.cli.{name}").register(subparsers)
    for subparser in subparsers.choices.values():
        subparser.description = plain(subparser.description)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
