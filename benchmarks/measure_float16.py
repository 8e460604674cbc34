"""Measure how much of the float16 tolerance a float16 LSTM node uses, on each runtime that runs here.

Usage: ``python benchmarks/measure_float16.py [--runtime ID ...] [--seeds N]``

For a grid of float16 LSTM nodes (hidden 8 to 128, input 4 to 64, forward and bidirectional, with and
without initial states), made with onnx.helper with weights drawn like PyTorch's init (uniform in
±1/sqrt(hidden)), ``conformance check`` judges every node at its captured inputs as it does for users:
the float64 reference on the float16 values, compared with the runtime's float16 outputs. Printed per
runtime: the nodes judged, the worst headroom ``max |a - e| / (atol + rtol * |e|)`` under the default
float16 tolerance (conformance/diffs.py), the largest absolute error, and where the worst case was.
A headroom well below 1 says the tolerance holds with room; near or above 1 says it is too tight.
A script, not a test: it prints.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from conformance.check import CheckOptions, run_check
from conformance.diffs import DEFAULT_TOLERANCES


def lstm_model(path: Path, *, hidden: int, inputs: int, bidirectional: bool, states: bool, seed: int) -> None:
    """One float16 LSTM node with symbolic seq and batch dims."""
    rng = np.random.default_rng(seed)
    d = 2 if bidirectional else 1
    bound = 1 / np.sqrt(hidden)

    def weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.uniform(-bound, bound, shape).astype(np.float16), name)

    initializers = [
        weight("W", (d, 4 * hidden, inputs)),
        weight("R", (d, 4 * hidden, hidden)),
        weight("B", (d, 8 * hidden)),
    ]
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["seq", "batch", inputs])]
    node_inputs = ["x", "W", "R", "B"]
    if states:
        for name in ("h0", "c0"):
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT16, [d, "batch", hidden]))
        node_inputs += ["", "h0", "c0"]
    node = helper.make_node(
        "LSTM",
        node_inputs,
        ["Y", "Y_h", "Y_c"],
        name="lstm",
        hidden_size=hidden,
        direction="bidirectional" if bidirectional else "forward",
    )
    outputs = [
        helper.make_tensor_value_info("Y", TensorProto.FLOAT16, ["seq", d, "batch", hidden]),
        helper.make_tensor_value_info("Y_h", TensorProto.FLOAT16, [d, "batch", hidden]),
        helper.make_tensor_value_info("Y_c", TensorProto.FLOAT16, [d, "batch", hidden]),
    ]
    graph = helper.make_graph([node], "fp16_lstm", graph_inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", action="append", help="runtimes to measure (default: ort-cpu, ort-cpu-noopt)")
    parser.add_argument("--seeds", type=int, default=2, help="models per grid point (default 2)")
    args = parser.parse_args()
    runtimes = args.runtime or ["ort-cpu", "ort-cpu-noopt"]
    tolerance = DEFAULT_TOLERANCES["float16"]
    worst: dict[str, tuple[float, float, str]] = {}
    judged: dict[str, int] = {}
    grid = itertools.product((8, 32, 128), (4, 64), (False, True), (False, True), range(args.seeds))
    with tempfile.TemporaryDirectory() as folder:
        for hidden, inputs, bidirectional, states, seed in grid:
            path = Path(folder) / "m.onnx"
            lstm_model(path, hidden=hidden, inputs=inputs, bidirectional=bidirectional, states=states, seed=seed)
            where = (
                f"H={hidden} I={inputs} {'bi' if bidirectional else 'fwd'}{' +states' if states else ''} seed {seed}"
            )
            report = run_check(path, CheckOptions(runtimes=runtimes, seq_lens=(1, 16, 64), batches=(1, 4)))
            for result in report.results:
                if result.kind != "node" or not result.outputs:
                    continue
                judged[result.runtime] = judged.get(result.runtime, 0) + 1
                for diff in result.outputs:
                    best = worst.get(result.runtime, (0.0, 0.0, ""))
                    if diff.headroom > best[0]:
                        worst[result.runtime] = (diff.headroom, diff.max_abs, f"{where}, {result.case}, {diff.name}")
    print(f"float16 tolerance: atol {tolerance.atol:g}, rtol {tolerance.rtol:g} (conformance/diffs.py)")
    print(f"{'runtime':16} {'nodes':>6} {'worst headroom':>15} {'max |error|':>12}  where")
    for runtime in runtimes:
        headroom, error, where = worst.get(runtime, (float("nan"), float("nan"), "nothing judged"))
        print(f"{runtime:16} {judged.get(runtime, 0):6} {headroom:15.3f} {error:12.3g}  {where}")


if __name__ == "__main__":
    main()
