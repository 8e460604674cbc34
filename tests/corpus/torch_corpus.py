"""Corpus models that come from PyTorch: dynamo and TorchScript exports, and the planted bugs.

torch is imported only when a file is missing (a build) or a torch reference is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.corpus.spec import CorpusModel, Feeds, InputSpec, Outputs, Reference, lstm_nodes, lstm_paths, save_model

SEED = 1234
SEQ_BATCH = {"batch": (2, 1, 3), "seq": (5, 1, 7, 16)}
BF = {0: "batch", 1: "seq"}  # batch-first axes
TM = {0: "seq", 1: "batch"}  # time-major axes


@dataclass(frozen=True)
class TorchSpec:
    name: str
    key: str
    dynamo: bool
    description: str
    lstms: int
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    axes: dict[str, dict[int, str]]
    extra: dict[str, Any] = field(default_factory=dict)


def _tokens() -> tuple[InputSpec, ...]:
    return (InputSpec("tokens", ("batch", "seq"), "int64", role="tokens", high=40),)


_STATE_AXES = {"h_n": {1: "batch"}, "c_n": {1: "batch"}}
_STACK_INPUTS = (InputSpec("x", ("seq", "batch", 10)),)
_PACKED_INPUTS = (
    InputSpec("x", ("seq", "batch", 6)),
    InputSpec("lengths", ("batch",), "int64", role="lengths", high_dim="seq"),
)

SPECS: tuple[TorchSpec, ...] = (
    *(
        TorchSpec(
            f"char_lm_{tag}", "char_lm", dyn, f"char LM: Embedding, 2-layer batch-first LSTM, Linear logits ({how})",
            2, _tokens(), ("logits",), {"tokens": BF, "logits": BF},
        )
        for tag, dyn, how in (("dynamo", True, "torch.onnx.export default"), ("torchscript", False, "dynamo=False"))
    ),
    *(
        TorchSpec(
            f"bilstm_tagger_{tag}", "tagger", dyn, f"bidirectional batch-first LSTM(12, 24) -> Linear(48, 7) ({how})",
            1, (InputSpec("features", ("batch", "seq", 12)),), ("tags",), {"features": BF, "tags": BF},
        )
        for tag, dyn, how in (("dynamo", True, "torch.onnx.export default"), ("torchscript", False, "dynamo=False"))
    ),
    *(
        TorchSpec(
            f"conv_lstm_{tag}", "conv", dyn, f"Conv1d(8, 16) -> ReLU -> LSTM(16, 32) -> Linear(32, 5) ({how})",
            1, (InputSpec("audio", ("batch", 8, "seq")),), ("scores",),
            {"audio": {0: "batch", 2: "seq"}, "scores": BF},
        )
        for tag, dyn, how in (("dynamo", True, "torch.onnx.export default"), ("torchscript", False, "dynamo=False"))
    ),
    TorchSpec(
        "stack2_torchscript", "plain_stack", False, "plain time-major 2-layer nn.LSTM(10, 16) (the bugs' clean twin)",
        2, _STACK_INPUTS, ("y", "h_n", "c_n"), {"x": TM, "y": TM, **_STATE_AXES},
    ),
    TorchSpec(
        "packed_stack3_torchscript", "packed_stack", False,
        "3-layer LSTM(6, 10) over pack_padded_sequence: every LSTM node takes sequence_lens",
        3, _PACKED_INPUTS, ("y", "h_n", "c_n"), {"x": TM, "lengths": {0: "batch"}, "y": TM, **_STATE_AXES},
    ),
    TorchSpec(
        "function_encoder_torchscript", "encoder", False,
        "Linear -> ReLU -> LSTM(8, 12) exported as a model-local function (export_modules_as_functions)",
        1, (InputSpec("x", ("seq", "batch", 6)),), ("y",), {"x": TM, "y": TM},
        extra={"export_modules_as_functions": "Encoder"},
    ),
)  # fmt: skip


def lazy_torch_reference(key: str, state_dict: Path, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> Reference:
    """A torch reference that imports torch and loads the state_dict on its first call."""
    holder: dict[str, Callable[[Feeds], Outputs]] = {}

    def reference(feeds: Feeds) -> Outputs:
        if "run" not in holder:
            from tests.corpus.torch_models import torch_reference

            holder["run"] = torch_reference(key, state_dict, list(inputs), list(outputs))
        return holder["run"](feeds)

    return reference


def _example_args(spec: TorchSpec) -> tuple[Any, ...]:
    import torch

    model = CorpusModel(spec.name, Path(), "", "", (), spec.inputs, spec.outputs, dims=SEQ_BATCH)
    feeds = model.example_feeds(seed=SEED)
    return tuple(torch.from_numpy(feeds[s.name]) for s in spec.inputs)


def _export_spec(spec: TorchSpec, onnx_path: Path, pt_path: Path) -> None:
    from tests.corpus import torch_models as tm

    module = tm.make_module(spec.key, SEED)
    tm.save_state_dict(module, pt_path)
    extra = dict(spec.extra)
    if "export_modules_as_functions" in extra:
        extra["export_modules_as_functions"] = {getattr(tm, extra["export_modules_as_functions"])}
    inputs, outputs = [s.name for s in spec.inputs], list(spec.outputs)
    partial = onnx_path.with_name(onnx_path.name + ".partial.onnx")
    tm.export(
        module,
        _example_args(spec),
        partial,
        dynamo=spec.dynamo,
        inputs=inputs,
        outputs=outputs,
        axes=spec.axes,
        **extra,
    )
    partial.replace(onnx_path)


def _corpus_model(spec: TorchSpec, onnx_path: Path, pt_path: Path, kind: str, **more: Any) -> CorpusModel:
    import onnx

    return CorpusModel(
        name=more.pop("name", spec.name),
        path=onnx_path,
        kind=kind,
        description=more.pop("description", spec.description),
        lstm_paths=lstm_paths(onnx.load(str(onnx_path), load_external_data=False)),
        inputs=spec.inputs,
        outputs=spec.outputs,
        dims=SEQ_BATCH,
        state_dict=pt_path,
        torch_reference=lazy_torch_reference(spec.key, pt_path, tuple(s.name for s in spec.inputs), spec.outputs),
        **more,
    )


def build_torch_models(folder: Path) -> dict[str, CorpusModel]:
    models: dict[str, CorpusModel] = {}
    for spec in SPECS:
        onnx_path, pt_path = folder / f"{spec.name}.onnx", folder / f"{spec.name}.pt"
        if not (onnx_path.exists() and pt_path.exists()):
            _export_spec(spec, onnx_path, pt_path)
        kind = "torch-dynamo" if spec.dynamo else "torchscript"
        models[spec.name] = _corpus_model(spec, onnx_path, pt_path, kind)
    return models


# ---- planted bugs: each claims to be the plain 2-layer nn.LSTM of ``stack2_torchscript`` ----

H = 16
WEIGHT_BUG = (H + 3, 5, 0.5)  # torch weight_hh_l1[19, 5] += 0.5: forget-gate row 3 -> ONNX R[0, 2H + 3, 5]


BUG_LAYER = {"reverse": 1, "hardsigmoid": 1, "input_forget": 0, "clip": 0}  # which LSTM node gets the edit
BUG_EDITS: dict[str, tuple[str, Any, str]] = {
    "reverse": ("direction", "reverse", "direction='reverse' while the state_dict is a forward nn.LSTM"),
    "hardsigmoid": (
        "activations",
        ["HardSigmoid", "Tanh", "Tanh"],
        "activations=[HardSigmoid, Tanh, Tanh] (gates use HardSigmoid; nn.LSTM uses Sigmoid)",
    ),
    "input_forget": ("input_forget", 1, "input_forget=1 (f = 1 - i; nn.LSTM has an independent forget gate)"),
    "clip": ("clip", 0.5, "clip=0.5 (nn.LSTM never clips)"),
}


def plant_attribute_bug(model: Any, bug: str) -> str:
    """Set one LSTM node attribute of ``model`` (in place); return what was planted, led by the node path."""
    import onnx

    layer = BUG_LAYER[bug]
    path, node = list(lstm_nodes(model).items())[layer]
    attribute, value, text = BUG_EDITS[bug]
    keep = [a for a in node.attribute if a.name != attribute]
    del node.attribute[:]
    node.attribute.extend([*keep, onnx.helper.make_attribute(attribute, value)])
    return f"{path}: {text} (layer {layer})"


BUGS = ("weight_changed", "reverse", "hardsigmoid", "input_forget", "clip")


def build_bugs(folder: Path, models: dict[str, CorpusModel]) -> dict[str, CorpusModel]:
    """The five planted bugs; ``models`` must hold ``stack2_torchscript`` (their base and state_dict)."""
    import onnx

    base = models["stack2_torchscript"]
    assert base.state_dict is not None
    spec = next(s for s in SPECS if s.name == base.name)
    out: dict[str, CorpusModel] = {}
    for bug in BUGS:
        name = f"bug_{bug}"
        onnx_path = folder / f"{name}.onnx"
        if bug == "weight_changed":
            pt_path = folder / f"{name}.pt"
            if not (onnx_path.exists() and pt_path.exists()):
                _export_weight_bug(spec, onnx_path, pt_path)
            r_name = list(lstm_nodes(onnx.load(str(onnx_path))).values())[1].input[2]
            row, col, delta = WEIGHT_BUG
            node_path = lstm_paths(onnx.load(str(onnx_path)))[1]
            what = (
                f"{node_path}: R tensor {r_name!r} [0, {2 * H + row - H}, {col}] is {delta:+} off the state_dict "
                f"(torch lstm.weight_hh_l1[{row}, {col}], forget gate), changed after the state_dict was saved"
            )
        else:
            pt_path = base.state_dict
            proto = onnx.load(str(base.path))
            what = plant_attribute_bug(proto, bug)
            if not onnx_path.exists():
                save_model(proto, onnx_path)
            node_path = what.split(":")[0]
        out[name] = _corpus_model(
            spec, onnx_path, pt_path, "planted-bug", name=name, planted_bug=what, bug_node=node_path,
            description=f"plain 2-layer nn.LSTM(10, 16) TorchScript export with a planted bug: {bug}",
        )  # fmt: skip
    return out


def _export_weight_bug(spec: TorchSpec, onnx_path: Path, pt_path: Path) -> None:
    import torch

    from tests.corpus import torch_models as tm

    module = tm.make_module(spec.key, SEED)
    tm.save_state_dict(module, pt_path)
    row, col, delta = WEIGHT_BUG
    with torch.no_grad():
        getattr(module.lstm, "weight_hh_l1")[row, col] += delta  # noqa: B009
    partial = onnx_path.with_name(onnx_path.name + ".partial.onnx")
    inputs, outputs = [s.name for s in spec.inputs], list(spec.outputs)
    tm.export(module, _example_args(spec), partial, dynamo=False, inputs=inputs, outputs=outputs, axes=spec.axes)
    partial.replace(onnx_path)
