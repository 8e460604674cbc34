"""Diff two results.json files by lane id and status: did a change alter what a run concludes?

Usage: python tools/diff_results.py BEFORE.json AFTER.json

Reads schema versions 1 and 2 (plain JSON, no package import, so it compares files written by any
version of the tool). Prints the lanes only in one file and the lanes whose status differs, then a
summary line; exits 0 when ids and statuses are identical, 1 otherwise, 2 on a file it cannot read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def statuses(path: Path) -> dict[str, str]:
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("results"), list):
        raise ValueError(f"{path}: not a conformance result file")
    out: dict[str, str] = {}
    for record in document["results"]:
        if record["id"] in out:
            raise ValueError(f"{path}: lane {record['id']} appears twice")
        out[record["id"]] = record["status"]
    return out


def diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    lines = [f"only in before: {lane} ({before[lane]})" for lane in sorted(before.keys() - after.keys())]
    lines += [f"only in after:  {lane} ({after[lane]})" for lane in sorted(after.keys() - before.keys())]
    lines += [
        f"status changed: {lane}: {before[lane]} -> {after[lane]}"
        for lane in sorted(before.keys() & after.keys())
        if before[lane] != after[lane]
    ]
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        before, after = (statuses(Path(p)) for p in argv)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lines = diff(before, after)
    for line in lines:
        print(line)
    counts = {s: sum(v == s for v in after.values()) for s in sorted(set(after.values()))}
    verdict = "identical" if not lines else f"{len(lines)} difference(s)"
    print(f"{len(before)} lanes before, {len(after)} after: ids and statuses {verdict}; after: {counts}")
    return 0 if not lines else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
