"""Capture what each LSTM node really received and returned on one runtime.

The instrumented copy (``instrument``) is run once by any ``Run``; its extra outputs are cut into one
``Invocation`` per execution of each node: one for a node in the main graph or a taken If branch, one per
iteration in a Loop or Scan body. A node the inputs never reached gets no invocation and a
``NotExercised`` saying why and which input value would reach it: it is never a pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from conformance.graph.instrument import ControlPlan, Instrumented, SitePlan, instrument
from conformance.graph.nodes import INPUT_ROLES, OUTPUT_ROLES, LSTMNode, input_rank
from conformance.graph.runners import Feeds, Outputs, Run

__all__ = ["CaptureError", "Captures", "Invocation", "NodeCapture", "NotExercised", "capture"]


class CaptureError(RuntimeError):
    """The runtime ran the instrumented model but its outputs cannot be read as captures."""


@dataclass(frozen=True)
class Invocation:
    """The tensors of one execution of a node, by role (``X``, ``W``, ... ``Y``, ``Y_h``, ``Y_c``), and
    its index in the enclosing loops (outermost first; ``()`` outside loops)."""

    tensors: Mapping[str, npt.NDArray[Any]]
    iteration: tuple[int, ...] = ()

    @property
    def inputs(self) -> dict[str, npt.NDArray[Any]]:
        """The inputs the node received, as ``reference.lstm`` keyword arguments."""
        return {role: self.tensors[role] for role in INPUT_ROLES if role in self.tensors}

    @property
    def outputs(self) -> dict[str, npt.NDArray[Any]]:
        """What the runtime returned: Y, Y_h and Y_c (the instrumented copy asks for all three)."""
        return {role: self.tensors[role] for role in OUTPUT_ROLES if role in self.tensors}


@dataclass(frozen=True)
class NotExercised:
    """Why these inputs did not reach a node (``reason``) and what would (``hint``)."""

    reason: str
    hint: str

    def __str__(self) -> str:
        return f"not exercised by these inputs: {self.reason}; to exercise it, {self.hint}"


@dataclass(frozen=True)
class NodeCapture:
    """Every invocation of one node in one run; ``not_exercised`` is set exactly when there is none."""

    node: LSTMNode
    invocations: tuple[Invocation, ...]
    not_exercised: NotExercised | None = None

    @property
    def exercised(self) -> bool:
        return bool(self.invocations)


@dataclass(frozen=True)
class Captures:
    """One run's captures, per node in ``find_lstm_nodes`` order, and the model's own outputs from the
    same run (the instrumented copy keeps them first, under their names)."""

    nodes: tuple[NodeCapture, ...]
    outputs: Mapping[str, Any]

    def __getitem__(self, path: str) -> NodeCapture:
        for node in self.nodes:
            if node.node.path == path:
                return node
        raise KeyError(f"no LSTM node {path!r}; nodes: {[n.node.path for n in self.nodes]}")

    def __iter__(self) -> Iterator[NodeCapture]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)


def capture(model: onnx.ModelProto | Instrumented, feeds: Feeds, run: Run) -> Captures:
    """Run the instrumented copy of ``model`` once with ``run`` and return every LSTM node's invocations.

    Pass an ``Instrumented`` (from ``instrument``) to capture on several runtimes without instrumenting
    again. Errors of the runtime itself propagate unchanged."""
    instrumented = model if isinstance(model, Instrumented) else instrument(model)
    results = run(instrumented.model, feeds)
    wanted = [n for site in instrumented.sites for n in (*site.outputs.values(), *_markers(site))]
    missing = sorted({n for n in wanted if n not in results})
    if missing:
        raise CaptureError(f"the runtime did not return the captured outputs {missing[:5]} ({len(missing)} missing)")
    nodes = tuple(_decode(site, results) for site in instrumented.sites)
    outputs = {name: results[name] for name in instrumented.model_outputs if name in results}
    return Captures(nodes, outputs)


def _markers(site: SitePlan) -> list[str]:
    return [c.marker for c in site.controls if c.marker is not None]


def _decode(site: SitePlan, results: Outputs) -> NodeCapture:
    depth = site.loop_depth
    arrays = {role: np.asarray(results[name]) for role, name in site.outputs.items()}
    prefixes = set()
    for role, array in arrays.items():
        if array.ndim != input_rank(role) + depth:
            if array.size == 0:  # a loop that ran no iteration: the runtime could not know the slice's rank
                return NodeCapture(site.node, (), _why_not(site, results, arrays))
            raise CaptureError(f"captured {role} of {site.node.path} has shape {list(array.shape)}: wrong rank")
        prefixes.add(array.shape[:depth])
    if len(prefixes) != 1:
        raise CaptureError(f"captured tensors of {site.node.path} disagree on the iteration count: {sorted(prefixes)}")
    invocations = [
        Invocation({role: array[index] for role, array in arrays.items()}, tuple(int(i) for i in index))
        for index in np.ndindex(*prefixes.pop())
        if _reached(site.controls, results, index)
    ]
    if invocations:
        return NodeCapture(site.node, tuple(invocations))
    return NodeCapture(site.node, (), _why_not(site, results, arrays))


def _reached(controls: tuple[ControlPlan, ...], results: Outputs, index: tuple[int, ...]) -> bool:
    """Whether every If around the node took the node's branch at loop position ``index``."""
    loops = 0
    for control in controls:
        if control.kind == "If":
            assert control.marker is not None
            marker = np.asarray(results[control.marker])
            if marker.ndim != loops or bool(marker[index[:loops]]) != (control.branch == "then_branch"):
                return False
        else:
            loops += 1
    return True


def _why_not(site: SitePlan, results: Outputs, arrays: Mapping[str, npt.NDArray[Any]]) -> NotExercised:
    """The outermost control that kept the inputs from the node, read from the markers outside in."""
    loops = 0
    for control in site.controls:
        other = "else_branch" if control.branch == "then_branch" else "then_branch"
        hint = control.hint or f"feed inputs that make If {control.path} take its {control.branch}"
        if control.kind == "If":
            assert control.marker is not None
            marker = np.asarray(results[control.marker])
            if loops == 0 and marker.ndim == 0 and bool(marker) != (control.branch == "then_branch"):
                return NotExercised(f"If {control.path} took its {other}", hint)
            if loops > 0:
                return NotExercised(f"If {control.path} took its {other} in every iteration", hint)
        else:
            first = next(iter(arrays.values()))
            if loops == 0 and (first.ndim == 0 or first.shape[0] == 0):
                return NotExercised(
                    f"{control.kind} {control.path} ran no iteration",
                    f"feed inputs that make {control.kind} {control.path} run at least one iteration",
                )
            loops += 1
    inner = site.controls[-1].path if site.controls else site.node.path
    return NotExercised("no execution of the graph reached it", f"feed inputs that make {inner} run")
