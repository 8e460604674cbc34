"""Measure how much of the default tolerance float32 runtimes use, from real result files.

Usage:
    conformance run --suite full --out out/full      # every CPU lane of the conformance matrix
    python benchmarks/measure_tolerances.py out/full/results.json [more results.json ...]

For every passing lane whose outputs are float32, headroom is
max |a - e| / (atol + rtol * |e|) over the output's elements. Scaling atol and
rtol by the same factor k scales every headroom by 1/k exactly, so the table
also says what the worst headroom would be under other tolerances of the same
atol:rtol ratio. The default float32 row in conformance/compare.py is set so
the worst measured headroom stays well below 1.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

from conformance.compare import DEFAULT_TOLERANCES


def main(paths: list[str]) -> None:
    worst: dict[str, tuple[float, str, float]] = defaultdict(lambda: (0.0, "", 0.0))
    lanes = 0
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            document = json.load(fh)
        for record in document["results"]:
            if record["status"] != "pass":
                continue
            for name, diff in record.get("outputs", {}).items():
                if diff["actual_dtype"] != "float32" or isinstance(diff["headroom"], str):
                    continue
                lanes += 1
                if diff["headroom"] > worst[record["runtime"]][0]:
                    worst[record["runtime"]] = (diff["headroom"], f"{record['id']} {name}", diff["max_abs"])
    tol = DEFAULT_TOLERANCES["float32"]
    print(f"float32 outputs compared: {lanes}; default tolerance atol={tol.atol:g} rtol={tol.rtol:g}")
    print(f"{'runtime':16} {'worst headroom':>14} {'max abs err':>12}  lane")
    for runtime, (headroom, where, max_abs) in sorted(worst.items()):
        print(f"{runtime:16} {headroom:14.4f} {max_abs:12.3g}  {where}")
    overall = max((w[0] for w in worst.values()), default=0.0)
    print(f"worst overall: {overall:.4f} of the allowed error (margin {1 / overall if overall else float('inf'):.1f}x)")
    for k in (0.5, 0.2, 0.1):
        print(f"  with atol={tol.atol * k:g}, rtol={tol.rtol * k:g}: worst headroom {overall / k:.4f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
