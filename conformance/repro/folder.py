"""The repro folder: the model, its data, ``repro.py``, ``versions.json`` and a ``README.md`` for the report.

The folder is written beside its destination and renamed into place once whole, so a failed or stopped
repro leaves nothing half-written. ``repro.py`` is run there before the rename: the README quotes what
it printed on this machine.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from conformance.repro.readme import Reproduction, headline, opset_of, readme
from conformance.repro.scripts import render
from conformance.repro.trial import Trial
from exporters.errors import BadInputError

FILES = ("model.onnx", "inputs.npz", "expected.npz", "actual.npz", "repro.py", "versions.json", "README.md")
SCRIPT_TIMEOUT = 300.0


def refuse_overwrite(path: Path, option: str) -> None:
    """Bad input unless ``path`` is free: absent, or an empty folder. repro never writes over anything."""
    if path.is_symlink():
        raise BadInputError(f"{option} {path}: a symbolic link; repro writes a new folder, never through a link")
    if path.is_file() or (path.exists() and not path.is_dir()):
        raise BadInputError(f"{option} {path}: is a file; repro writes a new folder and never overwrites")
    if path.is_dir() and any(path.iterdir()):
        raise BadInputError(f"{option} {path}: the folder is not empty; repro writes a new folder and never overwrites")


# --- the folder -------------------------------------------------------------------------------------------------


def versions(reproduction: Reproduction, opset: int) -> dict[str, Any]:
    import onnx

    from conformance import __version__, environment

    packages = {}
    for name in reproduction.script.packages:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = "unknown"
    env = environment.collect()
    return {
        "runtime": reproduction.target.runtime,
        "runtime_description": reproduction.runtime_description,
        "packages": packages,
        "runtime_settings": reproduction.settings,
        "onnx_opset": opset,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": env["cpu"],
        "platform": env["platform"],
        "lstm_conformance": __version__,
    }


def write(reproduction: Reproduction, out: Path, *, timeout: float = SCRIPT_TIMEOUT) -> str:
    """Write the folder ``out`` (which must be free); return what ``repro.py`` printed here."""
    trial = reproduction.minimised.trial
    assert trial.model_path is not None
    work = out.parent / f".{out.name}.repro-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        model = _graph(trial)
        opset = opset_of(model)
        shutil.copyfile(trial.model_path, work / "model.onnx")
        initializers = {t.name for t in model.graph.initializer}
        input_order = [i.name for i in model.graph.input if i.name not in initializers]
        output_order = [o.name for o in model.graph.output]
        _save(work / "inputs.npz", {name: trial.feeds[name] for name in input_order})
        _save(work / "expected.npz", {n: np.asarray(trial.expected[n], np.float64) for n in output_order})
        if trial.actual is not None:
            _save(work / "actual.npz", {n: trial.actual[n] for n in output_order if n in trial.actual})
        title = headline(reproduction.target.runtime, trial).replace("`", "")
        script = render(
            reproduction.script,
            title=title,
            inputs=trial.feeds,
            input_order=input_order,
            output_order=output_order,
        )
        (work / "repro.py").write_text(script, encoding="utf-8")
        info = versions(reproduction, opset)
        (work / "versions.json").write_text(json.dumps(info, indent=1, sort_keys=True, default=str) + "\n")
        printed = run_script(work, timeout=timeout)
        (work / "README.md").write_text(readme(reproduction, model, info, printed), encoding="utf-8")
        if out.is_dir():
            out.rmdir()  # empty (refuse_overwrite checked): replaced by the finished folder
        out.parent.mkdir(parents=True, exist_ok=True)
        os.rename(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return printed


def _graph(trial: Trial) -> Any:
    import onnx

    assert trial.model_path is not None
    return onnx.load(str(trial.model_path), load_external_data=False)


def _save(path: Path, arrays: dict[str, Any]) -> None:
    """An ``.npz`` of plain arrays (no pickle), the names in the model's order."""
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def run_script(folder: Path, *, timeout: float) -> str:
    """What ``python repro.py`` prints (stdout, then stderr), run in ``folder`` with this Python."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env["RUST_BACKTRACE"] = "0"
    try:
        done = subprocess.run(
            [sys.executable, "repro.py"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"(repro.py did not finish within {timeout:g} s)"
    text = (done.stdout + done.stderr).strip()
    if done.returncode < 0:
        text += f"\n(the process was killed by signal {-done.returncode})"
    return text


__all__ = ["FILES", "Reproduction", "refuse_overwrite", "write"]
