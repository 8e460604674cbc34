"""JUnit XML: one <testsuite> per suite, one <testcase> per lane, for CI test reporters.

Statuses map onto what every common reader (GitLab, Jenkins, GitHub test-reporter actions) understands:
``fail``/``xpass`` are failures, ``error``/``timeout`` errors, ``skip`` skipped, and ``xfail`` passes with its
expected divergence noted in <system-out>. The messages are the records' own, already worded by
``conformance.compare.format_mismatch``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import PurePath
from typing import Any

__all__ = ["render_junit", "suite_name", "xml_safe"]

# Characters XML 1.0 does not allow anywhere, not even as character references.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: object) -> str:
    """``text`` with every character XML 1.0 forbids written as a visible escape (``\\x1b``, ``\\ufffe``)."""
    return _FORBIDDEN.sub(_escape_char, str(text))


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def suite_name(suite: str) -> str:
    """A suite's display name: packaged suites by name, suite files by their file stem."""
    if "/" in suite or "\\" in suite or suite.endswith(".toml"):
        return PurePath(suite.replace("\\", "/")).stem
    return suite


def render_junit(document: dict[str, Any]) -> str:
    """The result document as a JUnit XML string (UTF-8 declaration included)."""
    results: list[dict[str, Any]] = document.get("results", [])
    by_suite: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in results:
        by_suite[suite_name(str(record.get("suite", "")))].append(record)
    properties = _properties(document)
    root = ET.Element("testsuites", name="lstm-conformance")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total_time = 0.0
    for name in sorted(by_suite):
        suite = _testsuite(name, sorted(by_suite[name], key=lambda r: str(r["id"])), properties)
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


def _testsuite(name: str, records: list[dict[str, Any]], properties: list[tuple[str, str]]) -> ET.Element:
    suite = ET.Element("testsuite", name=xml_safe(name))
    props = ET.SubElement(suite, "properties")
    for key, value in properties:
        ET.SubElement(props, "property", name=xml_safe(key), value=xml_safe(value))
    counts = dict.fromkeys(("failures", "errors", "skipped"), 0)
    total_time = 0.0
    for record in records:
        case, kind = _testcase(name, record)
        suite.append(case)
        if kind is not None:
            counts[kind] += 1
        total_time += _duration(record)
    suite.set("tests", str(len(records)))
    for key, count in counts.items():
        suite.set(key, str(count))
    suite.set("time", _seconds(total_time))
    # Attribute order as readers print it: name, tests, failures, errors, skipped, time.
    suite.attrib = {k: suite.attrib[k] for k in ("name", "tests", "failures", "errors", "skipped", "time")}
    return suite


def _testcase(suite: str, record: dict[str, Any]) -> tuple[ET.Element, str | None]:
    """The <testcase> of one lane, and which counter it adds to (None for a passing one)."""
    status = str(record.get("status", "error"))
    message = str(record.get("message", ""))
    case = ET.Element(
        "testcase",
        classname=xml_safe(f"{suite}.{record.get('case', '')}"),
        name=xml_safe(f"{record.get('exporter', '')}/{record.get('runtime', '')}"),
        time=_seconds(_duration(record)),
    )
    kind: str | None = None
    first = _first_line(message) or status
    if status in ("fail", "xpass"):
        element = ET.SubElement(case, "failure", message=xml_safe(first), type=status)
        element.text = xml_safe(message)
        kind = "failures"
    elif status in ("error", "timeout"):
        element = ET.SubElement(case, "error", message=xml_safe(first), type=status)
        element.text = xml_safe(message)
        kind = "errors"
    elif status == "skip":
        ET.SubElement(case, "skipped", message=xml_safe(message or "skipped"))
        kind = "skipped"
    elif status not in ("pass", "xfail"):  # an unknown status is not a pass
        element = ET.SubElement(case, "error", message=xml_safe(f"unknown status {status!r}: {first}"), type=status)
        element.text = xml_safe(message)
        kind = "errors"
    out = _system_out(record, status, message)
    if out:
        ET.SubElement(case, "system-out").text = xml_safe(out)
    return case, kind


def _system_out(record: dict[str, Any], status: str, message: str) -> str:
    lines: list[str] = [f"lane: {record.get('id', '')}", f"status: {status}"]
    expected = record.get("expected")
    if status == "xfail" and isinstance(expected, dict):
        lines.append(f"expected divergence ({expected.get('status', 'fail')}): {expected.get('reason', '')}")
        if expected.get("reference"):
            lines.append(f"reference: {expected['reference']}")
        lines += ["", message]
    elif status == "pass":
        lines.append(message)
    latency = record.get("latency")
    if isinstance(latency, dict) and "median_ms" in latency:
        parts = [f"{key.removesuffix('_ms')} {latency[key]:.4g} ms" for key in _LATENCY_KEYS if key in latency]
        count = f" over {latency['count']} runs" if "count" in latency else ""
        lines.append(f"latency: {', '.join(parts)}{count}")
    return "\n".join(lines) if status in ("pass", "xfail") or latency else ""


_LATENCY_KEYS = ("median_ms", "p90_ms", "p99_ms", "min_ms", "mean_ms", "stdev_ms")


def _properties(document: dict[str, Any]) -> list[tuple[str, str]]:
    env = document.get("environment") or {}
    run = document.get("run") or {}
    out: list[tuple[str, str]] = [("schema_version", str(document.get("schema_version", "")))]
    for key in ("python", "platform", "cpu", "cpu_count"):
        if key in env:
            out.append((key, str(env[key])))
    if "gpus" in env:
        out.append(("gpus", ", ".join(map(str, env["gpus"])) or "none"))
    if "onnxruntime_providers" in env:
        out.append(("onnxruntime_providers", ", ".join(map(str, env["onnxruntime_providers"]))))
    out += [(f"version.{name}", str(version)) for name, version in sorted((env.get("versions") or {}).items())]
    if run.get("suites"):
        out.append(("suites", ", ".join(map(str, run["suites"]))))
    if run.get("select"):
        out.append(("select", str(run["select"])))
    if run.get("interrupted"):
        out.append(("interrupted", f"{run.get('completed', '?')} of {run.get('lanes', '?')} planned lanes finished"))
    return out


def _duration(record: dict[str, Any]) -> float:
    value = record.get("duration_s")
    return float(value) if isinstance(value, (int, float)) and value >= 0 else 0.0


def _seconds(value: float) -> str:
    return f"{value:.4f}"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
