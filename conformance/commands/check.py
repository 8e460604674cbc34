"""``conformance check MODEL.onnx``: gate a user's exported model; exit 0 pass, 1 fail, 2 bad input."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from conformance.commands.options import add_ep_library, apply_ep_libraries, integer, integers, number, size
from conformance.commands.output import add_report_options
from exporters.errors import BadInputError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="gate any ONNX model with LSTM nodes against the float64 reference",
        description="Find every LSTM node of MODEL (If branches, Loop and Scan bodies and functions included), "
        "run MODEL on every available ONNX runtime at several input sizes, and judge each node at the tensors "
        "it really received, and the whole model, against the float64 reference. Exit 0 pass, 1 fail, "
        "2 bad input.",
    )
    p.add_argument("model", type=Path, help="the ONNX model to check")
    p.add_argument("--weights", type=Path, help="trained weights: a PyTorch state_dict (.pt, read without "
                   "torch) or an .npz (reference.weights.save); each LSTM node is held against them")  # fmt: skip
    p.add_argument("--inputs", type=Path, action="append", default=[],
                   help=".npz (keys = input names) or a folder of ONNX test-data input_N.pb (repeatable)")  # fmt: skip
    p.add_argument("--dim", action="append", default=[], metavar="NAME=N[,N...]",
                   help="sizes of a symbolic dim (an unnamed one as INPUT:AXIS=N); several values, several "
                   "shapes (repeatable; default: probed, LSTM sequence 1,7,16 and batch 1,3)")  # fmt: skip
    p.add_argument("--feed", action="append", default=[], metavar="NAME=VALUE",
                   help="feed input NAME a constant (a number, true/false) or an array (NAME=path.npy) "
                   "instead of synthesized values (repeatable)")  # fmt: skip
    p.add_argument("--stream", type=integer(minimum=1, maximum=10_000), default=0, metavar="N",
                   help="also run N steps feeding each state output back into its state input; report the "
                   "error growth per step")  # fmt: skip
    p.add_argument("--state", action="append", default=[], metavar="OUT=IN",
                   help="with --stream: output OUT is fed back as input IN (repeatable; default: guessed "
                   "from names and shapes, and the guess is printed)")  # fmt: skip
    p.add_argument("--timeout", type=number(maximum=86400), default=300.0, metavar="S",
                   help="seconds per runtime before its worker process is killed (default 300)")  # fmt: skip
    p.add_argument("--max-memory", type=size, default="2G", metavar="SIZE",
                   help="the largest model tensor or weights file read (default 2G); the inputs of one run "
                   "may take 1/32 of it; larger ones are refused before they are read")  # fmt: skip
    p.add_argument("--seq-lens", type=integers, default=None,
                   help="LSTM sequence lengths the probed dims aim at (default 1,7,16)")  # fmt: skip
    p.add_argument("--batches", type=integers, default=None,
                   help="batch sizes the probed dims aim at (default 1,3)")  # fmt: skip
    p.add_argument("--runtime", action="append", metavar="ID", help="only these runtimes (default: all ONNX runtimes)")
    p.add_argument("--atol", type=number(inclusive=True), help="absolute tolerance (with --rtol; default per dtype)")
    p.add_argument("--rtol", type=number(inclusive=True), help="relative tolerance (with --atol)")
    p.add_argument(
        "--against-torch",
        metavar="MODULE:ATTR",
        help="compare with your PyTorch module instead of the reference (for graphs check cannot map)",
    )
    p.add_argument("--quantize", metavar="TRANSFORM",
                   help="what a deployment transform costs: apply it (fp16, fp16-io32, int8-dynamic: "
                   "exporters/transforms.py) and report each output's and each LSTM node's error against "
                   "the float64 reference of MODEL, and a language model's perplexity (default runtime: "
                   "ort-cpu)")  # fmt: skip
    p.add_argument("--max-abs", type=number(inclusive=True), metavar="X",
                   help="with --quantize: fail when any output's greatest absolute error is above X")  # fmt: skip
    p.add_argument("--max-ppl-increase", type=number(inclusive=True), metavar="P",
                   help="with --quantize, on a language model: fail when the perplexity rises by more than P "
                   "(0.02 = 2%%)")  # fmt: skip
    add_ep_library(p)
    add_report_options(p)


def main(args: argparse.Namespace) -> int:
    from conformance import check
    from conformance.diffs import Tolerance

    apply_ep_libraries(args.ep_library)
    if (args.atol is None) != (args.rtol is None):
        raise BadInputError("--atol and --rtol are given together")
    tolerance = Tolerance(args.atol, args.rtol) if args.atol is not None else None
    seq_lens, batches = args.seq_lens or check.DEFAULT_SEQ_LENS, args.batches or check.DEFAULT_BATCHES
    _refuse_with_quantize(args)
    if args.against_torch:
        return _against_torch(args, seq_lens, batches, tolerance)
    if args.state and not args.stream:
        raise BadInputError("--state OUT=IN: needs --stream N")
    _refuse_overwriting_inputs(args)
    options = check.CheckOptions(
        seq_lens=seq_lens,
        batches=batches,
        runtimes=args.runtime,
        tolerance=tolerance,
        weights=args.weights,
        inputs=args.inputs,
        dims=args.dim,
        feeds=args.feed,
        states=args.state,
        stream=args.stream,
        timeout=args.timeout,
        max_memory=args.max_memory,
    )
    from conformance.stopping import exit_code, on_sigterm

    if args.quantize is not None:
        return _quantize(args, options)
    with on_sigterm():
        report = check.run_check(args.model, options)
    code = _render(
        args,
        report.results,
        report.seconds,
        causes=report.causes,
        notes=report.notes,
        header=_header(report),
        interrupted=report.stopped is not None,
    )
    return exit_code(report.stopped) or code


def _refuse_with_quantize(args: argparse.Namespace) -> None:
    """``--quantize`` measures a transform's cost on the input sets; the options it cannot honour are bad input."""
    if args.quantize is None:
        for option, value in (("--max-abs", args.max_abs), ("--max-ppl-increase", args.max_ppl_increase)):
            if value is not None:
                raise BadInputError(f"{option}: needs --quantize TRANSFORM (it gates what the transform costs)")
        return
    refused = {
        "--against-torch": (args.against_torch, "the cost is measured against the float64 reference of MODEL"),
        "--weights": (args.weights, "the transformed weights are rounded on purpose; check --weights without it"),
        "--stream": (args.stream, "the cost is measured on whole input sets, not on a fed-back stream"),
        "--state": (args.state, "the cost is measured on whole input sets, not on a fed-back stream"),
        "--atol/--rtol": (
            args.atol is not None or args.rtol is not None,
            "LSTM nodes are held to the transform's measured budget; gate the outputs with --max-abs",
        ),
    }
    for option, (value, why) in refused.items():
        if value:
            raise BadInputError(f"--quantize cannot be combined with {option}: {why}")


def _quantize(args: argparse.Namespace, options: Any) -> int:
    from conformance.check.quantize import QuantizeOptions, run_quantize
    from conformance.stopping import exit_code, on_sigterm

    quantize = QuantizeOptions(args.quantize, args.max_abs, args.max_ppl_increase)
    with on_sigterm():
        report = run_quantize(args.model, options, quantize)
    code = _render(
        args,
        report.results,
        report.seconds,
        causes=report.causes,
        notes=report.notes,
        header=f"{_header(report)}; --quantize {args.quantize}",
        interrupted=report.stopped is not None,
        tables=[_cost_table(report.results)],
        quantize={"transform": args.quantize, "max_abs": args.max_abs, "max_ppl_increase": args.max_ppl_increase},
    )
    return exit_code(report.stopped) or code


def _cost_table(results: list[Any]) -> Any:
    """Per output and per LSTM node: the greatest errors over the input sets (and a language model's cost)."""
    from rich.table import Table

    from conformance.check.quantize import cost_rows
    from reports.text import MESSAGE, NAME, safe

    rows = cost_rows(results)
    if not rows:
        return None
    table = Table(title="What the transform costs (against the float64 reference of the model)", title_justify="left")
    lm = any(row.lm for row in rows)
    for column in ("output / LSTM node", "runtime", "max abs", "where", "max rel", *(["language model"] if lm else [])):
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = [safe(row.what, NAME), safe(row.runtime, NAME), f"{row.max_abs:.3g}", safe(row.where, MESSAGE),
                 f"{row.max_rel:.3g}", *([row.lm] if lm else [])]  # fmt: skip
        table.add_row(*cells)
    return table


def _against_torch(args: argparse.Namespace, seq_lens: Any, batches: Any, tolerance: Any) -> int:
    from conformance import check
    from conformance.against_torch import against_torch

    start = time.perf_counter()
    runtimes = args.runtime or [r for r in check.onnx_runtime_ids() if r != "onnx-reference"]
    results = against_torch(
        args.model, args.against_torch, seq_lens=seq_lens, batches=batches, runtimes=runtimes, tolerance=tolerance
    )
    notes = sorted({f"inputs: {r.detail['layout']}" for r in results if "layout" in r.detail})
    return _render(args, results, time.perf_counter() - start, against=args.against_torch, notes=notes)


def _render(
    args: argparse.Namespace,
    results: list[Any],
    seconds: float,
    *,
    causes: list[str] | None = None,
    notes: list[str] | None = None,
    header: str | None = None,
    against: str | None = None,
    interrupted: bool = False,
    tables: list[Any] | None = None,
    quantize: dict[str, Any] | None = None,
) -> int:
    from conformance import environment
    from conformance.commands.output import argv, console, print_summary, report_files, write_reports
    from conformance.records import ResultDocument
    from conformance.status import exit_code

    run: dict[str, Any] = {
        "command": "check",
        "model": str(args.model),
        "causes": causes or [],
        "notes": notes or [],
        "against_torch": against,
        "interrupted": interrupted,
        "wall_seconds": round(seconds, 3),
        "argv": argv(),
    }
    if quantize is not None:
        run["quantize"] = quantize
    document = ResultDocument.of(results, run=run, environment=environment.collect())
    screen = console()
    from reports.text import MESSAGE, safe

    if header:  # names from the model: control characters made visible, length capped (JSON keeps them whole)
        screen.print(safe(header, MESSAGE), highlight=False, markup=False)
    for note in notes or []:
        screen.print(safe(f"note: {note}", MESSAGE), style="yellow", highlight=False, markup=False)
    for table in tables or []:
        if table is not None:
            screen.print(table)
    from reports.text import count

    title = f"check{f' against {against}' if against else ''}: {count(len(results), 'result')} in {seconds:.2f} s"
    written = write_reports(document, report_files(args))
    if written:
        screen.print(safe(f"reports: {', '.join(written)}", MESSAGE), highlight=False, markup=False)
    print_summary(document, title=title, out=screen)  # the likely causes (run["causes"]) too; ends with the verdict
    return exit_code(r.status for r in results)


def _refuse_overwriting_inputs(args: argparse.Namespace) -> None:
    """No report may be written over the model or a file the check reads."""
    from conformance.commands.output import refuse_overwrites, report_files
    from conformance.graph.inputs import feed_file

    protected = {args.model: "the model"}
    if args.weights:
        protected[args.weights] = "the trained weights"
    protected.update({path: "an --inputs file" for path in args.inputs})
    protected.update({path: "a --feed file" for path in map(feed_file, args.feed) if path is not None})
    refuse_overwrites(report_files(args), protected)


def _header(report: Any) -> str:
    nodes = report.nodes
    from reports.text import NAME, safe

    listed = ", ".join(safe(n.path, NAME) for n in nodes[:6]) + (
        f", ... ({len(nodes)} in all)" if len(nodes) > 6 else ""
    )
    sets = len(report.input_sets)
    from reports.text import count

    return (
        f"{report.model}: {count(len(nodes), 'LSTM node')} ({listed}); {count(sets, 'input set')}; "
        f"runtimes: {', '.join(report.runtimes)}"
    )
