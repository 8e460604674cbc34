"""tract (Sonos' Rust inference engine) through its Python bindings.

tract turns an ONNX file into a runnable plan only once every input's shape is
known: its LSTM expansion cannot keep a symbolic batch (it panics, which aborts
the process, rather than raising). So the session fixes the input facts to the
shapes it is fed and keeps one optimised runnable per distinct input signature.

Each run starts from a fresh state: a tract ``State`` reused across runs carries
the recurrent state over, as a streaming engine would.

tract names a model's outputs after the nodes that produce them, so outputs are
named from the ONNX file's graph outputs, in order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from exporters.base import AnyWeights, Artifact, Model

INSTALL_HINT = "tract is not installed (pip install 'lstm-conformance[tract]')"
# NumPy dtype names -> tract's datum-type mnemonics in an input fact ("5,2,3,f32").
FACT_TYPES = {
    "float32": "f32",
    "float64": "f64",
    "float16": "f16",
    "int64": "i64",
    "int32": "i32",
    "int8": "i8",
    "uint8": "u8",
    "bool": "bool",
}
Signature = tuple[tuple[str, tuple[int, ...], str], ...]


def input_fact(value: np.ndarray) -> str:
    """tract's fact spelling of an input: ``"5,2,3,f32"`` (a scalar is just ``"f32"``)."""
    dtype = FACT_TYPES.get(value.dtype.name)
    if dtype is None:
        raise ValueError(f"tract: no input fact for dtype {value.dtype.name}")
    return ",".join([*map(str, value.shape), dtype])


def condensed_error(text: str) -> str:
    """tract's error (context, ``Caused by:`` chain, maybe a backtrace) as one line: context and root cause."""
    text = text.split("Stack backtrace:", maxsplit=1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip() and line.strip() != "Caused by:"]
    if not lines:
        return "tract failed (no message)"
    causes = [line.partition(": ")[2] if line[:1].isdigit() else line for line in lines[1:]]
    return f"{lines[0]}: {causes[-1]}" if causes else lines[0]


def _tract_call(what: str, call: Callable[[], Any]) -> Any:
    """Run a tract call, turning its ``TractError`` into a one-line ``RuntimeError``."""
    import tract

    try:
        return call()
    except tract.TractError as exc:
        raise RuntimeError(f"tract {what}: {condensed_error(str(exc))}") from exc


class TractSession:
    def __init__(self, path: str) -> None:
        import onnx

        graph = onnx.load(path, load_external_data=False).graph
        initializers = {t.name for t in graph.initializer}
        self._path = path
        self._inputs = [i.name for i in graph.input if i.name not in initializers]
        self._outputs = [o.name for o in graph.output]
        self._runnables: dict[Signature, Any] = {}

    def _runnable(self, feeds: Mapping[str, np.ndarray]) -> tuple[Any, list[np.ndarray]]:
        """The optimised plan for these inputs' shapes (built once per signature), and the inputs in order."""
        missing = [name for name in self._inputs if name not in feeds]
        if missing:
            raise ValueError(f"tract: missing input(s) {', '.join(missing)}")
        values = [np.ascontiguousarray(feeds[name]) for name in self._inputs]
        signature = tuple((n, v.shape, v.dtype.name) for n, v in zip(self._inputs, values, strict=True))
        if signature not in self._runnables:
            import tract

            model = _tract_call("cannot load the model", lambda: tract.onnx().load(self._path))
            for index, value in enumerate(values):
                model.set_input_fact(index, input_fact(value))
            self._runnables[signature] = _tract_call(
                "cannot optimise the model", lambda: model.into_model().into_runnable()
            )
        return self._runnables[signature], values

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        runnable, values = self._runnable(feeds)
        results = _tract_call("failed to run", lambda: runnable.run(values))
        if len(results) != len(self._outputs):
            raise RuntimeError(f"tract returned {len(results)} outputs, the model has {self._outputs}")
        return {name: result.to_numpy() for name, result in zip(self._outputs, results, strict=True)}

    def placement(self) -> dict[str, str]:
        return {}  # tract runs every node on the CPU; it has no other device here

    def timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[Callable[[], object], Callable[[], None] | None, str]:
        import tract

        runnable, values = self._runnable(feeds)
        tensors = [tract.Tensor.from_numpy(v) for v in values]
        # Runnable.run starts from a fresh state each call; one reused State would carry the LSTM's
        # final h/c into the next call (tract's streaming semantics) and time a different computation.
        call = functools.partial(runnable.run, tensors)
        return call, None, "Runnable.run on a plan optimised for these input shapes, inputs converted before timing"

    def close(self) -> None:
        self._runnables.clear()


class TractRuntime:
    id = "tract"
    consumes = "onnx"
    description = "tract (Rust inference engine), CPU, plan optimised per input shape"
    required_provider: str | None = None

    def unavailable(self) -> str | None:
        try:
            import tract  # noqa: F401
        except ImportError:
            return INSTALL_HINT
        return None

    def settings(self) -> dict[str, Any]:
        import tract

        return {"tract": tract.version(), "device": "CPU", "input_facts": "concrete, one plan per input shape"}

    def open(self, artifact: Artifact | None, model: Model, weights: AnyWeights) -> TractSession:
        assert artifact is not None and artifact.path is not None
        return TractSession(str(artifact.path))
