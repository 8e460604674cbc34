"""Whole-process cost of ``conformance check``: wall seconds and peak RSS of the command as a user runs it.

Usage: ``python benchmarks/bench_check.py [--runs N] [--keep DIR]``

Three models are built once per benchmark run (not timed), into a temporary folder or ``--keep DIR``:

- M1.onnx: a 2-layer bidirectional ``nn.LSTM(16, 32)`` (``batch_first=False``), exported by the
  TorchScript exporter (``dynamo=False``) with ``seq`` and ``batch`` dynamic; M1.pt is
  ``torch.save(module.state_dict())`` of the same module;
- M2.onnx (~2 MB), made with onnx.helper: a Conv1d front-end (64 -> 128 channels, ReLU), then
  ``If(Equal(sr, 16000))`` whose two branches each hold an LSTM (hidden 192, own weights).

Each command is run once uncounted (warm-up), then ``--runs`` times as a fresh process, round-robin
(run 1 of every command, then run 2, ...) so that a shared machine's changing speed falls on all alike:

1. ``conformance check M1.onnx`` (target 0.5 s);
2. ``conformance check M2.onnx`` (target 1.5 s);
3. ``conformance check M1.onnx --weights M1.pt`` (target 0.8 s);
4. when polygraphy is installed, ``polygraphy run M1.onnx --onnxrt --input-shapes x:[7,3,16]`` as a
   peer's figure (no target).

Printed: median, min and max wall seconds of the whole process (interpreter start, imports, work),
the peak RSS in MiB (the largest ``ru_maxrss`` that ``os.wait4`` reports for the child: the child
itself or the largest process it waited for), and whether the median is within the target. Linux
starts a spawned child's ``ru_maxrss`` at the spawning process's peak, so the models are built in a
separate process (torch and onnx never load here) and this script's own peak is printed as the floor
below which no figure can go. Exit
codes 0 (pass) and 1 (conformance failure) are both a completed check; any other code puts the last
line of the command's stderr under the table. A script, not a test: it prints.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

M2_FEATURES, M2_CHANNELS, M2_HIDDEN = 64, 128, 192
COMPLETED = (0, 1)  # pass, conformance failure: both are a check that ran to the end


@dataclass(frozen=True)
class Command:
    """One command line to time, with its target median in seconds (None for a peer's figure)."""

    label: str
    argv: tuple[str, ...]
    target_s: float | None


@dataclass(frozen=True)
class Run:
    """One finished child process."""

    wall_s: float
    peak_mib: float
    exit_code: int
    stderr_tail: str


def build_m1(folder: Path) -> tuple[Path, Path]:
    """M1.onnx (TorchScript exporter, seq and batch dynamic) and M1.pt (its state_dict)."""
    import torch

    torch.manual_seed(0)
    module = torch.nn.LSTM(16, 32, num_layers=2, bidirectional=True).eval()
    onnx_path, pt_path = folder / "M1.onnx", folder / "M1.pt"
    torch.onnx.export(
        module,
        (torch.randn(7, 3, 16),),
        str(onnx_path),
        dynamo=False,
        input_names=["x"],
        output_names=["y", "h", "c"],
        dynamic_axes={"x": {0: "seq", 1: "batch"}, "y": {0: "seq", 1: "batch"}, "h": {1: "batch"}, "c": {1: "batch"}},
    )
    torch.save(module.state_dict(), pt_path)
    return onnx_path, pt_path


def _lstm_branch(tag: str, seed: int) -> tuple[Any, list[Any]]:
    """A branch graph running one LSTM on the outer ``seq``, and the outer-scope initializers it reads."""
    import numpy as np
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(M2_HIDDEN)
    weights = {
        f"{tag}.W": rng.uniform(-k, k, (1, 4 * M2_HIDDEN, M2_CHANNELS)),
        f"{tag}.R": rng.uniform(-k, k, (1, 4 * M2_HIDDEN, M2_HIDDEN)),
        f"{tag}.B": rng.uniform(-k, k, (1, 8 * M2_HIDDEN)),
    }
    lstm = helper.make_node(
        "LSTM",
        ["seq", f"{tag}.W", f"{tag}.R", f"{tag}.B"],
        [f"{tag}.Y", f"{tag}.Y_h"],
        name="rnn/LSTM",
        hidden_size=M2_HIDDEN,
    )
    outputs = [
        helper.make_tensor_value_info(f"{tag}.Y", 1, ["T", 1, "batch", M2_HIDDEN]),
        helper.make_tensor_value_info(f"{tag}.Y_h", 1, [1, "batch", M2_HIDDEN]),
    ]
    graph = helper.make_graph([lstm], tag, [], outputs)
    return graph, [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()]


def build_m2(folder: Path) -> Path:
    """M2.onnx: Conv1d + ReLU front-end, then ``If(sr == 16000)`` with an LSTM in each branch."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    k = 1.0 / np.sqrt(M2_FEATURES * 3)
    then_graph, then_weights = _lstm_branch("sr16k", seed=16)
    else_graph, else_weights = _lstm_branch("sr8k", seed=8)
    initializers = [
        numpy_helper.from_array(rng.uniform(-k, k, (M2_CHANNELS, M2_FEATURES, 3)).astype(np.float32), "conv.w"),
        numpy_helper.from_array(rng.uniform(-k, k, M2_CHANNELS).astype(np.float32), "conv.b"),
        numpy_helper.from_array(np.array(16000, np.int64), "sr_16k"),
        *then_weights,
        *else_weights,
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["conv"], name="frontend/Conv", pads=[1, 1]),
        helper.make_node("Relu", ["conv"], ["feat"], name="frontend/Relu"),
        helper.make_node("Transpose", ["feat"], ["seq"], name="frontend/Transpose", perm=[2, 0, 1]),
        helper.make_node("Equal", ["sr", "sr_16k"], ["is_16k"], name="Equal_sr"),
        helper.make_node("If", ["is_16k"], ["y", "y_h"], name="If_sr", then_branch=then_graph, else_branch=else_graph),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_if_lstm",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", M2_FEATURES, "T"]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", 1, "batch", M2_HIDDEN]),
            helper.make_tensor_value_info("y_h", TensorProto.FLOAT, [1, "batch", M2_HIDDEN]),
        ],
        initializers,
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="lstm-conformance-bench"
    )
    onnx.checker.check_model(proto)
    path = folder / "M2.onnx"
    onnx.save(proto, path)
    return path


def build_models(folder: Path) -> None:
    """All three files, quietly (the TorchScript exporter warns that it is the legacy one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_m1(folder)
    build_m2(folder)


def _script(name: str) -> str:
    """The console script ``name`` of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def _redirect(out: Any, err: Any) -> list[tuple[Any, ...]]:
    """The child's stdout and stderr go to these open files."""
    return [(os.POSIX_SPAWN_DUP2, out.fileno(), 1), (os.POSIX_SPAWN_DUP2, err.fileno(), 2)]


# As a user's shell runs them: a PYTHONDONTWRITEBYTECODE in this environment would make every run compile
# the project's modules again (~60 ms); the warm-up run writes the bytecode caches.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_once(argv: tuple[str, ...], logs: Path) -> Run:
    """Run ``argv`` as a fresh process; its wall time, peak RSS (``os.wait4``) and exit code."""
    with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], list(argv), CHILD_ENV, file_actions=_redirect(out, err))
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - start
    lines = (logs / "stderr").read_text(errors="replace").strip().splitlines()
    return Run(wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), lines[-1] if lines else "")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def report(commands: list[Command], runs: dict[str, list[Run]]) -> list[str]:
    """The table, then the stderr line of each command that ended with a code other than 0 or 1."""
    lines = [f"{'command':52} {'median':>7} {'min':>7} {'max':>7} {'RSS MiB':>8} {'target':>7} {'within':>6} exit"]
    notes = []
    for command in commands:
        done = runs[command.label]
        walls = [r.wall_s for r in done]
        median = statistics.median(walls)
        codes = sorted({r.exit_code for r in done})
        target = "peer" if command.target_s is None else f"{command.target_s:.1f}"
        within = "-" if command.target_s is None else ("yes" if median <= command.target_s else "no")
        if command.target_s is not None and any(code not in COMPLETED for code in codes):
            within = "error"
        lines.append(
            f"{command.label:52} {median:7.3f} {min(walls):7.3f} {max(walls):7.3f} "
            f"{max(r.peak_mib for r in done):8.0f} {target:>7} {within:>6} {','.join(map(str, codes))}"
        )
        bad = [r for r in done if r.exit_code not in COMPLETED]
        if bad:
            notes.append(f"  {command.label}: exit {bad[-1].exit_code}: {bad[-1].stderr_tail}")
    return lines + notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="processes per command (default 5)")
    parser.add_argument("--keep", type=Path, help="build the models into DIR and keep them (default: a temp folder)")
    args = parser.parse_args()

    polygraphy = _script("polygraphy")
    has_polygraphy = shutil.which(polygraphy) is not None and _version("polygraphy") != "not installed"
    print(
        f"python {platform.python_version()}; onnxruntime {_version('onnxruntime')}; torch {_version('torch')}; "
        f"polygraphy {_version('polygraphy')}; os.cpu_count() {os.cpu_count()}; {args.runs} runs per command"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        builder = multiprocessing.get_context("spawn").Process(target=build_models, args=(folder,))
        builder.start()
        builder.join()
        if builder.exitcode != 0:
            raise SystemExit(f"building the models failed (exit {builder.exitcode})")
        m1, m1_pt, m2 = folder / "M1.onnx", folder / "M1.pt", folder / "M2.onnx"
        print(
            f"models in {folder}: M1.onnx {m1.stat().st_size / 1024:.0f} KiB, M1.pt {m1_pt.stat().st_size / 1024:.0f} "
            f"KiB, M2.onnx {m2.stat().st_size / 2**20:.2f} MiB"
        )
        floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"RSS floor {floor:.0f} MiB (a spawned child's ru_maxrss starts at this process's peak)")
        conformance = _script("conformance")
        commands = [
            Command("conformance check M1.onnx", (conformance, "check", str(m1)), 0.5),
            Command("conformance check M2.onnx", (conformance, "check", str(m2)), 1.5),
            Command(
                "conformance check M1.onnx --weights M1.pt",
                (conformance, "check", str(m1), "--weights", str(m1_pt)),
                0.8,
            ),
        ]
        if has_polygraphy:
            argv = (polygraphy, "run", str(m1), "--onnxrt", "--input-shapes", "x:[7,3,16]")
            commands.append(Command("polygraphy run M1.onnx --onnxrt (x:[7,3,16])", argv, None))
        runs: dict[str, list[Run]] = {c.label: [] for c in commands}
        for command in commands:  # warm-up, not counted: bytecode caches and the OS file cache
            run_once(command.argv, Path(tmp))
        for _ in range(args.runs):
            for command in commands:
                runs[command.label].append(run_once(command.argv, Path(tmp)))
        print("\n".join(report(commands, runs)))


if __name__ == "__main__":
    main()
