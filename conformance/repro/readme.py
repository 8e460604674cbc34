"""The words of a repro folder: its ``README.md``, and the headline that titles it and ``repro.py``.

What diverges (the operator features the minimal model uses, the numbers, what the runtime computes
instead), how to run the script and what it printed, the ONNX specification's own text for those
features (``onnx.defs.get_schema("LSTM")``) with the reference's reading where the text leaves room
(``reference/SEMANTICS.md``), the controls, and how the lane was found and minimised.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from conformance.repro.minimise import Minimised
from conformance.repro.scripts import Script
from conformance.repro.trial import HYPOTHESES, Trial

if TYPE_CHECKING:
    from conformance.repro.lanes import Target


@dataclass(frozen=True)
class Reproduction:
    """Everything the folder is made of."""

    target: Target
    original: Trial  # the lane as it ran again here
    minimised: Minimised
    runtime_description: str
    settings: dict[str, Any]
    script: Script


# --- what the model is ------------------------------------------------------------------------------------------


def features(trial: Trial) -> list[str]:
    """The ONNX LSTM inputs and attributes, beyond the defaults, that the model uses (spec names)."""
    case = trial.variant.case
    lstm = case.lstm
    names: list[str] = [n for n in ("sequence_lens", "initial_h", "initial_c") if n in trial.feeds]
    names += ["P"] if lstm.peepholes else []
    names += ["direction"] if lstm.direction != "forward" else []
    for attribute in ("clip", "activations", "activation_alpha", "activation_beta"):
        names += [attribute] if getattr(lstm, attribute) is not None else []
    names += ["input_forget"] if lstm.input_forget else []
    names += ["layout"] if case.export.layout == 1 else []
    return names


def feature_words(trial: Trial) -> str:
    """``with `sequence_lens` and `direction=reverse```, or ``without any optional input or attribute``."""
    lstm = trial.variant.case.lstm
    words = {
        "sequence_lens": "`sequence_lens`",
        "initial_h": "`initial_h`/`initial_c`",
        "P": "peepholes (`P`)",
        "direction": f"`direction={lstm.direction}`",
        "clip": f"`clip={lstm.clip:g}`" if lstm.clip is not None else "",
        "activations": f"`activations={list(lstm.activations or ())}`",
        "activation_alpha": "`activation_alpha`",
        "activation_beta": "`activation_beta`",
        "input_forget": "`input_forget=1`",
        "layout": "`layout=1`",
    }
    chosen = [words[n] for n in features(trial) if n in words]
    if not chosen:
        return "without any optional input or attribute"
    return "with " + (", ".join(chosen[:-1]) + " and " + chosen[-1] if len(chosen) > 1 else chosen[0])


def opset_of(model: Any) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


_EXCEPTION_TYPE = re.compile(
    r"^(RuntimeError|ValueError|Fail|InvalidGraph|InvalidArgument|NotImplemented|RuntimeException|TractError): "
)


def error_text(runtime: str, message: str, limit: int = 200) -> str:
    """The runtime's own words: ``ort-cpu could not load the model: RuntimeError: ...`` without the harness's
    prefix and exception type, on one line, cut at ``limit`` characters."""
    text = " ".join(message.split())
    for prefix in (f"{runtime} failed to run: ", f"{runtime} could not load the model: "):
        text = text.removeprefix(prefix)
    text = _EXCEPTION_TYPE.sub("", text)
    return text if len(text) <= limit else text[: limit - 3].rsplit(" ", 1)[0] + " ..."


def headline(runtime: str, trial: Trial) -> str:
    exporter = trial.variant.exporter
    what = f"`LSTM` {feature_words(trial)}"
    if exporter != "onnx-native":
        what = f"the {exporter} export of an {what}"
    if trial.status == "error":
        return f"{runtime}: {what} fails: {error_text(runtime, trial.message) or 'an error'}"
    kind = trial.signature[1]
    if kind == "shape":
        return f"{runtime}: {what} returns outputs of the wrong shape"
    if kind == "placement":
        return f"{runtime}: {what} does not run on {runtime}'s provider"
    worst = trial.greatest
    off = f" ({worst.name} off by {worst.max_abs:.2g})" if worst is not None else ""
    if trial.explanation:
        return f"{runtime}: {what} gives the outputs of the same model {HYPOTHESES[trial.explanation]}{off}"
    return f"{runtime}: {what} computes wrong values{off}"


def _model_lines(trial: Trial, model: Any) -> list[str]:
    from onnx import helper

    nodes = list(model.graph.node)
    lstm_nodes = [n for n in nodes if n.op_type == "LSTM"]
    if len(nodes) == 1 and lstm_nodes:
        form = f"one `LSTM` node, opset {opset_of(model)}"
    else:
        ops: dict[str, int] = {}
        for node in nodes:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
        listing = ", ".join(f"{count} {op}" for op, count in ops.items())
        exporter = trial.variant.exporter
        form = f"{len(nodes)} nodes ({listing}) as exporter `{exporter}` writes it, opset {opset_of(model)}"
    lines = [f"- {form}"]
    for node in lstm_nodes[:1]:
        attributes = ", ".join(f"{a.name}={_show(helper.get_attribute_value(a))}" for a in node.attribute)
        lines.append(f"- attributes: {attributes}")
    initializers = ", ".join(f"{t.name} {list(t.dims)}" for t in model.graph.initializer)
    lines.append(f"- initializers: {initializers}")
    for name, value in trial.feeds.items():
        shown = f" = {value.tolist()}" if value.size <= 8 and value.dtype.kind in "iu" else ""
        lines.append(f"- input `{name}`: {value.dtype} {list(value.shape)}{shown}")
    return lines


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return json.dumps(value.decode())
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --- the ONNX text ----------------------------------------------------------------------------------------------


def spec_quotes(names: list[str], opset: int, *, shapes: bool, activations: tuple[str, ...] = ()) -> list[str]:
    """Markdown quotes of the ONNX ``LSTM`` schema text for ``names`` (inputs and attributes)."""
    import onnx

    schema = onnx.defs.get_schema("LSTM", opset)
    described = {
        **{i.name: ("input", i.description) for i in schema.inputs},
        **{o.name: ("output", o.description) for o in schema.outputs},
        **{a: ("attribute", schema.attributes[a].description) for a in schema.attributes},
    }
    shape_text = (["layout"] if "layout" in names else ["Y", "Y_h", "Y_c"]) if shapes else []
    wanted = list(dict.fromkeys(names + shape_text))
    if not names:
        wanted = ["X", "initial_h", "initial_c"]
    doc = (schema.doc or "").splitlines()
    lines = [
        f'From `onnx.defs.get_schema("LSTM", {opset})` (onnx {onnx.__version__}, LSTM-{schema.since_version}):',
        "",
    ]
    for name in wanted:
        if name not in described:
            continue
        kind, text = described[name]
        lines += [*_quote(f"**`{name}`** ({kind}): {text.strip()}"), ""]
    used = {a.lower() for a in activations}
    functions = [line for line in doc if line.startswith("* ") and line[2:].split("(")[0].strip().lower() in used]
    if functions:
        lines += [*_quote("Activation functions:\n\n" + "\n".join(functions)), ""]
    if not names or {"P", "input_forget", "clip", "activations"} & set(names):
        lines += [*_quote(_section(doc, "Equations")), ""]
    return lines


# Rows of reference/SEMANTICS.md ("Question" column) that say how the reference reads a feature.
SEMANTICS_ROWS = {
    "clip": ("Where `clip` applies",),
    "sequence_lens": ("Padding past `sequence_lens[b]`",),
    "input_forget": ("`input_forget=1`",),
    "activation_alpha": ("`activation_alpha`/`beta` order", "Defaults of alpha/beta"),
    "activation_beta": ("`activation_alpha`/`beta` order", "Defaults of alpha/beta"),
    "activations": ("Activation names",),
    "layout": ("`layout=1`",),
    "P": ("Peepholes `P = [Pi, Po, Pf]`",),
}
ZERO_LENGTH_ROW = "`sequence_lens[b] == 0`"


def reference_readings(names: list[str], *, zero_length: bool) -> list[str]:
    """How the reference reads each feature where the spec leaves room (the rows of reference/SEMANTICS.md)."""
    from importlib import resources

    text = (resources.files("reference") / "SEMANTICS.md").read_text(encoding="utf-8")
    rows: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("|"):
            if rows:
                break  # the first table only: its second column is the reference's reading
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2:
            rows[cells[0]] = cells[1]
    wanted = [q for name in names for q in SEMANTICS_ROWS.get(name, ())]
    wanted += [ZERO_LENGTH_ROW] if zero_length else []
    found = [(q, rows[q]) for q in dict.fromkeys(wanted) if q in rows]
    if not found:
        return []
    lines = ["Where the text leaves room, the reference reads it so (`reference/SEMANTICS.md`):", ""]
    return [*lines, *(f"- {question}: {reading}" for question, reading in found), ""]


def _section(doc: list[str], title: str) -> str:
    """The block of the schema doc that starts with ``title`` (up to the next blank line after its list)."""
    start = next((k for k, line in enumerate(doc) if line.startswith(title)), None)
    if start is None:
        return ""
    block = [doc[start]]
    for line in doc[start + 1 :]:
        if block[-1].startswith("* ") and not line.startswith("* "):
            break
        block.append(line)
    return "\n".join(block).strip()


def _quote(text: str) -> list[str]:
    return [f"> {line}".rstrip() for line in text.splitlines()]


# --- the numbers ------------------------------------------------------------------------------------------------


def numbers(runtime: str, trial: Trial) -> list[str]:
    if trial.status == "error":
        return [f"`{runtime}` raises:", "", "```", error_text(runtime, trial.message, limit=4000), "```"]
    lines = [
        f"Judged at {trial.judged_at} tolerance (`|actual - expected| <= atol + rtol * |expected|`):",
        "",
        "| output | shape | greatest difference | at index | mismatched | allowed |",
        "|---|---|---|---|---|---|",
    ]
    for d in trial.diffs:
        if not d.values_compared:
            shape = list(d.actual_shape) if d.actual_shape is not None else "missing"
            difference, index = f"shape {shape}, expected {list(d.expected_shape)}", "-"
        else:
            difference, index = f"{d.max_abs:.3g}", str(tuple(d.max_abs_index))
        lines.append(
            f"| {d.name} | {list(d.expected_shape)} | {difference} | {index} | {d.mismatched} / {d.total} "
            f"| atol {d.allowed_atol:g}, rtol {d.allowed_rtol:g} |"
        )
    worst = trial.greatest
    if worst is not None and worst.values_compared and trial.actual is not None and worst.max_abs_index:
        at = tuple(worst.max_abs_index)
        want, got = float(trial.expected[worst.name][at]), float(trial.actual[worst.name][at])
        lines += ["", f"At {worst.name}{list(at)} the specification gives {want:.6g}; the runtime returns {got:.6g}."]
    if trial.explanation:
        lines += [
            "",
            f"What the runtime computes instead: its outputs equal, within the same tolerance, the specification's "
            f"outputs for the same model {HYPOTHESES[trial.explanation]}.",
        ]
    return lines


# --- the README -------------------------------------------------------------------------------------------------


def readme(reproduction: Reproduction, model: Any, info: dict[str, Any], printed: str) -> str:
    target, trial, minimised = reproduction.target, reproduction.minimised.trial, reproduction.minimised
    runtime = target.runtime
    packages = ", ".join(f"{name} {version}" for name, version in info["packages"].items())
    install = " ".join(f"{name}=={version}" for name, version in info["packages"].items()) + " numpy"
    lstm = trial.variant.case.lstm
    shapes = trial.signature == ("fail", "shape")
    lines = [
        f"# {headline(runtime, trial)}",
        "",
        f"`{runtime}` ({reproduction.runtime_description}; {packages}) "
        + ("fails on" if trial.status == "error" else "runs")
        + f" the ONNX model in this folder (`LSTM` {feature_words(trial)})"
        + (
            ", a model the ONNX specification defines. "
            if trial.status == "error"
            else ", and its result contradicts the ONNX specification. "
        )
        + "`expected.npz` holds what the specification gives, computed in float64 by the NumPy reference of "
        "lstm-conformance from the same float32 inputs and weights.",
        "",
        "## The error" if trial.status == "error" else "## The numbers",
        "",
        *numbers(runtime, trial),
        "",
        "## Run it",
        "",
        "```",
        f"pip install {install}",
        "python repro.py",
        "```",
        "",
        f"`repro.py` uses only {' and '.join(reproduction.script.packages)} and NumPy. On this machine ({info['cpu']}, "
        f"{info['platform']}, Python {info['python']}; all versions in `versions.json`) it printed:",
        "",
        "```",
        printed or "(nothing)",
        "```",
        "",
        "## What the ONNX specification says",
        "",
        *spec_quotes(features(trial), opset_of(model), shapes=shapes, activations=lstm.activations or ()),
        *reference_readings(features(trial), zero_length=_has_zero_length(trial)),
        "## The model",
        "",
        *_model_lines(trial, model),
        "",
        "Files: `model.onnx`, `inputs.npz` (the inputs, by name), `expected.npz` (float64, the specification), "
        + ("`actual.npz` (what the runtime returned), " if trial.actual is not None else "")
        + "`repro.py`, `versions.json`.",
        "",
    ]
    if minimised.controls:
        lines += ["## Controls", "", "The same model with one thing changed:", ""]
        lines += [f"- {step.what}: {step.outcome}" for step in minimised.controls] + [""]
    lines += [
        "## How it was found",
        "",
        f"Lane `{target.id}` of suite `{target.suite}` ({target.found}), run again here: "
        f"{reproduction.original.summary().rstrip('.')}.",
        "",
    ]
    lines += _steps(minimised)
    return "\n".join(lines).rstrip() + "\n"


def _has_zero_length(trial: Trial) -> bool:
    lens = trial.feeds.get("sequence_lens")
    return lens is not None and bool((np.asarray(lens) == 0).any())


def _steps(minimised: Minimised) -> list[str]:
    if not minimised.trials:
        return ["Not minimised (`--no-minimise`): the lane's own model and inputs."]
    if not minimised.steps:
        return [f"Minimisation ran {minimised.trials} variants; none kept the divergence: the lane's own model."]
    lines = [
        f"Minimised by `conformance repro` in {minimised.trials} runs, one change at a time, each kept only "
        "when the same divergence remained:",
        "",
    ]
    for k, step in enumerate(minimised.steps, start=1):
        # Kept steps keep the divergence: the same error (numbers and names aside), the same reading.
        outcome = "the same error" if step.outcome.startswith("errors:") else step.outcome.split("; ")[0]
        lines.append(f"{k}. {step.what}: {outcome}")
    return lines
