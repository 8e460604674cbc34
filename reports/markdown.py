"""GitHub-flavoured Markdown for a CI job summary (``$GITHUB_STEP_SUMMARY``).

The headline, the runtimes x status table, expected divergences, skip reasons and the environment always
fit; failing results and latency tables fill what is left of the budget (GitHub refuses a step summary over
1 MiB), and a note says what was left out. Text from the file is made safe (``reports.text``): control
characters visible, Markdown and HTML escaped, long fields cut.
"""

from __future__ import annotations

import html
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

from conformance.records import Result, ResultDocument
from conformance.status import FAILING, NOT_EXERCISED, PASSING, SKIP, STATUSES, UNCHECKED
from reports.labels import LOOKS, against, checked, noun, status_counts, unfinished
from reports.text import ID, NAME, code_span, count, first_line, joined, markdown_inline, safe

__all__ = ["LIMIT_BYTES", "render_markdown"]

LIMIT_BYTES = 1_000_000  # GitHub's step-summary limit is 1 MiB (1,048,576 bytes); keep a margin
MESSAGE_CHARS = 20_000  # one failing result's message is cut past this
COLLAPSE_AFTER = 5  # more failing results than this: each one collapsed in <details>
_UNCHECKED_HEADINGS = {SKIP: "Skipped", NOT_EXERCISED: "Not exercised"}


def render_markdown(document: ResultDocument, *, limit_bytes: int = LIMIT_BYTES) -> str:
    """The result document as Markdown, at most ``limit_bytes`` bytes of UTF-8."""
    results, word = document.results, noun(document)
    failing = sorted((r for r in results if r.status in FAILING), key=lambda r: r.id)
    # (kind, markdown, counted): kind None is always shown; the others are shown in order while the budget
    # lasts, and once one of a kind is left out, so are the rest of that kind (counted unless a heading).
    sections: list[tuple[str | None, str, bool]] = [
        (None, _headline(document), False),
        (None, _status_table(results), False),
    ]
    if failing:
        collapse = len(failing) > COLLAPSE_AFTER
        lane = f"failing {word}"
        sections.append((lane, f"### Failing {word}s ({len(failing)})", False))
        sections += [(lane, _failing(r, collapse=collapse), True) for r in failing]
    sections += [(None, _expected(results, word), False)]
    sections += [(None, _unchecked(results, status, word), False) for status in _UNCHECKED_HEADINGS]
    sections += [("latency table", part, True) for part in _latency(results)]
    sections.append((None, _environment(document), False))
    sections = [(kind, text, counted) for kind, text, counted in sections if text]

    budget = limit_bytes - sum(_size(text) + 2 for kind, text, _ in sections if kind is None) - 400
    parts: list[str] = []
    left_out: Counter[str] = Counter()
    dropped: set[str] = set()
    note_at: int | None = None
    for kind, text, counted in sections:
        if kind is not None:
            cost = _size(text) + 2
            if kind in dropped or cost > budget:
                dropped.add(kind)
                left_out[kind] += counted
                note_at = len(parts) if note_at is None else note_at
                continue
            budget -= cost
        parts.append(text)
    if note_at is not None:
        what = ", ".join(count(n, kind) for kind, n in left_out.items() if n)
        parts.insert(
            note_at,
            f"> [!NOTE]\n> Truncated to fit the {limit_bytes:,}-byte summary limit: {what} not shown. "
            "The result file (`results.json`) and the HTML report have everything.",
        )
    text = "\n\n".join(parts) + "\n"
    if _size(text) > limit_bytes:  # only when the always-shown sections alone are too large
        note = "\n\n> [!NOTE]\n> Truncated to fit the summary limit.\n"
        text = _cut_bytes(text, limit_bytes - _size(note)) + note
    return text


def _headline(document: ResultDocument) -> str:
    results, word = document.results, noun(document)
    counts = Counter(r.status for r in results)
    failing = sum(counts[s] for s in FAILING)
    command, names = checked(document)
    if command == "check":
        module = against(document)
        what = f"check `{code_span(names[0])}`" + (f" against `{code_span(module)}`" if module else "")
    else:
        what = ", ".join(f"`{code_span(s, NAME)}`" for s in names) or "conformance"
    if failing:
        verdict = f"❌ {what}: {failing} failing of {count(len(results), word)}"
    elif any(counts[s] for s in PASSING):
        ran = sum(n for s, n in counts.items() if s not in UNCHECKED)
        verdict = f"✅ {what}: all {count(ran, word)} that ran conform"
    else:
        verdict = f"⚠️ {what}: nothing was checked ({count(len(results), word)})"
    line = " · ".join(f"{LOOKS[s].emoji} {counts[s]} {s}" for s in STATUSES if counts[s])
    run = document.run
    wall = run.get("wall_seconds")
    timing = f" in {wall:.1f} s" if isinstance(wall, (int, float)) and not isinstance(wall, bool) else ""
    selected = f", selected with `-k {code_span(run['select'], ID)}`" if run.get("select") else ""
    text = f"## {verdict}\n\n{line}\n\n{count(len(results), word)}{timing}{selected}."
    finished = unfinished(document)
    if finished:
        text += f"\n\n> [!WARNING]\n> The run was interrupted: {finished}."
    return text


def _status_table(results: Sequence[Result]) -> str:
    counts, total, statuses = status_counts(results)
    lines = [
        "| runtime | " + " | ".join(f"{LOOKS[s].emoji} {s}" for s in statuses) + " | total |",
        "|:--|" + "--:|" * (len(statuses) + 1),
    ]
    rows = [(f"`{code_span(name, NAME)}`", counts[name]) for name in sorted(counts)]
    if len(counts) > 1:
        rows.append(("**all**", total))
    for label, row in rows:
        cells = [str(row[s]) if row[s] else "" for s in statuses]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {sum(row.values())} |")
    return "\n".join(lines)


def _failing(result: Result, *, collapse: bool) -> str:
    message = safe(result.message or "(no message)", MESSAGE_CHARS, multiline=True)
    fence = "`" * max(3, _longest_backtick_run(message) + 1)
    block = f"{fence}text\n{message}\n{fence}"
    note = ""
    if result.expected is not None:
        note = f"\n\nExpected to {result.expected.status}: {markdown_inline(result.expected.reason)}"
    emoji = LOOKS[result.status].emoji
    if collapse:  # GitHub renders no Markdown inside <summary>: write it as HTML
        summary = (
            f"{emoji} <b>{result.status}</b> <code>{html.escape(safe(result.id, ID))}</code> — "
            f"{html.escape(safe(first_line(result.message), ID))}"
        )
        return f"<details><summary>{summary}</summary>\n\n{block}{note}\n\n</details>"
    return f"#### {emoji} **{result.status}** `{code_span(result.id)}`\n\n{block}{note}"


def _expected(results: Sequence[Result], word: str) -> str:
    by_reason: dict[str, list[str]] = defaultdict(list)
    references: dict[str, dict[str, None]] = defaultdict(dict)  # ordered sets
    for result in results:
        if result.status == "xfail" and result.expected is not None:
            reason = result.expected.reason
            by_reason[reason].append(result.id)
            if result.expected.reference:
                references[reason][result.expected.reference] = None
    if not by_reason:
        return ""
    lines = [
        f"### Expected divergences ({count(sum(map(len, by_reason.values())), word)})",
        "",
        f"| {word}s | reason | reference | example {word} |",
        "|--:|:--|:--|:--|",
    ]
    for reason, ids in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        reference = "<br>".join(_reference(r) for r in references[reason])
        lines.append(f"| {len(ids)} | {markdown_inline(reason)} | {reference} | `{code_span(min(ids))}` |")
    return "\n".join(lines)


def _unchecked(results: Sequence[Result], status: str, word: str) -> str:
    reasons = Counter(r.message for r in results if r.status == status)
    if not reasons:
        return ""
    heading = f"### {_UNCHECKED_HEADINGS[status]} ({count(sum(reasons.values()), word)})"
    lines = [heading, "", f"| {word}s | reason |", "|--:|:--|"]
    lines += [f"| {n} | {markdown_inline(reason)} |" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def _environment(document: ResultDocument) -> str:
    env = document.environment
    versions = env.get("versions")
    parts = [f"{name} {version}" for name, version in sorted(versions.items())] if isinstance(versions, dict) else []
    if env.get("python"):
        parts.insert(0, f"Python {env['python']}")
    if env.get("platform"):
        parts.append(str(env["platform"]))
    if env.get("cpu"):
        cores = f" \u00d7{env['cpu_count']}" if env.get("cpu_count") else ""
        parts.append(f"{env['cpu']}{cores}")
    parts.append("GPU: " + (joined(env.get("gpus") or []) or "none"))
    if env.get("onnxruntime_providers"):
        parts.append("ORT providers: " + joined(env["onnxruntime_providers"]))
    return "<sub>Environment: " + markdown_inline(" · ".join(parts), None) + "</sub>"


def _latency(results: Sequence[Result]) -> list[str]:
    """One table per case with timed lanes, as ``reports.latency`` words them (speed-up over ort-cpu)."""
    from reports.latency import latency_markdown, timed

    by_case: dict[str, list[Result]] = defaultdict(list)
    for result in results:
        if timed(result) is not None:
            by_case[result.case].append(result)
    return [latency_markdown(by_case[case]).rstrip("\n") for case in sorted(by_case)]


def _reference(reference: str) -> str:
    if re.match(r"https?://[^\s()<>\[\]\\`|]+$", reference) and safe(reference, ID) == reference:
        label = re.sub(r"^https?://(www\.)?", "", reference)
        return f"[{markdown_inline(label, ID)}]({reference})"
    return markdown_inline(reference)


def _longest_backtick_run(text: str) -> int:
    return max((len(m) for m in re.findall(r"`+", text)), default=0)


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut_bytes(text: str, limit: int) -> str:
    return text.encode("utf-8")[: max(0, limit)].decode("utf-8", errors="ignore")
