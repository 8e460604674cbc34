"""How every renderer shows a status, names a document and labels a result. Stdlib only.

The status vocabulary (which statuses exist, their order, which fail) is ``conformance.status``; this
module only adds the look of each one. :func:`subject` says what a document checked (a model for
``check``, the suites for ``run``), so titles name it the same way in every format.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from conformance.records import LANE, MODEL, NODE, Result, ResultDocument, shape_label
from conformance.status import ERROR, FAIL, NOT_EXERCISED, PASS, SKIP, STATUSES, TIMEOUT, XFAIL, XPASS
from reports.text import count

__all__ = [
    "LOOKS",
    "Look",
    "against",
    "checked",
    "is_check",
    "lane_label",
    "model_file",
    "noun",
    "row_label",
    "status_counts",
    "subject",
    "suite_name",
    "unfinished",
]


@dataclass(frozen=True)
class Look:
    """One status as each format shows it: always a symbol or word besides the colour."""

    style: str  # rich style (console)
    symbol: str  # HTML matrix cell
    emoji: str  # Markdown
    meaning: str  # the HTML legend


LOOKS: dict[str, Look] = {  # every status of conformance.status.STATUSES, in its order
    PASS: Look("green", "✓", "✅", "within tolerance"),
    FAIL: Look("bold red", "✗", "❌", "outside tolerance"),
    XFAIL: Look("yellow", "x", "☑️", "expected divergence, confirmed"),
    XPASS: Look("bold magenta", "X", "❗", "expected to diverge, but passed"),
    ERROR: Look("bold red", "E", "💥", "export, load or run failed"),
    TIMEOUT: Look("bold red", "T", "⏱️", "killed after the time limit"),
    SKIP: Look("dim", "\u2013", "⏭️", "not available here"),
    NOT_EXERCISED: Look("cyan", "\u00b7", "💤", "the inputs never reached it: not checked"),
}


def is_check(document: ResultDocument) -> bool:
    """Whether the document is a ``check`` of one model, which has no suite (whatever its records' ``suite``).

    Its ``run["command"]`` says so; in a file without one, every record is a node, whole-model or weights verdict.
    """
    command = document.run.get("command")
    if command:
        return bool(command == "check")
    return bool(document.results) and all(r.kind != LANE for r in document.results)


def checked(document: ResultDocument) -> tuple[str, tuple[str, ...]]:
    """What the document checked: ``("check", (model,))`` or ``("run", suites)`` (display names)."""
    run = document.run
    if is_check(document):
        model = run.get("model") or next((r.case.split("[")[0] for r in document.results), "") or "model"
        return "check", (str(model),)
    suites = run.get("suites")
    names = [str(s) for s in suites] if isinstance(suites, list) else [r.suite for r in document.results]
    return "run", tuple(dict.fromkeys(suite_name(s) for s in names if s))


def against(document: ResultDocument) -> str:
    """The PyTorch module a ``check --against-torch`` compared with (``run["against_torch"]``), or ``""``."""
    module = document.run.get("against_torch")
    return str(module) if module and is_check(document) else ""


def model_file(document: ResultDocument) -> str:
    """The checked model's file name (``speech.onnx`` for ``models/speech.onnx``): what a page title shows."""
    model = checked(document)[1][0] if is_check(document) else ""
    return PurePath(model.replace("\\", "/")).name or model


def subject(document: ResultDocument) -> str:
    """``check: model.onnx [against pkg.mod:attr]`` or ``full, smoke``: for titles (raw; renderers make it safe)."""
    command, names = checked(document)
    if command == "check":
        module = against(document)
        return f"check: {names[0]}" + (f" against {module}" if module else "")
    return ", ".join(names) or "conformance"


def noun(document: ResultDocument) -> str:
    """What one result is called: a ``lane`` of a run, a ``result`` of a check."""
    return "result" if is_check(document) else "lane"


def unfinished(document: ResultDocument) -> str:
    """``23 of 40 planned lanes finished`` for a run that was interrupted (or stopped short), else ``""``."""
    run = document.run
    planned, done = run.get("lanes"), run.get("completed", len(document.results))
    short = isinstance(planned, int) and isinstance(done, int) and done < planned
    if not (run.get("interrupted") or short):
        return ""
    lanes = count(planned, "planned lane") if isinstance(planned, int) else "? planned lanes"
    return f"{done} of {lanes} finished"


def suite_name(suite: str) -> str:
    """A suite's display name: packaged suites by name, suite files by their file stem."""
    if "/" in suite or "\\" in suite or suite.endswith(".toml"):
        return PurePath(suite.replace("\\", "/")).stem
    return suite


def lane_label(result: Result) -> str:
    """What ran, within its case: ``exporter/runtime``, ``node/runtime``, ``whole model/runtime``."""
    if result.kind == LANE:
        return f"{result.exporter}/{result.runtime}"
    if result.kind == NODE:
        return f"{result.node}/{result.runtime}"
    if result.kind == MODEL:
        return f"whole model/{result.runtime}"
    return "trained weights"


def row_label(result: Result) -> str:
    """A row of a matrix: the case for a lane; the shape and node (or whole model) for a check."""
    if result.kind == LANE:
        return result.case
    where = shape_label(result.shape) if result.shape else result.case
    if result.kind == NODE:
        return f"{where} · {result.node}"
    return f"{where} · whole model" if result.kind == MODEL else "trained weights"


def status_counts(results: Sequence[Result]) -> tuple[dict[str, Counter[str]], Counter[str], list[str]]:
    """Per runtime, the count of each status; the totals; and the statuses that occur, in display order."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for result in results:
        counts[result.runtime][result.status] += 1
    total: Counter[str] = Counter()
    for row in counts.values():
        total.update(row)
    return counts, total, [s for s in STATUSES if total[s]]
