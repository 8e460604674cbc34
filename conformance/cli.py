"""The ``conformance`` command line. Subcommand handlers (and heavy imports) load only when used.

Every command module has ``add_parser(sub)`` and ``main(args) -> int``; its module level imports nothing
heavy, so building the parser stays fast. Exit codes come from exception *types*, never message text:
:class:`~exporters.errors.BadInputError` and unreadable files are bad input (2); anything else is an
internal error (3), printed as one line unless ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from conformance import __version__
from conformance.status import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED
from exporters.errors import BadInputError

COMMANDS = ("run", "list", "export", "check", "report", "compare", "selftest", "repro", "merge")
_MODULES = {"list": "conformance.commands.listing"}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``error: ...``) and exit code 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _module(command: str) -> str:
    return _MODULES.get(command, f"conformance.commands.{command}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="conformance",
        description=(
            "Check that LSTM models exported to ONNX compute what the model computes: "
            "against a float64 NumPy reference, on every runtime and execution provider."
        ),
        epilog="exit codes: 0 all pass (expected divergences allowed), 1 conformance failure, 2 bad input, "
        "3 internal error",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        importlib.import_module(_module(command)).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    if args.command is None:
        parser.print_help(sys.stdout)
        return EXIT_BAD_INPUT
    try:
        code: int = importlib.import_module(_module(args.command)).main(args)
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM where a command handles it (stopping.Terminated)
        from conformance.stopping import exit_code

        print("interrupted", file=sys.stderr)
        return exit_code(stop) or EXIT_INTERRUPTED
    except BadInputError as exc:
        if args.debug:
            raise
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a file the user named cannot be read or written
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (MemoryError, RecursionError) as exc:
        if args.debug:
            raise
        print(f"error: input too large or nested too deeply ({type(exc).__name__}); refused", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"internal error: {type(exc).__name__}: {_one_line(str(exc))} "
            "(a bug; rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return code


def _one_line(text: str, limit: int = 2000) -> str:
    """The message as one line of printable text: control characters shown, not obeyed; long text cut."""
    from reports.text import safe

    return safe(" ".join(text.split("\n")), limit)
