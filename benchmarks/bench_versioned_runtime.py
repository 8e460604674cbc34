"""Versioned runtimes (``ort-cpu@VERSION``): the cost of the first use, of each run after it, and of timing
through the worker.

Usage: ``python benchmarks/bench_versioned_runtime.py [--version 1.31.1] [--runs 3] [--rounds 10]``

1. First use: the environment for onnxruntime==VERSION is created in a fresh temporary folder (not the
   cache, so it is really the first time; the package index and pip's own cache are as they are here),
   then its worker starts. Reuse: the same again with the environment there.
2. Per run: ``conformance run --suite smoke --no-latency`` with ``--runtime ort-cpu`` and with
   ``--runtime ort-cpu@VERSION`` (its environment in the cache, made beforehand), alternating, ``--runs``
   times each; the overhead per run is the difference of the median walls (target: at most 1 s).
3. Latency: one ORT session of the same model in this process (``measure`` of ``session.run``, as the
   ``ort-cpu`` lanes are timed) and through a worker (``timed()`` of a versioned session whose
   environment is this interpreter, so both are the same onnxruntime and only the pipe differs), in
   ABBA rounds; a small model (the smoke suite's shapes) and a larger one (bench_harness_overhead's).

A script, not a test: it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from conformance.runtimes.versioned import VERSIONED_BASES, VersionedRuntime, stop_workers
from conformance.runtimes.versioned_env import Environment, EnvironmentSpec, provision
from conformance.timing import measure, median_ci_ranks
from exporters.base import ExportOptions
from exporters.registry import export
from reference import LSTMConfig
from reference.weights import generate

MODELS = {  # name -> (config, T, B)
    "smoke-size LSTM (I=8, H=16, T=7, B=3)": (LSTMConfig(input_size=8, hidden_size=16), 7, 3),
    "bidirectional LSTM (I=64, H=128, T=32, B=8)": (
        LSTMConfig(input_size=64, hidden_size=128, direction="bidirectional"),
        32,
        8,
    ),
}
TARGET_PER_RUN_S = 1.0


def first_use(version: str) -> None:
    base = VERSIONED_BASES["ort-cpu"]
    with tempfile.TemporaryDirectory(prefix="bench-versioned-") as root:
        for label in ("first use", "reuse"):
            started = time.perf_counter()
            environment = provision(EnvironmentSpec("onnxruntime", version), root=Path(root))
            made = time.perf_counter() - started
            runtime = VersionedRuntime(base, version, environment=environment)
            started = time.perf_counter()
            reason = runtime.unavailable()
            worker = time.perf_counter() - started
            assert reason is None, reason
            stop_workers()
            size = sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file()) / 2**20
            print(
                f"{label:>9}: environment {made:7.3f} s, worker start (import onnxruntime {version}) {worker:.3f} s; "
                f"folder {size:.0f} MiB"
            )


def per_run(version: str, runs: int) -> None:
    provision(EnvironmentSpec("onnxruntime", version))  # in the cache, as a second run finds it
    walls: dict[str, list[float]] = {"ort-cpu": [], f"ort-cpu@{version}": []}
    lanes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-versioned-runs-") as scratch:
        for i in range(runs):
            for runtime in list(walls) if i % 2 == 0 else list(walls)[::-1]:
                out = Path(scratch) / f"{runtime}-{i}"
                command = [sys.executable, "-m", "conformance", "run", "--suite", "smoke", "--no-latency"]
                started = time.perf_counter()
                done = subprocess.run(
                    [*command, "--runtime", runtime, "--out", str(out)], capture_output=True, text=True, check=False
                )
                walls[runtime].append(time.perf_counter() - started)
                assert done.returncode in (0, 1), done.stderr
                lanes[runtime] = len(json.loads((out / "results.json").read_text())["results"])
    base, versioned = (statistics.median(w) for w in walls.values())
    n = lanes[f"ort-cpu@{version}"]
    print(
        f"smoke --no-latency, {runs} runs each: ort-cpu median {base:.2f} s "
        f"({', '.join(f'{w:.2f}' for w in walls['ort-cpu'])}); ort-cpu@{version} median {versioned:.2f} s "
        f"({', '.join(f'{w:.2f}' for w in walls[f'ort-cpu@{version}'])}); {n} lanes each"
    )
    overhead = versioned - base
    verdict = "met" if overhead <= TARGET_PER_RUN_S else "NOT met"
    print(
        f"overhead: {overhead:+.2f} s per run, {overhead / n * 1e3:+.1f} ms per lane "
        f"(target <= {TARGET_PER_RUN_S:g} s per run: {verdict})"
    )


def latency(rounds: int, samples: int) -> None:
    import onnxruntime as ort

    from conformance.runtimes.onnxruntime_runtime import OrtRuntime

    here = VersionedRuntime(VERSIONED_BASES["ort-cpu"], ort.__version__, environment=Environment(Path(sys.executable)))
    assert here.unavailable() is None
    for name, (config, steps, batch) in MODELS.items():
        weights = generate(config, seed=0)
        artifact = export(config, weights, "onnx-native", ExportOptions())
        feeds = {"X": np.random.default_rng(0).standard_normal((steps, batch, config.input_size)).astype(np.float32)}
        calls: dict[str, Any] = {}
        for label, runtime in (("in process", OrtRuntime()), ("worker", here)):
            session = runtime.open(artifact, config, weights)
            session.placement()
            calls[label] = session.timed(feeds)[0]
        medians: dict[str, list[float]] = {"in process": [], "worker": []}
        ratios = []
        for round_ in range(rounds):
            order = list(calls) if round_ % 2 == 0 else list(calls)[::-1]
            for label in order:
                timed = measure(calls[label], warmup=3, min_samples=samples, max_samples=samples, budget_s=3600.0)
                medians[label].append(timed.median_ms)
            ratios.append(medians["worker"][-1] / medians["in process"][-1])
        ordered = sorted(ratios)
        ranks = median_ci_ranks(len(ordered))
        low, high = (ordered[ranks[0]], ordered[ranks[1]]) if ranks else (ordered[0], ordered[-1])
        inside, remote = statistics.median(medians["in process"]), statistics.median(medians["worker"])
        print(
            f"{name}: median in process {inside * 1e3:.1f} us, through the worker {remote * 1e3:.1f} us: "
            f"{(remote - inside) * 1e3:+.1f} us per call, ratio {statistics.median(ratios):.3f} "
            f"(95% interval {low:.3f}-{high:.3f}; {rounds} rounds x {samples} calls)"
        )
    stop_workers()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default="1.31.1", help="the onnxruntime release to install (default 1.31.1)")
    parser.add_argument("--runs", type=int, default=3, help="smoke runs per runtime (default 3)")
    parser.add_argument("--rounds", type=int, default=10, help="ABBA latency rounds (default 10)")
    parser.add_argument("--samples", type=int, default=300, help="timed calls per round (default 300)")
    parser.add_argument("--skip", action="append", default=[], choices=["first", "runs", "latency"])
    args = parser.parse_args()
    import onnxruntime as ort

    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; installed onnxruntime {ort.__version__}; "
        f"versioned: onnxruntime {args.version}"
    )
    if "first" not in args.skip:
        first_use(args.version)
    if "runs" not in args.skip:
        per_run(args.version, args.runs)
    if "latency" not in args.skip:
        latency(args.rounds, args.samples)


if __name__ == "__main__":
    main()
