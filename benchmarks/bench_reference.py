"""Wall time of the NumPy reference LSTM next to PyTorch and the ONNX reference evaluator.

Usage: ``python benchmarks/bench_reference.py [--quick] [--repeat N]``

All three run one bidirectional LSTM layer with the same weights on the same
input, in float64: ``reference.lstm``; ``torch.nn.LSTM(...).double()`` under
``torch.no_grad()`` (default thread count); and ``onnx.reference.ReferenceEvaluator``
on the equivalent single ``LSTM`` node. Each is called once untimed, then
timed ``--repeat`` times with ``time.perf_counter_ns``; the table shows the
median and the minimum. The reference's peak memory is the ``tracemalloc``
peak of one extra call (NumPy reports its buffers to tracemalloc), measured
apart from the timed calls because tracing slows them down.

A script, not a test: it prints.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference import LSTMConfig, lstm
from reference.weights import generate, to_torch_state_dict


@dataclass(frozen=True)
class Shape:
    steps: int
    batch: int
    input_size: int
    hidden: int

    def __str__(self) -> str:
        return f"T={self.steps} B={self.batch} I={self.input_size} H={self.hidden}"


FULL = Shape(256, 16, 128, 256)
QUICK = Shape(32, 4, 16, 32)


@dataclass(frozen=True)
class Timing:
    name: str
    dtype: str
    times_ns: list[int]
    outputs: tuple[np.ndarray, ...]  # (Y [T, D, B, H], Y_h [D, B, H], Y_c [D, B, H]) as float64
    note: str = ""

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ns) / 1e6

    @property
    def min_ms(self) -> float:
        return min(self.times_ns) / 1e6


def measure(fn: Callable[[], Any], repeat: int) -> tuple[list[int], Any]:
    result = fn()  # warm-up: first-call allocations, lazy initialisation, caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        result = fn()
        times.append(time.perf_counter_ns() - start)
    return times, result


def bench_reference(inputs: dict[str, np.ndarray], repeat: int) -> Timing:
    def call() -> Any:
        return lstm(inputs["X"], inputs["W"], inputs["R"], inputs["B"], direction="bidirectional")

    times, out = measure(call, repeat)
    return Timing("reference.lstm (NumPy)", "float64", times, tuple(out))


def bench_torch(inputs: dict[str, np.ndarray], weights: Any, shape: Shape, repeat: int) -> Timing:
    import torch

    module = torch.nn.LSTM(shape.input_size, shape.hidden, bidirectional=True).double()
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in to_torch_state_dict(weights).items()})
    module.eval()
    x = torch.from_numpy(inputs["X"])

    def call() -> Any:
        with torch.no_grad():
            return module(x)

    times, (out, (h, c)) = measure(call, repeat)
    y = out.numpy().reshape(shape.steps, shape.batch, 2, shape.hidden).transpose(0, 2, 1, 3)
    note = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    return Timing("torch.nn.LSTM .double()", "float64", times, (y, h.numpy(), c.numpy()), note)


def _lstm_model(shape: Shape, elem_type: int) -> Any:
    from onnx import helper

    d, h = 2, shape.hidden
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h", "Y_c"], hidden_size=h, direction="bidirectional")
    dims = {
        "X": [shape.steps, shape.batch, shape.input_size],
        "W": [d, 4 * h, shape.input_size],
        "R": [d, 4 * h, h],
        "B": [d, 8 * h],
        "Y": [shape.steps, d, shape.batch, h],
        "Y_h": [d, shape.batch, h],
        "Y_c": [d, shape.batch, h],
    }
    graph = helper.make_graph(
        [node],
        "lstm",
        [helper.make_tensor_value_info(n, elem_type, dims[n]) for n in ("X", "W", "R", "B")],
        [helper.make_tensor_value_info(n, elem_type, dims[n]) for n in ("Y", "Y_h", "Y_c")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    return model


def bench_onnx_reference(inputs: dict[str, np.ndarray], shape: Shape, repeat: int) -> Timing:
    import onnx
    from onnx import TensorProto
    from onnx.reference import ReferenceEvaluator

    note = f"onnx {onnx.__version__}"
    for elem_type, dtype in ((TensorProto.DOUBLE, np.float64), (TensorProto.FLOAT, np.float32)):
        try:
            model = _lstm_model(shape, elem_type)
            onnx.checker.check_model(model, full_check=True)
            session = ReferenceEvaluator(model)
            feeds = {k: v.astype(dtype) for k, v in inputs.items()}
            times, out = measure(lambda: session.run(None, feeds), repeat)  # noqa: B023 (used at once)
        except Exception as exc:  # report why float64 was refused, then try float32
            note += f"; float64 rejected: {type(exc).__name__}: {exc}"
            continue
        outputs = tuple(np.asarray(o, dtype=np.float64) for o in out)
        return Timing("onnx ReferenceEvaluator", np.dtype(dtype).name, times, outputs, note)
    raise RuntimeError(f"ReferenceEvaluator rejected both float64 and float32: {note}")


def peak_memory_bytes(inputs: dict[str, np.ndarray]) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        lstm(inputs["X"], inputs["W"], inputs["R"], inputs["B"], direction="bidirectional")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def max_abs_diff(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"small sizes ({QUICK}) instead of {FULL}")
    parser.add_argument("--repeat", type=int, default=7, help="timed repetitions after one warm-up (default 7)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["torch", "onnx"], help="backends to leave out")
    args = parser.parse_args(argv)
    shape = QUICK if args.quick else FULL

    config = LSTMConfig(shape.input_size, shape.hidden, direction="bidirectional")
    weights = generate(config, seed=0)
    layer = weights.layers[0]
    x = np.random.default_rng(1).uniform(-1.0, 1.0, (shape.steps, shape.batch, shape.input_size))
    inputs = {"X": x, "W": layer.W, "R": layer.R, "B": layer.B}

    print(f"LSTM bidirectional, {shape}, float64 unless noted; 1 warm-up + {args.repeat} timed calls")
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}, NumPy {np.__version__}; load average {_load()}"
    )

    timings = [bench_reference(inputs, args.repeat)]
    if "torch" not in args.skip:
        timings.append(bench_torch(inputs, weights, shape, args.repeat))
    if "onnx" not in args.skip:
        timings.append(bench_onnx_reference(inputs, shape, args.repeat))
    peak = peak_memory_bytes(inputs)

    ref = timings[0]
    tokens = shape.steps * shape.batch
    print()
    header = f"{'backend':<26} {'dtype':<8} {'median ms':>10} {'min ms':>10} {'tokens/s':>10} {'vs ref':>7}"
    print(f"{header}  max|diff| vs ref")
    for t in timings:
        diff = "-" if t is ref else f"{max_abs_diff(t.outputs, ref.outputs):.2e}"
        print(
            f"{t.name:<26} {t.dtype:<8} {t.median_ms:>10.2f} {t.min_ms:>10.2f} "
            f"{tokens / (t.median_ms / 1e3):>10.0f} {t.median_ms / ref.median_ms:>6.2f}x  {diff}"
        )
    print()
    for t in timings:
        if t.note:
            print(f"{t.name}: {t.note}")
    print(f"reference.lstm peak traced memory: {peak / 2**20:.1f} MiB")
    print(f"load average after: {_load()} (on {os.cpu_count()} CPUs; above that, other work shared the cores)")
    torch_timing = next((t for t in timings if t.name.startswith("torch")), None)
    if torch_timing is not None:
        print(f"ratio reference / torch (median): {ref.median_ms / torch_timing.median_ms:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
