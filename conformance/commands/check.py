"""``conformance check MODEL.onnx``: gate a user's exported model; exit 0 pass, 1 fail, 2 bad input."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


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
    p.add_argument("--seq-lens", type=_ints, default=None, help="sequence lengths to try (default 1,7,16)")
    p.add_argument("--batches", type=_ints, default=None, help="batch sizes to try (default 1,3)")
    p.add_argument("--runtime", action="append", metavar="ID", help="only these runtimes (default: all ONNX runtimes)")
    p.add_argument("--atol", type=float, help="absolute tolerance (with --rtol; default per dtype)")
    p.add_argument("--rtol", type=float, help="relative tolerance (with --atol)")
    p.add_argument(
        "--against-torch",
        metavar="MODULE:ATTR",
        help="compare with your PyTorch module instead of the reference (for graphs check cannot map)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from conformance import check
    from conformance.compare import Tolerance
    from conformance.interface import InterfaceError
    from exporters.importers import ModelImportError

    if (args.atol is None) != (args.rtol is None):
        raise ValueError("--atol and --rtol are given together")
    if args.against_torch:
        from conformance.against_torch import run_against_torch

        return run_against_torch(args)
    options = check.CheckOptions(
        seq_lens=args.seq_lens or check.DEFAULT_SEQ_LENS,
        batches=args.batches or check.DEFAULT_BATCHES,
        runtimes=args.runtime or check.DEFAULT_RUNTIMES,
        tolerance=Tolerance(args.atol, args.rtol) if args.atol is not None else None,
        weights=args.weights,
        inputs=args.inputs,
    )
    try:
        report = check.run_check(args.model, options)
    except (ModelImportError, InterfaceError) as exc:
        if isinstance(exc, InterfaceError) or "no LSTM node" in str(exc) or "computed at run time" in str(exc):
            raise ValueError(
                f"{args.model}: cannot map the graph to an LSTM stack or language model ({exc}); "
                f"compare against your PyTorch module instead: conformance check {args.model} --against-torch "
                "package.module:attr"
            ) from None
        raise
    causes = check.diagnose(report)
    console = Console()
    _print(report, causes, console)
    if args.json:
        from conformance import environment
        from reports import json_report

        run = {"command": "check", "model": str(args.model), "causes": causes, "notes": report.notes}
        document = json_report.payload(report.results, environment=environment.collect(), run=run)
        json_report.write_atomic(args.json, document)
    if report.checked_nothing:
        console.print("nothing was checked: every lane was skipped (see the reasons above)", style="bold red")
        return 1
    return 1 if report.failed else 0


def _print(report: Any, causes: list[str], console: Any) -> None:
    from reports import console as console_report

    config = report.config
    lstm = config.lstm if hasattr(config, "lstm") else config
    kind = f"language model (vocab {config.vocab_size}) over " if hasattr(config, "vocab_size") else ""
    console.print(
        f"{report.model}: {kind}{lstm.num_layers}-layer {lstm.direction} LSTM, input {lstm.input_size}, "
        f"hidden {lstm.hidden_size}, {'batch-first' if report.interface.batch_first else 'time-major'}; "
        f"outputs {', '.join(f'{n} ({r})' for n, r in report.interface.outputs.items())}"
    )
    for note in report.notes:
        console.print(f"note: {note}", style="yellow")
    console.print(
        console_report.summary_table(
            report.results, title=f"check: {len(report.results)} lanes in {report.seconds:.2f} s"
        )
    )
    part = console_report.failures(report.results)
    if part is not None:
        console.print(part)
    skipped = console_report.skipped(report.results)
    if skipped is not None:
        console.print(skipped)
    if causes:
        console.print("Likely cause(s):", style="bold red")
        for cause in causes:
            console.print(f"  - {cause}")
    if report.failed or report.checked_nothing:
        console.print("FAIL" if report.failed else "NOTHING CHECKED", style="bold red")
    else:
        console.print("PASS", style="bold green")
