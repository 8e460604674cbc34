"""``conformance check MODEL --against-torch module:attr``: compare an ONNX model with the user's PyTorch module.

For graphs ``check`` cannot map to an LSTM stack or language model, the
user's own module is the expected value: both run on the same generated
inputs (shapes read from the ONNX graph's inputs, symbolic axes set to each
of the sequence lengths and batch sizes to try), and outputs are matched by
position.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conformance import evaluate
from conformance.compare import default_tolerance
from conformance.diffs import Tolerance
from conformance.records import Result, model_result, shape_label
from conformance.status import SKIP
from exporters.errors import BadInputError


def load_module(spec: str) -> Any:
    """``package.module:attr`` -> the nn.Module (calling ``attr`` if it is a factory)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise BadInputError(f"--against-torch: expected MODULE:ATTR (e.g. mypkg.model:build), got {spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BadInputError(f"--against-torch: cannot import {module_name!r}: {exc}") from None
    target = getattr(module, attr, None)
    if target is None:
        raise BadInputError(f"--against-torch: module {module_name!r} has no attribute {attr!r}")
    import torch

    if not isinstance(target, torch.nn.Module) and callable(target):
        target = target()
    if not isinstance(target, torch.nn.Module):
        raise BadInputError(f"--against-torch: {spec} is not a torch.nn.Module (got {type(target).__name__})")
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


def against_torch(
    model_path: Path,
    spec: str,
    *,
    seq_lens: Sequence[int],
    batches: Sequence[int],
    runtimes: Sequence[str],
    tolerance: Tolerance | None = None,
) -> list[Result]:
    """The ONNX model on each runtime vs the user's module, at each (T, B); one result per shape and runtime."""
    from conformance.runtimes import get_runtime
    from exporters.base import OK, Artifact
    from exporters.importers import load_onnx

    module = load_module(spec)
    model = load_onnx(model_path)
    allowed = tolerance or default_tolerance("float32")
    rng = np.random.default_rng(0)
    cases = [({"T": t, "B": b}, _inputs(model, t, b, rng)) for t in seq_lens for b in batches]
    results = []
    for runtime_id in runtimes:
        runtime = get_runtime(runtime_id)
        reason = runtime.unavailable()
        if reason:
            results.append(model_result(model_path.name, runtime_id, SKIP, reason, exporter="torch"))
            continue
        session = runtime.open(Artifact("user", OK, path=model_path), None, None)  # type: ignore[arg-type]
        try:
            results += [
                _one(session, module, runtime_id, shape, feeds, allowed, model_path.name) for shape, feeds in cases
            ]
        finally:
            session.close()
    return results


def _one(
    session: Any,
    module: Any,
    runtime_id: str,
    shape: dict[str, int],
    feeds: dict[str, np.ndarray],
    tolerance: Tolerance,
    model: str,
) -> Result:
    """One shape on one runtime: the ONNX outputs against the module's, matched by position."""
    import torch

    label = shape_label(shape)
    actual = evaluate.run(session, feeds, runtime_id, where=label)
    if isinstance(actual, evaluate.Verdict):
        return model_result(
            model, runtime_id, actual.status, actual.message, exporter="torch", label=label, shape=shape
        )
    with torch.inference_mode():
        out = module(*[torch.from_numpy(v) for v in feeds.values()])
    expected = {n: v.detach().double().numpy() for n, v in zip(actual, _flatten(out), strict=False)}
    verdict = evaluate.judge(
        actual, expected, tolerance, time_axes=dict.fromkeys(expected), passed="matches the PyTorch module"
    )
    return model_result(
        model, runtime_id, verdict.status, verdict.message, exporter="torch", label=label, shape=shape,
        outputs=verdict.outputs,
    )  # fmt: skip


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]
