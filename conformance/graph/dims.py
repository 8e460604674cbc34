"""Sizes for a graph's symbolic dims: given with ``--dim``, or found by probing the model.

A dim's role is read off what it does to the LSTM nodes, not off its name: the instrumented model runs on
ONNX Runtime at a base size (16 for every dim) and again with one dim doubled; a dim that changes an
LSTM's sequence axis is a sequence dim, one that changes the batch axis a batch dim. From the two runs a
linear map from the dim to the LSTM's axis is read (a front-end that frames 16 samples into one step:
``steps = N / 16``), so the dim takes the sizes that give the LSTM 1, 7 and 16 steps (``--seq-lens``)
and a batch of 1 and 3 (``--batches``). Other dims keep the base size. When a probe fails, the dims it
could not classify keep the base size, and a note says so and how to set them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conformance.graph.capture import capture
from conformance.graph.inputs import FeedValue, GraphInput, InputRoles, dim_keys, synthesize
from conformance.graph.instrument import Instrumented
from exporters.errors import BadInputError

__all__ = ["BASE", "MAX_COMBINATIONS", "DimPlan", "plan_dims"]

BASE = 16
MAX_COMBINATIONS = 24
_Observed = dict[str, tuple[int, int]]  # node path -> (steps, batch) of its first invocation


@dataclass(frozen=True)
class DimPlan:
    """Each symbolic dim's sizes and role (``sequence``, ``batch``, ``other``), the combinations to run
    (each with the LSTM sequence length it gives, for ``sequence_lens`` inputs), and notes for the user."""

    values: Mapping[str, tuple[int, ...]]
    roles: Mapping[str, str]
    combinations: tuple[Mapping[str, int], ...]
    step_counts: tuple[int, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def steps(self, sizes: Mapping[str, int]) -> int:
        """The LSTM sequence length the combination ``sizes`` gives (BASE when unknown)."""
        for combination, steps in zip(self.combinations, self.step_counts, strict=True):
            if dict(combination) == dict(sizes):
                return steps
        return BASE


def plan_dims(
    instrumented: Instrumented,
    path: Path,
    inputs: Sequence[GraphInput],
    input_roles: InputRoles,
    given: Mapping[str, tuple[int, ...]],
    feeds: Mapping[str, FeedValue],
    seq_lens: Sequence[int],
    batches: Sequence[int],
) -> DimPlan:
    """Sizes for every symbolic dim of ``inputs``: ``given`` ones as given, the others by probing."""
    keys = dim_keys(inputs)
    notes: list[str] = []
    probe = _Prober(instrumented, path, inputs, input_roles, feeds)
    if not keys:
        fixed = probe.observe({})
        probe.close()
        return DimPlan({}, {}, ({},), (max((t for t, _ in (fixed or {}).values()), default=BASE),))
    base, observed = _base(probe, keys, given, _declared_sizes(instrumented))
    values: dict[str, tuple[int, ...]] = {}
    kinds: dict[str, str] = {}
    maps: dict[str, tuple[float, float]] = {}  # sequence dim -> steps = a * size + c
    if observed is None:
        free = [k for k in keys if k not in given]
        if free:
            notes.append(
                f"could not probe the model at size {BASE} for {', '.join(free)} ({probe.error}); "
                f"{'they take' if len(free) > 1 else 'it takes'} {BASE}: set sizes with --dim NAME=N"
            )
    for key in keys:
        wider = dict(base, **{key: base[key] * 2})
        other = probe.observe(wider) if observed is not None else None
        kind, mapping = _classify(observed, other, base[key], wider[key])
        if observed is not None and key not in given and kind == "other":
            why = _unclassified(observed, other, probe.error)
            if why:
                notes.append(f"dim {key}: {why}; it takes {base[key]}: set its sizes with --dim {key}=N[,N...]")
        kinds[key] = kind
        if key in given:
            values[key] = given[key]
        elif kind == "sequence":
            assert mapping is not None
            sizes = _sizes_for(mapping, seq_lens)
            values[key] = sizes + ((base[key],) if base[key] != BASE and base[key] not in sizes else ())
            values[key] = values[key] or (base[key],)
        elif kind == "batch":
            assert mapping is not None
            values[key] = _sizes_for(mapping, batches) or (base[key],)
        else:
            values[key] = (base[key],)
        if kind == "sequence" and mapping is not None:
            maps[key] = mapping
    combinations = [dict(zip(keys, sizes, strict=True)) for sizes in itertools.product(*(values[k] for k in keys))]
    if len(combinations) > MAX_COMBINATIONS and any(len(given[k]) > 1 for k in given):
        raise BadInputError(
            f"--dim: the sizes given make {len(combinations)} combinations; at most {MAX_COMBINATIONS} are "
            "checked in one run: give fewer values"
        )
    if len(combinations) > MAX_COMBINATIONS:
        notes.append(
            f"{len(combinations)} combinations of dim sizes; checking the first {MAX_COMBINATIONS} "
            "(narrow them with --dim)"
        )
        combinations = combinations[:MAX_COMBINATIONS]
    steps = tuple(_steps(c, maps) for c in combinations)
    described = [f"{k}={','.join(map(str, values[k]))} ({kinds[k]})" for k in keys if k not in given]
    if described:
        notes.append(f"symbolic dims: {'; '.join(described)}; set others with --dim NAME=N[,N...]")
    probe.close()  # no ONNX Runtime thread pool left behind when check forks its runtime workers
    return DimPlan(values, kinds, tuple(combinations), steps, tuple(notes))


def _base(
    probe: _Prober, keys: Sequence[str], given: Mapping[str, tuple[int, ...]], declared: Sequence[int]
) -> tuple[dict[str, int], _Observed | None]:
    """The first base sizes the model runs at: BASE, then each size the graph's outputs declare (an export
    that baked its example length runs only there), then 8, 4, 2, 1. None observed when none runs."""
    first = None
    for size in dict.fromkeys([BASE, *declared, 8, 4, 2, 1]):
        base = {k: given[k][0] if k in given else size for k in keys}
        observed = probe.observe(base)
        if observed is not None:
            return base, observed
        first = first or (base, probe.error)
    assert first is not None
    probe.error = first[1]
    return first[0], None


def _declared_sizes(instrumented: Instrumented) -> list[int]:
    """Fixed sizes the model's own outputs declare (not the instrumented copy's extra outputs)."""
    wanted = set(instrumented.model_outputs)
    sizes = []
    for output in instrumented.model.graph.output:
        if output.name in wanted and output.type.HasField("tensor_type"):
            sizes += [
                d.dim_value for d in output.type.tensor_type.shape.dim if d.HasField("dim_value") and d.dim_value > 1
            ]
    return [s for s in dict.fromkeys(sizes) if s != BASE][:8]


def _classify(
    before: _Observed | None, after: _Observed | None, size: int, wider: int
) -> tuple[str, tuple[float, float] | None]:
    if before is None or after is None:
        return "other", None
    common = [p for p in before if p in after]
    for axis, kind in ((0, "sequence"), (1, "batch")):
        for node in common:
            low, high = before[node][axis], after[node][axis]
            if low != high:
                slope = (high - low) / (wider - size)
                return kind, (slope, low - slope * size)
    return "other", None


def _unclassified(before: _Observed, after: _Observed | None, error: str) -> str:
    """Why a probe could not tell a dim's role, or "" when the dim simply moves no LSTM axis."""
    if after is None:
        return f"the model fails when this dim alone is doubled ({error}), so its role is unknown"
    if not set(before) & set(after):
        return "doubling it changed which LSTM nodes ran (an If on the data?), so its role is unknown"
    return ""


def _sizes_for(mapping: tuple[float, float], targets: Sequence[int]) -> tuple[int, ...]:
    """The dim sizes that give the LSTM axis each target (whole, positive sizes only)."""
    slope, offset = mapping
    sizes = []
    for target in targets:
        size = (target - offset) / slope if slope else None
        if size is not None and size >= 1 and abs(size - round(size)) < 1e-9:
            sizes.append(round(size))
    return tuple(dict.fromkeys(sizes))


def _steps(sizes: Mapping[str, int], maps: Mapping[str, tuple[float, float]]) -> int:
    found = [round(a * sizes[k] + c) for k, (a, c) in maps.items()]
    return max(found) if found else BASE


class _Prober:
    """Runs the instrumented model on ONNX Runtime's CPU provider at given sizes; one session for all."""

    def __init__(
        self,
        instrumented: Instrumented,
        path: Path,
        inputs: Sequence[GraphInput],
        input_roles: InputRoles,
        feeds: Mapping[str, FeedValue],
    ) -> None:
        self.instrumented, self.path, self.inputs = instrumented, path, inputs
        self.input_roles, self.feeds = input_roles, feeds
        self.session: Any = None
        self.run_options: Any = None
        self.error = ""

    def observe(self, sizes: Mapping[str, int]) -> _Observed | None:
        rng = np.random.default_rng(0)
        try:
            feeds = {
                i.name: synthesize(i, sizes, self.input_roles, rng, steps=1, feed=self._sized_feed(i.name))
                for i in self.inputs
            }
            captures = capture(self.instrumented, feeds, self._run)
        except Exception as exc:
            from exporters.base import describe_error

            self.error = describe_error(exc, 160)
            return None
        observed: _Observed = {}
        for node_capture in captures:
            if node_capture.invocations:
                x = np.asarray(node_capture.invocations[0].tensors["X"])
                layout = node_capture.node.attributes.layout
                observed[node_capture.node.path] = (x.shape[1], x.shape[0]) if layout == 1 else (x.shape[0], x.shape[1])
        return observed

    def close(self) -> None:
        self.session = self.run_options = None

    def _sized_feed(self, name: str) -> FeedValue | None:
        feed = self.feeds.get(name)
        return feed if feed is None or feed.array is None else None  # an array has its own size: not a probe

    def _run(self, _model: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
        if self.session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 4  # a probe that fails is expected: its exception says why, quietly
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
            self.run_options = ort.RunOptions()
            self.run_options.log_severity_level = 4
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, dict(feeds), self.run_options), strict=True))
