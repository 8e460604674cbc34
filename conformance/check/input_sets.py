"""The inputs a check runs on: one set per combination of dim sizes (and per If-condition value), the
user's own files, and the budgets that refuse sizes before anything is allocated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from conformance.check.model import INPUT_SHARE, CheckOptions, InputSet, sizes_label
from conformance.files import regular_file
from conformance.graph import (
    LSTMNode,
)
from conformance.graph.dims import DimPlan
from conformance.graph.inputs import (
    FeedValue,
    GraphInput,
    InputRoles,
    check_value,
    synthesize,
)
from exporters.base import describe_error
from exporters.errors import BadInputError


def input_sets_for(
    inputs: Sequence[GraphInput],
    input_roles: InputRoles,
    dims: DimPlan,
    feeds: Mapping[str, FeedValue],
    options: CheckOptions,
    given: Mapping[str, tuple[int, ...]],
    nodes: Sequence[LSTMNode],
) -> list[InputSet]:
    """One input set per combination of dim sizes; then, at the first sizes, one per other value of each
    input that an If condition reads (so both branches run), unless the user fed that input."""
    rng = np.random.default_rng(options.seed)
    sets = []
    for sizes in dims.combinations:
        within_budget(inputs, sizes, feeds, options.max_memory // INPUT_SHARE)
        steps = dims.steps(sizes)
        lstm_work_within(nodes, sizes, steps, dims, options.max_memory)
        made = {i.name: synthesize(i, sizes, input_roles, rng, steps=steps, feed=feeds.get(i.name)) for i in inputs}
        probed = any(dims.roles.get(k) in ("sequence", "batch") for k in sizes if k not in given)
        sets.append(InputSet(sizes_label(sizes), sizes, made, probed))
    if not sets:
        return sets
    first = sets[0]
    for name, (_, other) in input_roles.conditions.items():
        if name in feeds:
            continue
        value = np.full_like(first.feeds[name], other)
        label = f"{first.label},{name}={_show(other)}" if first.label else f"{name}={_show(other)}"
        sets.append(InputSet(label, first.sizes, {**first.feeds, name: value}, first.probed))
    return sets


def within_budget(
    inputs: Sequence[GraphInput], sizes: Mapping[str, int], feeds: Mapping[str, FeedValue], budget: int
) -> None:
    """Refuse, before anything is allocated, sizes whose synthesized inputs would take more than ``budget``."""
    total = 0
    for graph_input in inputs:
        feed = feeds.get(graph_input.name)
        if graph_input.dims is None or (feed is not None and feed.array is not None):
            continue
        shape = [d if isinstance(d, int) else sizes[graph_input.key(a) or ""] for a, d in enumerate(graph_input.dims)]
        size = int(np.prod(shape, dtype=np.float64)) * np.dtype(graph_input.dtype).itemsize
        total += size
        if total > budget:
            raise BadInputError(
                f"input {graph_input.name!r} at {sizes_label(sizes)} would take {size / 2**30:.2f} GiB "
                f"({'x'.join(map(str, shape))} {graph_input.dtype}); the inputs of one run may take "
                f"{budget / 2**20:.0f} MiB (1/{INPUT_SHARE} of --max-memory): choose smaller sizes with --dim"
            )


# Bytes per LSTM step, per batch row and hidden unit, over everything one run holds: the reference's
# float64 gates and states, the runtime's outputs, the captures and the comparison's copies (measured on a
# 1,000,000-step input, which reached 2.8 GB, about 175 bytes per step-row-unit of its 16-unit LSTM).
LSTM_BYTES_PER_UNIT = 256


def lstm_work_within(
    nodes: Sequence[LSTMNode], sizes: Mapping[str, int], steps: int, dims: DimPlan, budget: int
) -> None:
    """Refuse, before anything runs, sizes at which the LSTMs' work would not fit in ``--max-memory``."""
    batch = max([v for k, v in sizes.items() if dims.roles.get(k) == "batch"], default=1)
    units = sum((n.attributes.hidden_size or 0) * n.attributes.num_directions for n in nodes)
    need = steps * batch * units * LSTM_BYTES_PER_UNIT
    if need > budget:
        raise BadInputError(
            f"at {sizes_label(sizes)} the LSTMs ({steps} steps x batch {batch} x {units} units) would need about "
            f"{need / 2**30:.1f} GiB, over --max-memory {budget / 2**30:.1f} GiB: choose smaller sizes with --dim"
        )


def fixed_first(given: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """The first size of each dim given with ``--dim``: what the probe runs at."""
    return {k: v[0] for k, v in given.items()}


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def user_input_set(path: Path, inputs: Sequence[GraphInput], max_bytes: int) -> InputSet:
    """Inputs from an ``.npz`` (keys = input names) or an ONNX test-data folder of ``input_N.pb``."""
    if path.is_dir():
        from onnx import numpy_helper

        feeds = {}
        for index, pb in enumerate(sorted(path.glob("input_*.pb"))):
            regular_file(pb, "an ONNX TensorProto", max_bytes=max_bytes)
            tensor = onnx.TensorProto()
            try:
                tensor.ParseFromString(pb.read_bytes())
                array = numpy_helper.to_array(tensor, base_dir=str(path))
            except Exception as exc:
                raise BadInputError(f"{pb}: not an ONNX TensorProto ({describe_error(exc, 200)})") from None
            name = tensor.name or (inputs[index].name if index < len(inputs) else f"input_{index}")
            feeds[name] = array
    elif path.is_file():
        from conformance.checkpoint import read_npz

        feeds = read_npz(path, max_bytes=max_bytes)  # each member's header checked before its data is read
    else:
        raise BadInputError(f"{path}: no such file or folder")
    missing = [i.name for i in inputs if i.name not in feeds]
    if missing:
        raise BadInputError(f"{path}: no data for model input(s) {missing} (found: {sorted(feeds)})")
    for graph_input in inputs:
        check_value(str(path), graph_input, feeds[graph_input.name])
    return InputSet(f"inputs:{path.name}", {}, {i.name: feeds[i.name] for i in inputs})
