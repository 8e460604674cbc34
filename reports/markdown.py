"""GitHub-flavoured Markdown for a CI job summary (``$GITHUB_STEP_SUMMARY``).

The headline, the runtimes x status table, expected divergences, skip reasons and the environment always
fit; failing lanes and latency tables fill what is left of the budget (GitHub refuses a step summary over
1 MiB), and a note says what was left out.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter, defaultdict
from typing import Any

from reports.console import FAILING, STATUS_ORDER

__all__ = ["LIMIT_BYTES", "render_markdown"]

LIMIT_BYTES = 1_000_000  # GitHub's step-summary limit is 1 MiB (1,048,576 bytes); keep a margin
MESSAGE_CHARS = 20_000  # one failing lane's message is cut past this
COLLAPSE_AFTER = 5  # more failing lanes than this: each one collapsed in <details>
STATUS_EMOJI = {
    "pass": "✅",
    "fail": "❌",
    "xfail": "☑️",
    "xpass": "❗",
    "error": "💥",
    "timeout": "⏱️",
    "skip": "⏭️",
}
# What ``reports.latency`` reads from each record's ``latency`` (``conformance.timing.Latency.to_dict``).
LATENCY_KEYS = ("median_ms", "p90_ms", "p99_ms", "min_ms", "stdev_ms", "ci_low_ms", "ci_high_ms", "count")


def render_markdown(document: dict[str, Any], *, limit_bytes: int = LIMIT_BYTES) -> str:
    """The result document as Markdown, at most ``limit_bytes`` bytes of UTF-8."""
    results: list[dict[str, Any]] = document.get("results", [])
    failing = sorted((r for r in results if r.get("status") in FAILING), key=lambda r: str(r["id"]))
    # (kind, markdown, counted): kind None is always shown; the others are shown in order while the budget
    # lasts, and once one of a kind is left out, so are the rest of that kind (counted unless a heading).
    sections: list[tuple[str | None, str, bool]] = [
        (None, _headline(document, results), False),
        (None, _status_table(results), False),
    ]
    if failing:
        collapse = len(failing) > COLLAPSE_AFTER
        sections.append(("failing lane", f"### Failing lanes ({len(failing)})", False))
        sections += [("failing lane", _failing_lane(r, collapse=collapse), True) for r in failing]
    sections += [(None, part, False) for part in (_expected(results), _skipped(results)) if part]
    sections += [("latency table", part, True) for part in _latency(results)]
    sections.append((None, _environment(document), False))

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
        what = ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in left_out.items() if n)
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


def _headline(document: dict[str, Any], results: list[dict[str, Any]]) -> str:
    counts = Counter(str(r.get("status")) for r in results)
    failing = sum(counts[s] for s in FAILING)
    run = document.get("run") or {}
    suites = ", ".join(f"`{s}`" for s in run.get("suites", [])) or "conformance"
    if failing:
        verdict = f"❌ {suites}: {failing} failing of {len(results)} lanes"
    elif counts["pass"] or counts["xfail"]:
        ran = len(results) - counts["skip"]
        verdict = f"✅ {suites}: all {ran} lanes that ran conform"
    else:
        verdict = f"⚠️ {suites}: nothing ran ({len(results)} lanes)"
    ordered = [s for s in STATUS_ORDER if counts[s]] + sorted(s for s in counts if s not in STATUS_ORDER)
    line = " · ".join(f"{STATUS_EMOJI.get(s, '')} {counts[s]} {s}" for s in ordered)
    wall = run.get("wall_seconds")
    timing = f" in {wall:.1f} s" if isinstance(wall, (int, float)) else ""
    selected = f", selected with `-k {_code_text(str(run['select']))}`" if run.get("select") else ""
    text = f"## {verdict}\n\n{line}\n\n{len(results)} lanes{timing}{selected}."
    planned, done = run.get("lanes"), run.get("completed", len(results))
    if run.get("interrupted") or (isinstance(planned, int) and isinstance(done, int) and done < planned):
        text += f"\n\n> [!WARNING]\n> The run was interrupted: {done} of {planned} planned lanes finished."
    return text


def _status_table(results: list[dict[str, Any]]) -> str:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for record in results:
        counts[str(record.get("runtime"))][str(record.get("status"))] += 1
    total: Counter[str] = Counter()
    for row in counts.values():
        total.update(row)
    statuses = [s for s in STATUS_ORDER if total[s]] + sorted(s for s in total if s not in STATUS_ORDER)
    lines = [
        "| runtime | " + " | ".join(f"{STATUS_EMOJI.get(s, '')} {s}" for s in statuses) + " | total |",
        "|:--|" + "--:|" * (len(statuses) + 1),
    ]
    rows = [(f"`{_code_text(name)}`", counts[name]) for name in sorted(counts)]
    if len(counts) > 1:
        rows.append(("**all**", total))
    for label, row in rows:
        cells = [str(row[s]) if row[s] else "" for s in statuses]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {sum(row.values())} |")
    return "\n".join(lines)


def _failing_lane(record: dict[str, Any], *, collapse: bool) -> str:
    status = str(record.get("status"))
    message = str(record.get("message", "")) or "(no message)"
    if len(message) > MESSAGE_CHARS:
        message = f"{message[:MESSAGE_CHARS]}\n... ({len(message) - MESSAGE_CHARS:,} more characters)"
    fence = "`" * max(3, _longest_backtick_run(message) + 1)
    block = f"{fence}text\n{message}\n{fence}"
    expected = record.get("expected")
    note = ""
    if isinstance(expected, dict):
        note = f"\n\nExpected to {expected.get('status', 'fail')}: {_inline(str(expected.get('reason', '')))}"
    if collapse:  # GitHub renders no Markdown inside <summary>: write it as HTML
        summary = (
            f"{STATUS_EMOJI.get(status, '')} <b>{status}</b> <code>{html.escape(str(record['id']))}</code> — "
            f"{html.escape(_first_line(message))}"
        )
        return f"<details><summary>{summary}</summary>\n\n{block}{note}\n\n</details>"
    return f"#### {STATUS_EMOJI.get(status, '')} **{status}** `{_code_text(str(record['id']))}`\n\n{block}{note}"


def _expected(results: list[dict[str, Any]]) -> str:
    by_reason: dict[str, list[str]] = defaultdict(list)
    references: dict[str, dict[str, None]] = defaultdict(dict)  # ordered sets
    for record in results:
        expected = record.get("expected")
        if record.get("status") == "xfail" and isinstance(expected, dict):
            reason = str(expected.get("reason", ""))
            by_reason[reason].append(str(record["id"]))
            if expected.get("reference"):
                references[reason][str(expected["reference"])] = None
    if not by_reason:
        return ""
    lines = [
        f"### Expected divergences ({sum(map(len, by_reason.values()))} lanes)",
        "",
        "| lanes | reason | reference | example lane |",
        "|--:|:--|:--|:--|",
    ]
    for reason, ids in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        reference = "<br>".join(_reference(r) for r in references[reason])
        lines.append(f"| {len(ids)} | {_inline(reason)} | {reference} | `{_code_text(min(ids))}` |")
    return "\n".join(lines)


def _skipped(results: list[dict[str, Any]]) -> str:
    reasons = Counter(str(r.get("message", "")) for r in results if r.get("status") == "skip")
    if not reasons:
        return ""
    lines = [f"### Skipped ({sum(reasons.values())} lanes)", "", "| lanes | reason |", "|--:|:--|"]
    lines += [f"| {n} | {_inline(reason)} |" for reason, n in reasons.most_common()]
    return "\n".join(lines)


def _environment(document: dict[str, Any]) -> str:
    env = document.get("environment") or {}
    versions = env.get("versions") or {}
    parts = [f"{name} {version}" for name, version in sorted(versions.items())]
    if env.get("python"):
        parts.insert(0, f"Python {env['python']}")
    if env.get("platform"):
        parts.append(str(env["platform"]))
    if env.get("cpu"):
        count = f" \u00d7{env['cpu_count']}" if env.get("cpu_count") else ""
        parts.append(f"{env['cpu']}{count}")
    parts.append("GPU: " + (", ".join(map(str, env.get("gpus") or [])) or "none"))
    if env.get("onnxruntime_providers"):
        parts.append("ORT providers: " + ", ".join(map(str, env["onnxruntime_providers"])))
    return "<sub>Environment: " + _inline(" · ".join(parts)) + "</sub>"


def _latency(results: list[dict[str, Any]]) -> list[str]:
    """One table per case with timed lanes, as ``reports.latency`` words them (speed-up over ort-cpu)."""
    from reports.latency import latency_markdown

    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in results:
        latency = record.get("latency")
        if isinstance(latency, dict) and all(_number(latency.get(key)) is not None for key in LATENCY_KEYS):
            by_case[str(record.get("case"))].append(record)
    return [latency_markdown(by_case[case]).rstrip("\n") for case in sorted(by_case)]


def _reference(reference: str) -> str:
    if not reference:
        return ""
    if re.match(r"https?://\S+$", reference):
        label = re.sub(r"^https?://(www\.)?", "", reference)
        return f"[{_inline(label)}]({reference.replace(')', '%29').replace(' ', '%20')})"
    return _inline(reference)


def _inline(text: str) -> str:
    """Text safe inside a table cell or a line: one line, Markdown and HTML specials escaped."""
    text = " ".join(text.split())
    text = re.sub(r"([\\`*_\[\]|<>#~])", r"\\\1", text)
    return text.replace("&", "&amp;")


def _code_text(text: str) -> str:
    """Text for inside a single-backtick code span (which cannot hold a backtick or a pipe in a table)."""
    return " ".join(text.split()).replace("`", "'").replace("|", "¦")


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _longest_backtick_run(text: str) -> int:
    return max((len(m) for m in re.findall(r"`+", text)), default=0)


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut_bytes(text: str, limit: int) -> str:
    return text.encode("utf-8")[: max(0, limit)].decode("utf-8", errors="ignore")
