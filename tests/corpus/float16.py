"""Float16 variants made with onnxconverter-common's ``convert_float_to_float16`` (as users make them).

- ``vad_if_fp16``: the VAD graph, keep_io_types=False (``input``/``state``/``output``/``stateN`` float16,
  float16 LSTMs in both If branches): what a "half" production model looks like.
- ``stack2_fp16_io32``: the plain 2-layer TorchScript stack, keep_io_types=True (float32 I/O, Casts at the
  edges, float16 LSTMs).

The VAD with keep_io_types=True is not in the corpus: the converter casts the graph inputs in the main
graph but leaves the If branches reading the float32 originals, so the model fails ``check_model``
("Inferred elem type differs", see test_corpus.py).

Not in the corpus (a hazard, see :func:`build_hazards`): the TorchScript char LM converted the same way
crashes ONNX Runtime 1.32 CPU at session creation (SIGSEGV) - not in the LSTM but in the float16
``Transpose -> MatMul`` of the head, with the default ORT_ENABLE_ALL optimisation level.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tests.corpus.spec import CorpusModel, InputSpec, save_model

FP16_ATOL, FP16_RTOL = 2e-3, 1e-2  # float16 weights and activations vs the float32/float64 truth (~2e-4 seen)


def converter_available() -> bool:
    try:
        import onnxconverter_common  # noqa: F401
    except ImportError:
        return False
    return True


def _convert(source: Path, target: Path, *, keep_io_types: bool) -> None:
    if not target.exists():
        save_model(convert(source, keep_io_types=keep_io_types), target)


def convert(source: Path, *, keep_io_types: bool) -> Any:
    """``convert_float_to_float16`` of the file at ``source`` (an unchecked ModelProto)."""
    import onnx
    from onnxconverter_common import float16

    proto = onnx.load(str(source))
    placeholders = _name_omitted_outputs(proto)
    converted = float16.convert_float_to_float16(proto, keep_io_types=keep_io_types)
    _name_omitted_outputs(converted, placeholders)
    return converted


def _name_omitted_outputs(model: Any, restore: set[str] | None = None) -> set[str]:
    """Name every omitted node output (``""``) with a placeholder, or (``restore``) blank those names again.

    onnxconverter-common 1.16's topological sort never finishes a graph in which one node omits an
    optional output and a node omits an optional input (an LSTM without Y does both): both read as the
    tensor ``""``, and it fails with "'NoneType' object has no attribute 'output'".
    """
    from tests.corpus.spec import iter_nodes

    functions = {(f.domain, f.name): f for f in model.functions}
    named: set[str] = set()
    for path, node in iter_nodes(model.graph, functions):
        for index, output in enumerate(node.output):
            if restore is None and output == "":
                node.output[index] = f"omitted::{path}::{index}"
                named.add(node.output[index])
            elif restore is not None and output in restore:
                node.output[index] = ""
    return named


def _half_inputs(inputs: tuple[InputSpec, ...]) -> tuple[InputSpec, ...]:
    return tuple(dataclasses.replace(s, dtype="float16") if s.dtype == "float32" else s for s in inputs)


def build_float16_models(folder: Path, models: dict[str, CorpusModel]) -> dict[str, CorpusModel]:
    """Needs ``vad_if_streaming`` and ``stack2_torchscript`` in ``models``; empty without onnxconverter-common."""
    if not converter_available():
        return {}
    vad, stack = models["vad_if_streaming"], models["stack2_torchscript"]
    out: dict[str, CorpusModel] = {}
    variants: list[tuple[str, CorpusModel, bool, str]] = [
        ("vad_if_fp16", vad, False, "VAD graph entirely float16, I/O included (keep_io_types=False)"),
        (
            "stack2_fp16_io32",
            stack,
            True,
            "plain 2-layer nn.LSTM TorchScript export, float16 inside (keep_io_types=True)",
        ),
    ]
    for name, base, keep_io, description in variants:
        path = folder / f"{name}.onnx"
        _convert(base.path, path, keep_io_types=keep_io)
        changes: dict[str, Any] = {
            "name": name,
            "path": path,
            "kind": "float16",
            "description": description,
            "atol": FP16_ATOL,
            "rtol": FP16_RTOL,
        }
        if not keep_io:
            changes["inputs"] = _half_inputs(base.inputs)
        out[name] = dataclasses.replace(base, **changes)
    return out


def build_hazards(folder: Path, models: dict[str, CorpusModel]) -> dict[str, CorpusModel]:
    """Models that crash a runtime's process: open them only in a subprocess."""
    if not converter_available():
        return {}
    base = models["char_lm_torchscript"]
    path = folder / "char_lm_fp16_io32.onnx"
    _convert(base.path, path, keep_io_types=True)
    crash = dataclasses.replace(
        base,
        name="char_lm_fp16_io32",
        path=path,
        kind="float16",
        description="TorchScript char LM, float16 inside (keep_io_types=True)",
        ort_cpu="SIGSEGV at session creation (ORT_ENABLE_ALL; float16 Transpose -> MatMul); ORT_ENABLE_EXTENDED runs",
        atol=FP16_ATOL,
        rtol=FP16_RTOL,
    )
    return {crash.name: crash}
