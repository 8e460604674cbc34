"""Harness overhead: ``conformance.timing.measure`` against a bare timed ``session.run`` loop.

Usage: ``python benchmarks/bench_harness_overhead.py [--rounds N] [--samples N] [--threads N]``

One ONNX model (``exporters.onnx_native.build_model``: one bidirectional LSTM
layer, I=64, H=128), one ONNX Runtime CPU session, one fixed input (T=32, B=8),
in one process. Each round times ``--samples`` calls twice:

- bare: ``t0 = perf_counter_ns(); session.run(None, feeds); times.append(perf_counter_ns() - t0)``;
- harness: ``measure(lambda: session.run(None, feeds), ...)`` held to the same number of
  samples (``min_samples = max_samples = --samples``, no early stop), so both medians
  come from equally many calls.

Many short rounds alternate the order (bare first, then harness first: ABBA...)
so that the changing speed of a shared machine falls on both alike. Each round
gives one paired ratio of medians (harness / bare); the verdict takes the median
of those ratios with its distribution-free 95% interval (``median_ci_ranks``)
against the DESIGN target: the harness adds less than 3% to the median. Pooled
samples (``compare_latency``) are shown too, but they mix the machine's states
across rounds. The last line shows what one default ``measure()`` call (as a
lane makes it) costs and reports.

A script, not a test: it prints.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any

import numpy as np

from conformance.timing import Latency, compare_latency, measure, median_ci_ranks
from exporters.base import ExportOptions
from exporters.onnx_native import build_model
from reference import LSTMConfig
from reference.weights import generate

TARGET = 1.03  # the harness may add at most 3% to the median latency
STEPS, BATCH, INPUT, HIDDEN = 32, 8, 64, 128


def make_session(threads: int) -> tuple[Any, dict[str, np.ndarray]]:
    import onnxruntime as ort

    config = LSTMConfig(input_size=INPUT, hidden_size=HIDDEN, direction="bidirectional")
    model = build_model(config, generate(config, seed=0), ExportOptions())
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])
    feeds = {"X": np.random.default_rng(0).standard_normal((STEPS, BATCH, INPUT)).astype(np.float32)}
    return session, feeds


def bare(session: Any, feeds: dict[str, np.ndarray], samples: int) -> tuple[list[int], float]:
    """A bare loop as a person would write it; returns per-call ns and wall seconds per sample."""
    clock = time.perf_counter_ns
    started = clock()
    for _ in range(3):  # the same warm-up as measure's default
        session.run(None, feeds)
    times: list[int] = []
    for _ in range(samples):
        t0 = clock()
        session.run(None, feeds)
        times.append(clock() - t0)
    return times, (clock() - started) / 1e9 / samples


def harness(session: Any, feeds: dict[str, np.ndarray], samples: int) -> tuple[list[int], float]:
    started = time.perf_counter_ns()
    latency = measure(
        lambda: session.run(None, feeds),
        min_samples=samples,
        max_samples=samples,
        budget_s=3600.0,
        target_rel_ci=0.0,
    )
    wall = (time.perf_counter_ns() - started) / 1e9
    assert latency.count == samples
    return list(latency.samples_ns), wall / samples  # wall per sample includes the 3 warm-up calls, as bare's does


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="ABBA rounds (default 30)")
    parser.add_argument("--samples", type=int, default=100, help="timed calls per loop per round (default 100)")
    parser.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (default 0: ORT's default)")
    args = parser.parse_args()

    import onnxruntime as ort

    session, feeds = make_session(args.threads)
    for _ in range(20):
        session.run(None, feeds)
    print(
        f"onnxruntime {ort.__version__} CPU, intra-op threads {args.threads or 'default'}; python "
        f"{platform.python_version()}; {os.cpu_count()} CPUs; model: 1-layer bidirectional LSTM "
        f"I={INPUT} H={HIDDEN}, input T={STEPS} B={BATCH}; {args.rounds} rounds x {args.samples} calls per loop"
    )
    print(f"{'round':>5}  {'order':<14} {'bare ms':>9} {'harness ms':>10} {'ratio':>7}")
    pooled: dict[str, list[int]] = {"bare": [], "harness": []}
    walls: dict[str, list[float]] = {"bare": [], "harness": []}
    ratios = []
    for round_ in range(args.rounds):
        order = ("bare", "harness") if round_ % 2 == 0 else ("harness", "bare")
        medians = {}
        for name in order:
            times, wall = (bare if name == "bare" else harness)(session, feeds, args.samples)
            pooled[name] += times
            walls[name].append(wall)
            medians[name] = statistics.median(times) / 1e6
        ratios.append(medians["harness"] / medians["bare"])
        print(
            f"{round_:>5}  {' then '.join(order):<14} {medians['bare']:>9.4f} {medians['harness']:>10.4f} "
            f"{ratios[-1]:>7.4f}"
        )

    ordered = sorted(ratios)
    ranks = median_ci_ranks(len(ordered))
    low, high = (ordered[ranks[0]], ordered[ranks[1]]) if ranks else (ordered[0], ordered[-1])
    pooled_change = compare_latency(pooled["bare"], pooled["harness"], max_slowdown=TARGET)
    print()
    print(
        f"harness / bare, paired by round: median {statistics.median(ratios):.4f} "
        f"(95% interval {low:.4f}-{high:.4f}; range {ordered[0]:.4f}-{ordered[-1]:.4f})"
    )
    print(
        f"pooled medians:  bare {pooled_change.base_median / 1e6:.4f} ms, "
        f"harness {pooled_change.head_median / 1e6:.4f} ms, ratio {pooled_change.ratio:.4f} "
        f"(bootstrap {pooled_change.ci_low:.4f}-{pooled_change.ci_high:.4f}; "
        "mixes the machine's states across rounds, so the paired figure decides)"
    )
    print(
        f"wall per sample: bare {statistics.median(walls['bare']) * 1e3:.4f} ms, "
        f"harness {statistics.median(walls['harness']) * 1e3:.4f} ms "
        "(3 warm-up calls included; the rest is bookkeeping between samples)"
    )
    if ranks is None:
        verdict = "INCONCLUSIVE: fewer than 6 rounds give no 95% interval; rerun with more --rounds"
    elif high < TARGET:
        verdict = f"PASS: the harness adds less than {TARGET - 1:.0%} to the median (interval below x{TARGET})"
    elif low > TARGET:
        verdict = f"FAIL: the harness adds more than {TARGET - 1:.0%} to the median"
    else:
        verdict = f"INCONCLUSIVE: the interval straddles x{TARGET} (a noisy machine?); rerun with more --rounds"
    print(verdict)

    started = time.perf_counter()
    default: Latency = measure(lambda: session.run(None, feeds))
    wall = time.perf_counter() - started
    print(
        f"one default measure(): {default.count} samples in {wall * 1e3:.1f} ms wall, "
        f"median {default.median_ms:.4f} ms [{default.ci_low_ms:.4f}, {default.ci_high_ms:.4f}], "
        f"converged {default.converged}, "
        f"{default.tokens_per_s(STEPS * BATCH):,.0f} tokens/s"
    )


if __name__ == "__main__":
    main()
