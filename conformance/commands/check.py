"""``conformance check MODEL.onnx``: gate a user's exported model; exit 0 pass, 1 fail, 2 bad input."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from conformance.commands.options import integers, number
from conformance.commands.output import add_report_options
from exporters.errors import BadInputError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="gate a user's exported LSTM ONNX model against the float64 reference",
        description="Recover the weights from MODEL's LSTM initializers (or take the trained ones from --weights), "
        "run MODEL on every available ONNX runtime at several sequence lengths and batch sizes, and compare "
        "every output with the float64 reference.",
    )
    p.add_argument("model", type=Path, help="the ONNX model to check")
    p.add_argument("--weights", type=Path, help="trained weights: .npz (reference.weights.save) or a PyTorch "
                   "checkpoint (state_dict, loaded with weights_only=True)")  # fmt: skip
    p.add_argument("--inputs", type=Path, action="append", default=[],
                   help=".npz (keys = input names) or a folder of ONNX test-data input_N.pb (repeatable)")  # fmt: skip
    p.add_argument("--seq-lens", type=integers, default=None, help="sequence lengths to try (default 1,7,16)")
    p.add_argument("--batches", type=integers, default=None, help="batch sizes to try (default 1,3)")
    p.add_argument("--runtime", action="append", metavar="ID", help="only these runtimes (default: all ONNX runtimes)")
    p.add_argument("--atol", type=number(inclusive=True), help="absolute tolerance (with --rtol; default per dtype)")
    p.add_argument("--rtol", type=number(inclusive=True), help="relative tolerance (with --atol)")
    p.add_argument(
        "--against-torch",
        metavar="MODULE:ATTR",
        help="compare with your PyTorch module instead of the reference (for graphs check cannot map)",
    )
    add_report_options(p)


def main(args: argparse.Namespace) -> int:
    from conformance import check
    from conformance.diffs import Tolerance

    if (args.atol is None) != (args.rtol is None):
        raise BadInputError("--atol and --rtol are given together")
    tolerance = Tolerance(args.atol, args.rtol) if args.atol is not None else None
    seq_lens, batches = args.seq_lens or check.DEFAULT_SEQ_LENS, args.batches or check.DEFAULT_BATCHES
    if args.against_torch:
        return _against_torch(args, seq_lens, batches, tolerance)
    options = check.CheckOptions(
        seq_lens=seq_lens,
        batches=batches,
        runtimes=args.runtime,
        tolerance=tolerance,
        weights=args.weights,
        inputs=args.inputs,
    )
    report = check.run_check(args.model, options)
    causes = check.diagnose(report)
    return _render(args, report.results, report.seconds, causes=causes, notes=report.notes, header=_header(report))


def _against_torch(args: argparse.Namespace, seq_lens: Any, batches: Any, tolerance: Any) -> int:
    from conformance import check
    from conformance.against_torch import against_torch

    start = time.perf_counter()
    runtimes = args.runtime or [r for r in check.onnx_runtime_ids() if r != "onnx-reference"]
    results = against_torch(
        args.model, args.against_torch, seq_lens=seq_lens, batches=batches, runtimes=runtimes, tolerance=tolerance
    )
    return _render(args, results, time.perf_counter() - start, against=args.against_torch)


def _render(
    args: argparse.Namespace,
    results: list[Any],
    seconds: float,
    *,
    causes: list[str] | None = None,
    notes: list[str] | None = None,
    header: str | None = None,
    against: str | None = None,
) -> int:
    from conformance import environment
    from conformance.commands.output import argv, console, print_summary, report_files, write_reports
    from conformance.records import ResultDocument
    from conformance.status import exit_code

    run = {
        "command": "check",
        "model": str(args.model),
        "causes": causes or [],
        "notes": notes or [],
        "against_torch": against,
        "wall_seconds": round(seconds, 3),
        "argv": argv(),
    }
    document = ResultDocument.of(results, run=run, environment=environment.collect())
    screen = console()
    if header:
        screen.print(header)
    for note in notes or []:
        screen.print(f"note: {note}", style="yellow")
    count = len(results)
    title = (
        f"check{f' against {against}' if against else ''}: {count} lane{'s' if count != 1 else ''} in {seconds:.2f} s"
    )
    print_summary(document, title=title, out=screen)  # names the likely causes (run["causes"]) too
    written = write_reports(document, report_files(args))
    if written:
        screen.print(f"reports: {', '.join(written)}")
    return exit_code(r.status for r in results)


def _header(report: Any) -> str:
    config = report.config
    lstm = config.lstm if hasattr(config, "lstm") else config
    kind = f"language model (vocab {config.vocab_size}) over " if hasattr(config, "vocab_size") else ""
    return (
        f"{report.model}: {kind}{lstm.num_layers}-layer {lstm.direction} LSTM, input {lstm.input_size}, "
        f"hidden {lstm.hidden_size}, {'batch-first' if report.interface.batch_first else 'time-major'}; "
        f"outputs {', '.join(f'{n} ({r})' for n, r in report.interface.outputs.items())}"
    )
