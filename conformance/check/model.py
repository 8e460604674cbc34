"""What a check is made of: its options, its input sets, its report, and two small graph helpers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from conformance.diffs import Tolerance
from conformance.graph import (
    LSTMNode,
)
from conformance.graph.inputs import (
    GraphInput,
)
from conformance.records import Result
from conformance.status import FAILING

DEFAULT_SEQ_LENS = (1, 7, 16)


DEFAULT_BATCHES = (1, 3)


DEFAULT_MAX_MEMORY = 2 << 30


# The inputs of one run may take this fraction of --max-memory: the LSTMs' outputs, the captures and the
# reference's float64 copies take many times more (a 320 MB input once took 10.8 GB).
INPUT_SHARE = 32


@dataclass(frozen=True)
class CheckOptions:
    seq_lens: Sequence[int] = DEFAULT_SEQ_LENS
    batches: Sequence[int] = DEFAULT_BATCHES
    runtimes: Sequence[str] | None = None  # None: every ONNX runtime (onnx_runtime_ids)
    tolerance: Tolerance | None = None
    weights: Path | None = None
    inputs: Sequence[Path] = ()
    dims: Sequence[str] = ()  # --dim texts
    feeds: Sequence[str] = ()  # --feed texts
    states: Sequence[str] = ()  # --state OUT=IN texts
    stream: int = 0  # --stream N
    seed: int = 0
    timeout: float = 300.0  # seconds per runtime before its worker is killed
    max_memory: int = DEFAULT_MAX_MEMORY  # --max-memory: the largest model tensor or weights file; inputs 1/32 of it


@dataclass(frozen=True)
class InputSet:
    """One set of feeds the model runs on: its label (``batch=3,seq=7``), the symbolic sizes, the feeds."""

    label: str
    sizes: Mapping[str, int]
    feeds: Mapping[str, np.ndarray]
    probed: bool = False  # some size was chosen by the probe, not given with --dim or fixed by the model


@dataclass
class CheckReport:
    model: Path
    nodes: tuple[LSTMNode, ...]
    inputs: tuple[GraphInput, ...]
    input_sets: list[InputSet] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    causes: list[str] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    runtimes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stopped: KeyboardInterrupt | None = None  # Ctrl-C or SIGTERM (stopping.Terminated): the results are partial

    @property
    def failed(self) -> bool:
        return any(r.status in FAILING for r in self.results)


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Op type -> count over the main graph, every subgraph and every function body, most frequent first."""
    counts: dict[str, int] = {}
    pending = [model.graph, *(onnx.helper.make_graph(list(f.node), f.name, [], []) for f in model.functions)]
    while pending:
        graph = pending.pop()
        for node in graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
            for attr in node.attribute:
                pending += [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def save_model(model: onnx.ModelProto, path: Path) -> None:
    if model.ByteSize() > 1_900_000_000:  # protobuf's 2 GB limit: keep the weights beside the graph
        onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save_model(model, str(path))


def sizes_label(sizes: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sizes.items()) or "fixed shape"
