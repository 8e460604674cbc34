"""JUnit XML: one <testsuite> per suite (or the checked model), one <testcase> per result, for CI test reporters.

Statuses map onto what every common reader (GitLab, Jenkins, GitHub test-reporter actions) understands:
``fail``/``xpass`` are failures, ``error``/``timeout`` errors, ``skip``/``not-exercised`` skipped, and
``xfail`` passes with its expected divergence noted in <system-out>. The messages are the records' own,
already worded by ``conformance.diffs.format_mismatch``. Text from the file goes through
:func:`reports.text.safe`, so no character XML 1.0 forbids can break the file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Sequence

from conformance.records import Result, ResultDocument
from conformance.status import ERROR, FAIL, NOT_EXERCISED, PASS, SKIP, TIMEOUT, XFAIL, XPASS
from reports.labels import is_check, lane_label, subject, suite_name, unfinished
from reports.latency import number
from reports.text import FILE_MESSAGE, ID, count, first_line, joined, safe

__all__ = ["render_junit", "xml_safe"]

# status -> (the child element, the <testsuite> counter it adds to); a passing status has neither.
_KINDS: dict[str, tuple[str, str] | None] = {
    PASS: None,
    XFAIL: None,
    FAIL: ("failure", "failures"),
    XPASS: ("failure", "failures"),
    ERROR: ("error", "errors"),
    TIMEOUT: ("error", "errors"),
    SKIP: ("skipped", "skipped"),
    NOT_EXERCISED: ("skipped", "skipped"),
}
_LATENCY_KEYS = ("median_ms", "p90_ms", "p99_ms", "min_ms", "mean_ms", "stdev_ms")


def xml_safe(text: object, limit: int | None = FILE_MESSAGE) -> str:
    """``text`` fit for XML 1.0: forbidden and control characters written as visible escapes (``\\x1b``)."""
    return safe(text, limit, multiline=True)


def render_junit(document: ResultDocument) -> str:
    """The result document as a JUnit XML string (UTF-8 declaration included)."""
    by_suite: dict[str, list[Result]] = defaultdict(list)
    check = subject(document) if is_check(document) else None
    for result in document.results:
        by_suite[check or suite_name(result.suite)].append(result)
    properties = _properties(document)
    root = ET.Element("testsuites", name="lstm-conformance")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total_time = 0.0
    for name in sorted(by_suite):
        suite = _testsuite(name, sorted(by_suite[name], key=lambda r: r.id), properties)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        total_time += float(suite.get("time", "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _seconds(total_time))
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def _testsuite(name: str, results: Sequence[Result], properties: list[tuple[str, str]]) -> ET.Element:
    suite = ET.Element("testsuite", name=safe(name, ID))
    props = ET.SubElement(suite, "properties")
    for key, value in properties:
        ET.SubElement(props, "property", name=safe(key, ID), value=safe(value, FILE_MESSAGE))
    counts = dict.fromkeys(("failures", "errors", "skipped"), 0)
    total_time = 0.0
    for result in results:
        case, counter = _testcase(result)
        suite.append(case)
        if counter is not None:
            counts[counter] += 1
        total_time += _duration(result)
    suite.set("tests", str(len(results)))
    for key, n in counts.items():
        suite.set(key, str(n))
    suite.set("time", _seconds(total_time))
    # Attribute order as readers print it: name, tests, failures, errors, skipped, time.
    suite.attrib = {k: suite.attrib[k] for k in ("name", "tests", "failures", "errors", "skipped", "time")}
    return suite


def _testcase(result: Result) -> tuple[ET.Element, str | None]:
    """The <testcase> of one result, and which counter it adds to (None for a passing one)."""
    case = ET.Element(
        "testcase",
        classname=safe(f"{suite_name(result.suite)}.{result.case}", ID),
        name=safe(lane_label(result), ID),
        time=_seconds(_duration(result)),
    )
    kind = _KINDS[result.status]
    if kind is not None:
        tag = kind[0]
        summary = safe(first_line(result.message) or result.status, ID)
        if tag == "skipped":
            ET.SubElement(case, tag, message=safe(result.message or result.status, FILE_MESSAGE))
        else:
            element = ET.SubElement(case, tag, message=summary, type=result.status)
            element.text = xml_safe(result.message)
    out = _system_out(result)
    if out:
        ET.SubElement(case, "system-out").text = xml_safe(out)
    return case, None if kind is None else kind[1]


def _system_out(result: Result) -> str:
    lines = [f"{'lane' if result.kind == 'lane' else result.kind}: {result.id}", f"status: {result.status}"]
    expected = result.expected
    if result.status == XFAIL and expected is not None:
        lines.append(f"expected divergence ({expected.status}): {expected.reason}")
        if expected.reference:
            lines.append(f"reference: {expected.reference}")
        lines += ["", result.message]
    elif result.status == PASS:
        lines.append(result.message)
    latency = result.latency or {}
    values = {key: number(latency.get(key)) for key in _LATENCY_KEYS}
    if values["median_ms"] is not None:
        parts = [f"{key.removesuffix('_ms')} {value:.4g} ms" for key, value in values.items() if value is not None]
        runs = number(latency.get("count"))
        over = "" if runs is None else f" over {count(int(runs), 'run')}"
        lines.append(f"latency: {', '.join(parts)}{over}")
    return "\n".join(lines) if result.status in (PASS, XFAIL) or values["median_ms"] is not None else ""


def _properties(document: ResultDocument) -> list[tuple[str, str]]:
    env, run = document.environment, document.run
    out: list[tuple[str, str]] = [("schema_version", str(document.schema_version))]
    for key in ("python", "platform", "cpu", "cpu_count"):
        if key in env:
            out.append((key, str(env[key])))
    if "gpus" in env:
        out.append(("gpus", joined(env["gpus"] or []) or "none"))
    if "onnxruntime_providers" in env:
        out.append(("onnxruntime_providers", joined(env["onnxruntime_providers"] or [])))
    versions = env.get("versions")
    if isinstance(versions, dict):
        out += [(f"version.{name}", str(version)) for name, version in sorted(versions.items())]
    for key in ("command", "model"):
        if run.get(key):
            out.append((key, str(run[key])))
    if isinstance(run.get("suites"), list) and run["suites"]:
        out.append(("suites", joined(run["suites"])))
    if run.get("select"):
        out.append(("select", str(run["select"])))
    finished = unfinished(document)
    if finished:
        out.append(("interrupted", finished))
    return out


def _duration(result: Result) -> float:
    value = result.duration_s
    return value if value is not None and value >= 0 else 0.0


def _seconds(value: float) -> str:
    return f"{value:.4f}"
