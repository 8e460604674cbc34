"""Run the fuzz properties of tests/conformance/test_fuzz.py for minutes instead of seconds.

Usage: python tools/fuzz.py [--minutes 5] [--target cases|reference|onnx] [--seed N]

The test file runs each property on a few dozen examples so the suite stays
fast; this runs the same properties (``test_fuzz.TARGETS``) in batches of
fresh random examples until the time is spent, splitting it evenly between
the selected properties. It prints the number of examples run per property
and, for a failure, hypothesis's shrunk falsifying example and the
traceback. Exit code 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BATCH = 500  # examples per hypothesis run; a run is also the unit of progress output


def _run_property(strategy: Any, check: Any, seconds: float, seed: int | None) -> tuple[int, BaseException | None]:
    """Examples run and the first failure (after shrinking), within ``seconds``."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as fixed_seed

    count = 0

    def counted(value: Any) -> None:
        nonlocal count
        count += 1
        check(value)

    stop = time.monotonic() + seconds
    batch = 0
    while time.monotonic() < stop:
        test = settings(
            max_examples=BATCH, deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True
        )(given(strategy())(counted))
        if seed is not None:
            test = fixed_seed(seed + batch)(test)
        batch += 1
        try:
            test()
        except Exception as exc:
            return count, exc
    return count, None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="total time to spend (default 5)")
    parser.add_argument("--target", choices=["cases", "reference", "onnx"], action="append",
                        help="what to fuzz (repeatable; default: all three)")  # fmt: skip
    parser.add_argument("--seed", type=int, help="seed the random examples (reproducible runs)")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error(f"--minutes: expected a positive number, got {args.minutes:g}")

    sys.path.insert(0, str(REPO))
    from tests.conformance import test_fuzz

    targets = args.target or list(test_fuzz.TARGETS)
    properties = [(t, name, strategy, check) for t in targets for name, strategy, check in test_fuzz.TARGETS[t]]
    share = args.minutes * 60 / len(properties)
    failures = []
    for target, name, strategy, check in properties:
        start = time.monotonic()
        count, failure = _run_property(strategy, check, share, args.seed)
        seconds = time.monotonic() - start
        verdict = "ok" if failure is None else "FAILED"
        print(f"{target}: {name}: {count} examples in {seconds:.0f} s: {verdict}", flush=True)
        if failure is not None:
            failures.append((target, name, failure))
    for target, name, failure in failures:
        print(f"\n=== {target}: {name} ===", file=sys.stderr)
        traceback.print_exception(failure, file=sys.stderr)
    print(f"{len(failures)} failing propert{'y' if len(failures) == 1 else 'ies'} of {len(properties)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
