"""A new user's first ``conformance run`` (smoke): cold (empty export cache, no bytecode of this project)
and warm (the cache and bytecode the cold run left), as whole processes. Prints each figure against its
target (cold <= 15 s, warm <= 5 s on the project's 2-core machine).

    python benchmarks/bench_smoke.py [--runs N] [--no-latency]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"cold": 15.0, "warm": 5.0}
PACKAGES = ("conformance", "exporters", "reference", "reports", "cases")


def drop_bytecode() -> None:
    for package in PACKAGES:
        for cache in (REPO / package).rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)


def one_run(cache: Path, out: Path, extra: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # a user's Python writes it
    env["XDG_CACHE_HOME"] = str(cache)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "conformance", "run", "--out", str(out), *extra],
        env=env, cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"conformance run exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="cold and warm runs each (default 3)")
    parser.add_argument("--no-latency", action="store_true", help="pass --no-latency to the runs")
    args = parser.parse_args()
    extra = ["--no-latency"] if args.no_latency else []
    figures: dict[str, list[float]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as scratch:
        for k in range(args.runs):
            cache = Path(scratch) / f"cache{k}"
            drop_bytecode()
            figures["cold"].append(one_run(cache, Path(scratch) / f"cold{k}", extra))
            figures["warm"].append(one_run(cache, Path(scratch) / f"warm{k}", extra))
    print(f"python {sys.version.split()[0]}; os.cpu_count() {os.cpu_count()}; {args.runs} runs each; "
          f"conformance run {' '.join(extra) or '(smoke, latency on)'}")  # fmt: skip
    print(f"{'run':6} {'median':>8} {'min':>8} {'max':>8} {'target':>8}  within")
    for name, values in figures.items():
        median = statistics.median(values)
        within = "yes" if median <= TARGETS[name] else "no"
        print(f"{name:6} {median:8.2f} {min(values):8.2f} {max(values):8.2f} {TARGETS[name]:8.1f}  {within}")


if __name__ == "__main__":
    main()
