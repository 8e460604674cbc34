"""``repro.py``: a script of about twenty lines that runs the model with the runtime's own package and NumPy.

One template per runtime family: ONNX Runtime (an execution provider and a graph-optimisation level),
OpenVINO (the CPU plugin, f32 or its default precision), tract (concrete input facts: a symbolic batch
aborts tract), and ONNX Runtime plugin EPs (``register_execution_provider_library`` and
``add_provider_for_devices``). The script imports nothing of lstm-conformance; run in its folder, it
loads ``model.onnx``, feeds ``inputs.npz`` and prints the greatest difference of each output from
``expected.npz``, or the error the runtime raises.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from exporters.errors import BadInputError


class NoTemplateError(BadInputError):
    """A runtime that repro has no script for (PyTorch, the NumPy reference, a plug-in)."""


@dataclass(frozen=True)
class Script:
    """What a runtime's script needs: pip packages, import lines, and the lines that set ``outputs``."""

    packages: tuple[str, ...]  # distributions to install (their versions go to versions.json)
    imports: tuple[str, ...]
    body: tuple[str, ...]  # run inside ``try:``; they set ``outputs`` (name -> array)
    package_label: str  # "openvino", "onnxruntime" ... as the error line names the runtime


def template(runtime: Any) -> Script:
    """The script template for ``runtime``; :class:`NoTemplateError` for one without a template."""
    from conformance.runtimes.onnxruntime_runtime import OPT_LEVELS, OrtRuntime
    from conformance.runtimes.openvino_runtime import AUTO, OpenVinoRuntime, compile_config
    from conformance.runtimes.ort_plugin_ep import PluginEpRuntime
    from conformance.runtimes.tract_runtime import TractRuntime

    ort_outputs = "    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))"
    quiet = "ort.set_default_logger_severity(4)  # failures come back as the exception below, not as log lines"
    if isinstance(runtime, OrtRuntime):
        providers = json.dumps([runtime.provider])
        return Script(
            ("onnxruntime",),
            ("import onnxruntime as ort",),
            (
                f"    {quiet}",
                "    options = ort.SessionOptions()",
                f"    options.graph_optimization_level = ort.GraphOptimizationLevel.{OPT_LEVELS[runtime.opt_level]}",
                f'    session = ort.InferenceSession("model.onnx", options, providers={providers})',
                ort_outputs,
            ),
            "onnxruntime",
        )
    if isinstance(runtime, OpenVinoRuntime):
        config = compile_config(runtime.precision)
        arguments = f'"CPU", {json.dumps(config)}' if config else '"CPU"'
        note = "  # the CPU's default precision" if runtime.precision == AUTO else ""
        return Script(
            ("openvino",),
            ("import openvino as ov",),
            (
                f'    compiled = ov.Core().compile_model("model.onnx", {arguments}){note}',
                "    results = compiled(inputs)",
                "    outputs = dict(zip(OUTPUTS, (results[port] for port in compiled.outputs)))",
            ),
            "openvino",
        )
    if isinstance(runtime, TractRuntime):
        return Script(
            ("tract",),
            ("import tract",),
            (
                '    model = tract.onnx().load("model.onnx")',
                "    for index, fact in enumerate(FACTS.values()):  # concrete shapes: a symbolic batch aborts tract",
                "        model.set_input_fact(index, fact)",
                "    results = model.into_model().into_runnable().run([inputs[name] for name in FACTS])",
                "    outputs = dict(zip(OUTPUTS, (result.to_numpy() for result in results)))",
            ),
            "tract",
        )
    if isinstance(runtime, PluginEpRuntime) and runtime.library.path is not None:
        library = runtime.library
        module = library.name.replace("-", "_")
        from_package = library.source.startswith(library.name) and _has_library_getter(module)
        imports = ["import onnxruntime as ort"] + ([f"import {module}"] if from_package else [])
        where = f"{module}.get_library_path()" if from_package else json.dumps(str(library.path))
        options = json.dumps(dict(runtime.variant.options))
        return Script(
            ("onnxruntime", library.name) if from_package else ("onnxruntime",),
            tuple(imports),
            (
                f"    {quiet}",
                f'    ort.register_execution_provider_library("{library.name}", {where})',
                "    options = ort.SessionOptions()",
                f'    devices = [d for d in ort.get_ep_devices() if d.ep_name == "{runtime.ep_name}"]',
                f"    options.add_provider_for_devices(devices, {options})",
                '    session = ort.InferenceSession("model.onnx", options)',
                ort_outputs,
            ),
            f"onnxruntime with {runtime.ep_name}",
        )
    raise NoTemplateError(
        f"runtime {runtime.id!r} has no repro script template: repro writes scripts for ONNX Runtime "
        "(ort-*), OpenVINO (openvino-cpu*) and tract runtimes"
    )


def _has_library_getter(module: str) -> bool:
    import importlib

    try:
        return callable(getattr(importlib.import_module(module), "get_library_path", None))
    except ImportError:
        return False


def fact(value: np.ndarray) -> str:
    """tract's input fact for a value: ``"2,2,1,f32"``."""
    from conformance.runtimes.tract_runtime import input_fact

    return input_fact(value)


def render(
    script: Script,
    *,
    title: str,
    inputs: dict[str, np.ndarray],
    input_order: list[str],
    output_order: list[str],
) -> str:
    """The script's text: ``title`` as its first line, then the template with the model's names filled in."""
    body = "\n".join(script.body)
    constants = []
    if "OUTPUTS" in body:
        constants.append(f"OUTPUTS = {json.dumps(output_order)}  # the model's outputs, in order")
    if "FACTS" in body:
        facts = {name: fact(inputs[name]) for name in input_order}
        constants.append(f"FACTS = {json.dumps(facts)}  # the model's inputs, in order, with their shapes")
    needs = " and ".join((*script.packages, "numpy"))
    lines = [
        f"# {title}",
        f"# Run in this folder: python repro.py   (needs only {needs})",
        "import numpy as np",
        *script.imports,
        "",
        *constants,
        'inputs, expected = dict(np.load("inputs.npz")), np.load("expected.npz")',
        "try:",
        body,
        "except Exception as exc:  # the runtime refuses the model",
        f'    raise SystemExit(f"{script.package_label} raised {{type(exc).__name__}}: {{exc}}") from None',
        "for name in expected.files:",
        "    actual, want = np.asarray(outputs[name], np.float64), expected[name]",
        "    if actual.shape != want.shape:",
        '        print(f"{name}: shape {list(actual.shape)}, expected {list(want.shape)}")',
        "    else:",
        '        print(f"{name}: greatest |actual - expected| = {np.abs(actual - want).max():.3g}")',
    ]
    return "\n".join(lines) + "\n"
