"""``conformance repro``: a diverging lane as a self-contained folder for an upstream bug report.

``conformance repro LANE_ID --out DIR`` (``--results RESULTS.json`` or ``--suite NAME``) writes one folder;
``conformance repro --all-distinct RESULTS.json --out-root DIR`` writes one per distinct divergence.
Exit 0 when written, 1 when the lane does not diverge now, 2 on bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from conformance.commands.options import number

DEFAULT_TIMEOUT = 120.0  # seconds per run of the model; conformance.repro.worker.DEFAULT_TIMEOUT


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "repro",
        help="turn a diverging lane into a minimal, self-contained folder for an upstream bug report",
        description="Run a diverging lane again, minimise it to the smallest model that still diverges on its "
        "runtime (one LSTM node where possible) and write model.onnx, inputs.npz, expected.npz, actual.npz, "
        "repro.py (the runtime's own package and NumPy only), versions.json and README.md. Exit 1 when the "
        "lane does not diverge now.",
    )
    p.add_argument("lane", nargs="?", metavar="LANE_ID",
                   help="CASE/EXPORTER/RUNTIME (a lane id of results.json) or SUITE/CASE/EXPORTER/RUNTIME")  # fmt: skip
    p.add_argument("--out", metavar="DIR", help="the folder to write (must not exist, or be empty)")
    p.add_argument("--results", metavar="RESULTS", help="the results.json the lane diverged in")
    p.add_argument("--suite", metavar="NAME", help="the suite to plan the lane from (default: the id's, or "
                   "the packaged suite that has it)")  # fmt: skip
    p.add_argument("--all-distinct", metavar="RESULTS", help="one folder per distinct divergence of RESULTS")
    p.add_argument("--out-root", metavar="DIR", help="with --all-distinct: where the folders go")
    p.add_argument("--runtime", action="append", metavar="GLOB",
                   help="with --all-distinct: only lanes on these runtimes (repeatable)")  # fmt: skip
    p.add_argument("--no-minimise", action="store_true", help="write the lane's own model, not a minimised one")
    p.add_argument("--timeout", type=number(maximum=3600), default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"seconds one run of a model may take (default {DEFAULT_TIMEOUT:g})")  # fmt: skip


def _usage(args: argparse.Namespace) -> str | None:
    """What is wrong with the combination of options, or None."""
    if args.all_distinct is None:
        if args.lane is None:
            return "give a LANE_ID (or --all-distinct RESULTS)"
        if args.out is None:
            return "LANE_ID needs --out DIR"
        if args.out_root is not None or args.runtime:
            return "--out-root and --runtime go with --all-distinct"
        if args.results is not None and args.suite is not None:
            return "--results and --suite exclude each other: the record names the suite"
        return None
    if args.lane is not None or args.out is not None or args.results is not None or args.suite is not None:
        return "--all-distinct takes no LANE_ID, --out, --results or --suite (it reads every lane of RESULTS)"
    if args.out_root is None:
        return "--all-distinct needs --out-root DIR"
    return None


def main(args: argparse.Namespace) -> int:
    from exporters.errors import BadInputError

    problem = _usage(args)
    if problem:
        raise BadInputError(f"repro: {problem}")
    if args.all_distinct is not None:
        return _all_distinct(args)
    from conformance.files import load_document
    from conformance.repro import NoDivergenceError, Worker, from_results, from_suite, refuse_overwrite, reproduce

    out = Path(args.out)
    refuse_overwrite(out, "--out")
    if args.results is not None:
        results = Path(args.results)
        target = from_results(args.lane, load_document(results), results)
    else:
        target = from_suite(args.lane, args.suite)
    with Worker(timeout=args.timeout) as worker:
        try:
            reproduction, printed = reproduce(target, worker, out, shrink=not args.no_minimise)
        except NoDivergenceError as exc:
            print(str(exc))
            return 1
    _report(out, reproduction, printed)
    return 0


def _report(out: Path, reproduction: Any, printed: str) -> None:
    from conformance.repro.readme import headline

    trial = reproduction.minimised.trial
    steps = len(reproduction.minimised.steps)
    print(f"wrote {out}/: {headline(reproduction.target.runtime, trial).replace('`', '')}")
    print(f"  from {reproduction.target.id}: {reproduction.original.summary()}")
    runs = reproduction.minimised.trials
    print(f"  minimised in {runs} runs ({steps} steps kept)" if runs else "  not minimised (--no-minimise)")
    print(f"  cd {out} && python repro.py  # printed here:")
    for line in printed.splitlines()[:8]:
        print(f"    {line}")


def _all_distinct(args: argparse.Namespace) -> int:
    from conformance.files import load_document
    from conformance.repro import Worker, refuse_overwrite
    from conformance.repro.distinct import reproduce_all

    results = Path(args.all_distinct)
    root = Path(args.out_root)
    refuse_overwrite(root, "--out-root")
    document = load_document(results)
    with Worker(timeout=args.timeout) as worker:
        outcome = reproduce_all(
            document, results, root, worker, runtimes=args.runtime, shrink=not args.no_minimise, notice=print
        )
    return 1 if outcome.stale else 0
