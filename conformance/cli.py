"""The ``conformance`` command line. Heavy imports stay inside the subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from conformance import __version__

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conformance",
        description=(
            "Check that LSTM models exported to ONNX compute what the model computes: "
            "against a float64 NumPy reference, on every runtime and execution provider."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stdout)
        return EXIT_USAGE
    return EXIT_OK  # pragma: no cover - every subcommand returns from its own handler
