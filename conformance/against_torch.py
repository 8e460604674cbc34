"""``conformance check MODEL --against-torch module:attr``: compare an ONNX model with the user's PyTorch module.

For graphs ``check`` cannot map to an LSTM stack or language model, the
user's own module is the expected value: both run on the same generated
inputs (shapes read from the ONNX graph's inputs, symbolic axes set to each
of the sequence lengths and batch sizes to try), and outputs are matched by
position.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

from conformance.check import DEFAULT_BATCHES, DEFAULT_RUNTIMES, DEFAULT_SEQ_LENS, model_record
from conformance.compare import Tolerance, compare_outputs, default_tolerance, format_mismatch
from conformance.lane import ERROR, FAIL, NOTHING_CHECKED, PASS, SKIP, nothing_checked
from exporters.base import describe_error


def load_module(spec: str) -> Any:
    """``package.module:attr`` -> the nn.Module (calling ``attr`` if it is a factory)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--against-torch: expected MODULE:ATTR (e.g. mypkg.model:build), got {spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--against-torch: cannot import {module_name!r}: {exc}") from None
    target = getattr(module, attr, None)
    if target is None:
        raise ValueError(f"--against-torch: module {module_name!r} has no attribute {attr!r}")
    import torch

    if not isinstance(target, torch.nn.Module) and callable(target):
        target = target()
    if not isinstance(target, torch.nn.Module):
        raise ValueError(f"--against-torch: {spec} is not a torch.nn.Module (got {type(target).__name__})")
    return target.eval()


def _inputs(model: Any, steps: int, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    import onnx

    initializers = {t.name for t in model.graph.initializer}
    feeds = {}
    for value_info in model.graph.input:
        if value_info.name in initializers:
            continue
        tensor_type = value_info.type.tensor_type
        dims = []
        symbolic = 0
        for d in tensor_type.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            else:
                dims.append(steps if symbolic == 0 else batch)
                symbolic += 1
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        if dtype.kind in "iu":
            feeds[value_info.name] = rng.integers(0, 2, size=dims).astype(dtype)
        else:
            feeds[value_info.name] = rng.uniform(-1, 1, dims).astype(dtype)
    return feeds


def run_against_torch(args: argparse.Namespace) -> int:
    from rich.console import Console

    from conformance.runtimes import get_runtime
    from exporters.base import OK, Artifact
    from exporters.importers import load_onnx
    from reports import console as console_report

    module = load_module(args.against_torch)
    model = load_onnx(args.model)
    tolerance = Tolerance(args.atol, args.rtol) if args.atol is not None else default_tolerance("float32")
    rng = np.random.default_rng(0)
    shapes = [(t, b) for t in (args.seq_lens or DEFAULT_SEQ_LENS) for b in (args.batches or DEFAULT_BATCHES)]
    cases = [(f"T={t},B={b}", _inputs(model, t, b, rng)) for t, b in shapes]
    results = []
    for runtime_id in args.runtime or [r for r in DEFAULT_RUNTIMES if r != "onnx-reference"]:
        runtime = get_runtime(runtime_id)
        base = {"suite": "check", "exporter": "user", "runtime": runtime_id}
        reason = runtime.unavailable()
        if reason:
            results.append(model_record(args.model, runtime_id, SKIP, reason, kind="torch"))
            continue
        session = runtime.open(Artifact("user", OK, path=Path(args.model)), None, None)  # type: ignore[arg-type]
        try:
            results += [
                _one(session, module, runtime_id, label, feeds, tolerance, base, args) for label, feeds in cases
            ]
        finally:
            session.close()
    console = Console()
    console.print(console_report.summary_table(results, title=f"check against {args.against_torch}"))
    part = console_report.failures(results)
    if part is not None:
        console.print(part)
    failed = any(r["status"] in (FAIL, ERROR) for r in results)
    if not failed and nothing_checked(results):
        console.print(NOTHING_CHECKED, style="bold red")
        return 1
    console.print("FAIL" if failed else "PASS", style="bold red" if failed else "bold green")
    return 1 if failed else 0


def _one(
    session: Any,
    module: Any,
    runtime_id: str,
    label: str,
    feeds: dict[str, np.ndarray],
    tolerance: Tolerance,
    base: dict[str, str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One shape on one runtime: the ONNX outputs against the module's, matched by position."""
    import torch

    case = f"{args.model.name}[{label}]"
    record: dict[str, Any] = {**base, "id": f"{case}/torch/{runtime_id}", "case": case}
    try:
        actual = session.run(feeds)
    except Exception as exc:
        return {**record, "status": ERROR, "message": f"{runtime_id} failed at {label}: {describe_error(exc)}"}
    with torch.inference_mode():
        out = module(*[torch.from_numpy(v) for v in feeds.values()])
    expected = {n: v.detach().double().numpy() for n, v in zip(actual, _flatten(out), strict=False)}
    diffs = compare_outputs(actual, expected, tolerance, time_axes=dict.fromkeys(expected))
    failing = [d for d in diffs if not d.passed]
    message = "\n\n".join(format_mismatch(d) for d in failing) or "matches the PyTorch module"
    outputs = {d.name: d.to_dict() for d in diffs}
    return {**record, "status": FAIL if failing else PASS, "message": message, "outputs": outputs}


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]
