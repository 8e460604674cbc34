"""The console summary of ``run``, ``check``, ``report`` and ``--against-torch``: one function, rich renderables.

Every piece of text from a file (ids, names, messages, reasons) goes in as a ``rich.text.Text`` made by
:func:`reports.text.safe`: never read as markup, never highlighted, control characters visible, length
capped. So the summary is safe on any console, whatever its ``markup`` and ``highlight`` settings.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from conformance.records import Result, ResultDocument
from conformance.status import FAILING, NOT_EXERCISED, SKIP, UNCHECKED, verdict_word
from reports.labels import LOOKS, is_check, noun, status_counts, subject
from reports.text import ID, MESSAGE, NAME, count, plural, safe

__all__ = ["default_title", "summary"]

_UNCHECKED_HEADINGS = {SKIP: "Skipped:", NOT_EXERCISED: "Not exercised:"}


def summary(
    document: ResultDocument, *, title: str, show_latency: bool = False, baseline: str = "ort-cpu"
) -> list[RenderableType]:
    """What a person reads after a run or check, in order, ending with the verdict line.

    For a check, the LSTM node x runtime table first (its stream rows' error growth under it). Then the
    runtime x status table, where releases of one runtime differ (``ort-cpu`` and ``ort-cpu@1.24.4``), the
    expected divergences that showed up, why results were not checked, each
    failing result with its message, the check's likely causes, latency tables (``show_latency``), and last
    ``PASS``, ``FAIL`` or ``NOTHING CHECKED`` with the counts behind it.
    """
    results, word = document.results, noun(document)
    parts: list[RenderableType | None] = [
        _node_table(results) if is_check(document) else None,
        _status_table(results, title),
        _releases(results, word),
        _deployment_cost(results),
        _expected(results, word),
        *(_unchecked(results, status) for status in _UNCHECKED_HEADINGS),
        _failures(results, word),
        _causes(document),
    ]
    if show_latency:
        from reports.latency import latency_tables

        parts += latency_tables(results, baseline=baseline)
    parts.append(_verdict(document))
    return [part for part in parts if part is not None]


def default_title(document: ResultDocument) -> str:
    """``full, smoke: 23 lanes in 12.5 s`` or ``check model.onnx: 4 results``: when a caller has no better one."""
    run, n = document.run, len(document.results)
    planned = run.get("lanes")
    done = f"{n}/{count(planned, noun(document))}" if isinstance(planned, int) and planned != n else ""
    wall = run.get("wall_seconds")
    timing = f" in {wall:.1f} s" if isinstance(wall, (int, float)) and not isinstance(wall, bool) else ""
    what = subject(document).replace("check: ", "check ", 1) if is_check(document) else subject(document)
    return f"{what}: {done or count(n, noun(document))}{timing}"


def _text(value: object, limit: int | None = NAME, *, style: str = "", multiline: bool = False) -> Text:
    return Text(safe(value, limit, multiline=multiline), style=style)


def _node_table(results: Sequence[Result]) -> RenderableType | None:
    """Each LSTM node (and the whole model, the stream, the trained weights) x runtime: the worst status
    over the inputs (``reports.node_table``); then the error growth of each passing ``--stream`` run."""
    from reports.node_table import node_table

    columns, rows = node_table(results)
    if not any(r.node for r in results):
        return None
    table = Table(title="LSTM nodes x runtimes (worst over the inputs)", title_justify="left")
    table.add_column("node", overflow="fold", ratio=3)
    shown = [*columns, *(["weights"] if any("weights" in cells for cells in rows.values()) else [])]
    for column in shown:
        table.add_column(_text(column), overflow="fold", ratio=1)
    for row, cells in rows.items():
        values = [_text(cells.get(c, ""), style=LOOKS[cells[c]].style if c in cells else "") for c in shown]
        table.add_row(_text(row), *values)
    streams = [
        _text(f"stream: {r.message}", MESSAGE)
        for r in results
        if "max_abs_error_per_step" in r.detail and r.status not in FAILING
    ]
    return Group(table, *streams) if streams else table


def _status_table(results: Sequence[Result], title: str) -> Table:
    """One row per runtime, one column per status that occurs, counts of results."""
    counts, total, statuses = status_counts(results)
    table = Table(title=_text(title, ID), title_justify="left")
    table.add_column("runtime")
    for status in statuses:
        table.add_column(status, justify="right", style=LOOKS[status].style)
    table.add_column("total", justify="right")
    rows = [(_text(runtime), counts[runtime]) for runtime in sorted(counts)]
    if len(counts) > 1:
        rows.append((Text("all", style="bold"), total))
    for label, row in rows:
        table.add_row(label, *[Text(str(row[s]) if row[s] else "") for s in statuses], Text(str(sum(row.values()))))
    return table


def _release_order(runtime: str) -> tuple[bool, tuple[int, ...], str]:
    """The plain id first, then ``ID@VERSION`` in numeric order of VERSION (1.9 before 1.10)."""
    _, versioned, version = runtime.partition("@")
    return bool(versioned), tuple(int(n) for n in re.findall(r"\d+", version)), runtime


def _greatest_error(result: Result) -> float | None:
    errors = [d.max_abs for d in result.outputs if math.isfinite(d.max_abs)]
    return max(errors) if errors else None


def _release_difference(first: Result, second: Result) -> bool:
    """Another status, or an output whose greatest errors lie further apart than its absolute tolerance."""
    if first.status != second.status:
        return True
    for diff in first.outputs:
        other = second.output(diff.name)
        if other is None or not (math.isfinite(diff.max_abs) and math.isfinite(other.max_abs)):
            continue
        if abs(diff.max_abs - other.max_abs) > max(diff.allowed_atol, other.allowed_atol):
            return True
    return False


def _release_cell(result: Result) -> Text:
    error = _greatest_error(result)
    text = result.status if error is None else f"{result.status}, greatest error {error:.2g}"
    return Text(text, style=LOOKS[result.status].style)


def _deployment_cost(results: Sequence[Result]) -> RenderableType | None:
    """What the deployment transforms cost the language models (``detail.lm`` of transformed lanes), per
    transform and runtime: the perplexity increase (median and worst) and the lowest next-token agreement."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for result in results:
        lm = result.detail.get("lm") if isinstance(result.detail, Mapping) else None
        if isinstance(lm, Mapping) and "+" in (result.exporter or ""):
            groups[(result.exporter.partition("+")[2], result.runtime)].append(lm)
    if not groups:
        return None
    table = Table(title="Deployment cost on the language models (against the float64 reference)", title_justify="left")
    for column in (
        "transform",
        "runtime",
        "lanes",
        "perplexity increase: median",
        "worst",
        "next-token agreement: lowest",
    ):
        table.add_column(column, overflow="fold")
    for (transform, runtime), metrics in sorted(groups.items()):
        increases = sorted(m["perplexity_increase"] for m in metrics if isinstance(m.get("perplexity_increase"), float))
        agreement = [m["next_token_agreement"] for m in metrics if isinstance(m.get("next_token_agreement"), float)]
        median = f"{100 * increases[len(increases) // 2]:+.3g}%" if increases else "-"
        worst = f"{100 * increases[-1]:+.3g}%" if increases else "-"
        table.add_row(_text(transform), _text(runtime), str(len(metrics)), median, worst,
                      f"{min(agreement):.3f}" if agreement else "-")  # fmt: skip
    return table


def _releases(results: Sequence[Result], word: str) -> RenderableType | None:
    """Where releases of one runtime ran side by side (``ort-cpu``, ``ort-cpu@1.24.4``): each later one
    against the first (the installed one when it ran), per lane (same case and exporter): another
    status, or greatest errors further apart than the output's absolute tolerance."""
    families: dict[str, set[str]] = defaultdict(set)
    for result in results:
        families[result.runtime.partition("@")[0]].add(result.runtime)
    by_lane: dict[tuple[str, str], Result] = {}
    for result in results:
        if result.id.endswith(f"/{result.runtime}"):
            by_lane[(result.runtime, result.id[: -len(result.runtime) - 1])] = result
    parts: list[RenderableType] = []
    for _, members in sorted(families.items()):
        if len(members) < 2 or not any("@" in m for m in members):
            continue
        first, *later = sorted(members, key=_release_order)
        for other in later:
            shared = sorted(lane for runtime, lane in by_lane if runtime == first and (other, lane) in by_lane)
            differing = [lane for lane in shared if _release_difference(by_lane[first, lane], by_lane[other, lane])]
            if not differing:
                parts.append(
                    Text.assemble(
                        ("Releases: ", "bold"),
                        _text(other),
                        f" agrees with {first} on {count(len(shared), word)} both ran "
                        "(same status; greatest errors within the absolute tolerance of each other)",
                    )
                )
                continue
            heading = Text.assemble(
                ("Releases: ", "bold"),
                _text(
                    f"{len(differing)} of {count(len(shared), word)} differ between {first} and {other} "
                    "(status, or greatest errors further apart than the absolute tolerance):",
                    MESSAGE,
                ),
            )
            table = Table()
            table.add_column(word, overflow="fold")
            table.add_column(_text(first), overflow="fold")
            table.add_column(_text(other), overflow="fold")
            for lane in differing:
                table.add_row(_text(lane, ID), _release_cell(by_lane[first, lane]), _release_cell(by_lane[other, lane]))
            parts += [heading, table]
    return Group(*parts) if parts else None


def _expected(results: Sequence[Result], word: str) -> Table | None:
    """Expected divergences that showed up, grouped by reason."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for result in results:
        if result.status == "xfail" and result.expected is not None:
            by_reason[result.expected.reason].append(result.id)
    if not by_reason:
        return None
    table = Table(title=Text("Expected divergences (confirmed by this run)"), title_justify="left")
    table.add_column(f"{word}s", justify="right")
    table.add_column("reason")
    table.add_column(f"example {word}", style="dim")
    for reason, ids in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        table.add_row(Text(str(len(ids))), _text(reason, MESSAGE, multiline=True), _text(min(ids), ID))
    return table


def _unchecked(results: Sequence[Result], status: str) -> Group | None:
    """Why results were not checked (skipped, not exercised), one line per distinct reason."""
    reasons = Counter(r.message for r in results if r.status == status)
    if not reasons:
        return None
    lines = [Text(_UNCHECKED_HEADINGS[status], style="dim bold")]
    for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(Text.assemble(f"  {n:4d} x ", _text(reason, MESSAGE, multiline=True), style="dim"))
    return Group(*lines)


def _failures(results: Sequence[Result], word: str) -> Group | None:
    """Each failing result with its message; ``None`` when nothing failed."""
    failing = sorted((r for r in results if r.status in FAILING), key=lambda r: r.id)
    if not failing:
        return None
    heading = f"{len(failing)} failing {plural(len(failing), word)}:"
    parts: list[RenderableType] = [Text(heading, style="bold red")]
    for result in failing:
        style = LOOKS[result.status].style
        parts.append(Text.assemble("\n", (result.status.upper(), style), " ", _text(result.id, ID, style=style)))
        message = safe(result.message, MESSAGE, multiline=True)
        parts.append(Text("\n".join(f"    {line}" if line else line for line in message.split("\n"))))
    return Group(*parts)


def _causes(document: ResultDocument) -> Group | None:
    """The likely causes ``check`` diagnosed (``run["causes"]``), when there are any."""
    causes = document.run.get("causes")
    if not isinstance(causes, list) or not causes:
        return None
    lines = [Text(f"Likely {plural(len(causes), 'cause')}:", style="bold red")]
    lines += [Text.assemble("  - ", _text(cause, MESSAGE, multiline=True)) for cause in causes]
    return Group(*lines)


def _verdict(document: ResultDocument) -> Text:
    """``PASS``, ``FAIL`` or ``NOTHING CHECKED``, and the counts behind it: the last line."""
    statuses = [r.status for r in document.results]
    total, word = len(statuses), noun(document)
    latency_only = bool(document.run.get("latency_only"))
    verdict = verdict_word(statuses)
    if verdict == "NOTHING CHECKED" and latency_only and statuses:
        verdict = "PASS"  # --latency-only skips accuracy by design (exit_code's exempt_unchecked)
    failing = sum(s in FAILING for s in statuses)
    checked = sum(s not in UNCHECKED for s in statuses)
    if verdict == "FAIL":
        detail = f"{failing} of {count(total, word)} failing"
    elif verdict == "PASS" and not checked:
        detail = f"{count(total, word)} timed; accuracy not checked (--latency-only)"
    elif verdict == "PASS":
        detail = f"{checked} of {count(total, word)} checked, all conform"
    elif total:
        detail = f"none of {count(total, word)} was checked (see the reasons above)"
    else:
        detail = f"there was no {word} to check"
    return Text(f"{verdict}: {detail}", style="bold green" if verdict == "PASS" else "bold red")
