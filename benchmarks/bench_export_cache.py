"""Cold vs cached export time per exporter (the export cache's reason to exist).

Usage: python benchmarks/bench_export_cache.py [--repeats 5]

For a 2-layer bidirectional LSTM (I=16, H=32) and a small language model, each
ONNX exporter exports once into an empty cache (cold: the exporter runs, the
checker validates), then the same request is served from the cache (median of
--repeats). The first dynamo export in a process also pays torch.export's
one-time start-up; the table shows it separately from a later cold export.
Target: cached >= 20x faster than cold for the dynamo exporter.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from exporters.base import ExportOptions
from exporters.registry import export
from reference.config import LMConfig, LSTMConfig
from reference.weights import generate, generate_lm

EXPORTERS = ("onnx-native", "torch-script", "torch-dynamo")


def _timed_export(*args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = export(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    stack = LSTMConfig(16, 32, num_layers=2, direction="bidirectional")
    lm = LMConfig(32, LSTMConfig(16, 32))
    models = [("lstm 2x bi", stack, generate(stack, seed=0)), ("lm", lm, generate_lm(lm, seed=0))]
    print(f"{'model':11} {'exporter':13} {'first cold s':>12} {'cold s':>8} {'cached ms':>10} {'speed-up':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, model, weights in models:
            for exporter in EXPORTERS:
                first, artifact = _timed_export(model, weights, exporter, cache_dir=Path(tmp) / "a")
                assert artifact.ok, artifact.reason
                # a second cold export in the same process: the exporter's steady-state cost
                cold, _ = _timed_export(
                    model, weights, exporter, ExportOptions(example_batch=3), cache_dir=Path(tmp) / "b"
                )
                hits = []
                for _ in range(args.repeats):
                    seconds, hit = _timed_export(model, weights, exporter, cache_dir=Path(tmp) / "a")
                    assert hit.cached
                    hits.append(seconds)
                cached = statistics.median(hits)
                print(f"{label:11} {exporter:13} {first:12.3f} {cold:8.3f} {cached * 1e3:10.2f} {cold / cached:8.0f}x")


if __name__ == "__main__":
    main()
