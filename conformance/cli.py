"""The ``conformance`` command line. Subcommand handlers (and heavy imports) load only when used."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from conformance import __version__

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run a conformance suite on every exporter and runtime")
    p.add_argument("--suite", action="append", help="suite name or TOML path (repeatable; default: smoke)")
    p.add_argument("-k", dest="select", metavar="EXPR", help="select cases by substring expression (and/or/not)")
    p.add_argument("--runtime", action="append", metavar="ID", help="only these runtimes (repeatable; globs allowed)")
    p.add_argument("--exporter", action="append", metavar="ID", help="only these exporters (repeatable; globs allowed)")
    p.add_argument("--out", metavar="DIR", help="result folder (default: conformance-results/<suite>)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1; latency wants 1)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per lane before it is killed (default 300)")
    p.add_argument("--no-cache", action="store_true", help="export again instead of using the export cache")
    p.add_argument("--resume", metavar="DIR", help="continue an interrupted run in DIR without redoing finished lanes")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--no-latency", action="store_true", help="check accuracy only; do not time the lanes")
    timing.add_argument("--latency-only", action="store_true", help="time the lanes; do not check accuracy")
    p.add_argument("--latency-budget", type=float, default=0.2, metavar="S",
                   help="seconds of timed repetitions per lane at most (default 0.2)")  # fmt: skip
    p.add_argument("--show-latency", action="store_true", help="print a latency table per case")
    p.add_argument(
        "--baseline", default="ort-cpu", metavar="RUNTIME", help="latency speed-up baseline (default ort-cpu)"
    )
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    p.add_argument("--markdown", metavar="FILE", help="also write a Markdown report (e.g. $GITHUB_STEP_SUMMARY)")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")


def _add_list(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("list", help="list suites, cases, exporters and runtimes with their availability")
    p.add_argument("what", nargs="?", choices=["suites", "cases", "exporters", "runtimes"], help="one section only")
    p.add_argument("--suite", action="append", help="suite(s) whose cases to list (default: all)")
    p.add_argument("-k", dest="select", metavar="EXPR", help="select cases by substring expression")


def _add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        help="write a model + reference test data folder (ONNX backend test layout)",
        description="Export one case's model with one exporter into a self-contained folder: model.onnx and "
        "test_data_set_0/input_*.pb, output_*.pb holding the float64 reference outputs (as float32).",
    )
    p.add_argument("case", help="case id (see `conformance list cases`)")
    p.add_argument("--suite", action="append", help="suite(s) to look the case up in (default: all packaged)")
    p.add_argument("--exporter", default="onnx-native", help="exporter id (default onnx-native)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--no-cache", action="store_true", help="export again instead of using the export cache")


def _lazy(module: str) -> Any:
    """A parser-adder that lives in the (light) command module itself."""
    return lambda sub: importlib.import_module(module).add_parser(sub)


COMMANDS = {
    "run": ("conformance.commands.run", _add_run),
    "list": ("conformance.commands.listing", _add_list),
    "export": ("conformance.commands.export", _add_export),
    "check": ("conformance.commands.check", _lazy("conformance.commands.check")),
    "selftest": ("conformance.commands.selftest", _lazy("conformance.commands.selftest")),
    "report": ("conformance.commands.report", _lazy("conformance.commands.report")),
    "compare": ("conformance.commands.compare", _lazy("conformance.commands.compare")),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conformance",
        description=(
            "Check that LSTM models exported to ONNX compute what the model computes: "
            "against a float64 NumPy reference, on every runtime and execution provider."
        ),
        epilog="exit codes: 0 all pass (expected divergences allowed), 1 conformance failure, 2 bad input",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _, add in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stdout)
        return EXIT_USAGE
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        code: int = module.main(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ValueError as exc:  # bad input: case files, ids, models, shapes
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if args.debug:
            raise
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}".replace("error: : ", "error: "), file=sys.stderr)
        return EXIT_USAGE
    return code
