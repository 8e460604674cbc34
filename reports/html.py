"""One self-contained HTML page: verdict, the feature x lane matrix, error curves, latency, environment.

Offline by construction: inline CSS and SVG, no script, no external resource. Every status is shown by a
symbol and a word as well as a colour, and all text from the result file is escaped.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from html import escape
from typing import Any

from conformance.compare import summary_line
from reports.console import FAILING, STATUS_ORDER
from reports.junit import suite_name
from reports.svg import LATENCY_KEYS, latency_figures, output_diffs, step_figures

__all__ = ["STATUS_SYMBOL", "case_features", "render_html"]

STATUS_SYMBOL = {"pass": "✓", "fail": "✗", "xfail": "x", "xpass": "X", "error": "E", "timeout": "T", "skip": "\u2013"}
STATUS_MEANING = {  # the legend
    **{"pass": "within tolerance", "fail": "outside tolerance", "xfail": "expected divergence, confirmed"},
    **{"xpass": "expected to diverge, but passed", "error": "export, load or run failed"},
    **{"timeout": "killed after the time limit", "skip": "not available here"},
}
WORST_PASSING = 5  # error curves for this many passing lanes closest to their tolerance
_EXPORTER_ORDER = {"none": 0, "onnx-native": 1}


def render_html(document: dict[str, Any]) -> str:
    """The result document as one HTML page (a string)."""
    results: list[dict[str, Any]] = sorted(document.get("results", []), key=lambda r: str(r.get("id")))
    run = document.get("run") or {}
    suites = ", ".join(map(str, run.get("suites") or [])) or "conformance"
    body = [
        _header(document, results, suites),
        _matrix_section(results),
        _failures_section(results),
        _curves_section(results),
        _latency_section(results),
        _expected_section(results),
        _environment_section(document),
    ]
    title = f"lstm-conformance: {suites}"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(part for part in body if part)
        + "\n</main>\n</body>\n</html>\n"
    )


def case_features(
    results: list[dict[str, Any]], loaded: dict[str, dict[str, tuple[str, ...]]] | None = None
) -> dict[tuple[str, str], tuple[str, ...]]:
    """Feature labels per (suite, case): from the suite's cases when it loads, else derived from the case id."""
    loaded = _suite_cases({str(r.get("suite", "")) for r in results}) if loaded is None else loaded
    keys = {(str(r.get("suite", "")), str(r.get("case", ""))) for r in results}
    return {(suite, case): loaded.get(suite, {}).get(case) or (_feature_from_id(case),) for suite, case in keys}


def _suite_cases(suites: set[str]) -> dict[str, dict[str, tuple[str, ...]]]:
    """Each suite's case ids (in file order) with their features; empty for a suite that does not load."""
    from conformance.cases import load_suite

    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for suite in suites:
        try:
            out[suite] = {case.id: case.features() for case in load_suite(suite).cases}
        except Exception:  # a moved suite file or a changed format: the report still renders
            out[suite] = {}
    return out


def _feature_from_id(case_id: str) -> str:
    """``activation-elu`` -> ``activation``, ``shapes-1l[9-1]`` -> ``shapes``: the id's first word."""
    return case_id.split("[", 1)[0].split("-", 1)[0] or case_id


# --- sections --------------------------------------------------------------------------------------


def _header(document: dict[str, Any], results: list[dict[str, Any]], suites: str) -> str:
    counts = Counter(str(r.get("status")) for r in results)
    failing = sum(counts[s] for s in FAILING)
    if failing:
        verdict, css = f"✗ FAIL: {failing} failing lane{'s' if failing != 1 else ''}", "verdict-fail"
    elif counts["pass"] or counts["xfail"]:
        verdict, css = "✓ PASS: every lane that ran conforms", "verdict-pass"
    else:
        verdict, css = "nothing ran", "verdict-none"
    run, wall = document.get("run") or {}, (document.get("run") or {}).get("wall_seconds")
    facts = [f"{len(results)} lanes", *([f"{wall:.1f} s"] if isinstance(wall, (int, float)) else [])]
    facts += [f"-k {run['select']}"] if run.get("select") else []
    chips = "".join(
        f'<li class="chip st-{s}"><span class="sym" aria-hidden="true">{STATUS_SYMBOL.get(s, "?")}</span> '
        f"<b>{counts[s]}</b> {escape(s)}</li>"
        for s in [*STATUS_ORDER, *sorted(set(counts) - set(STATUS_ORDER))]
        if counts[s]
    )
    planned, done = run.get("lanes"), run.get("completed", len(results))
    warning = ""
    if run.get("interrupted") or (isinstance(planned, int) and isinstance(done, int) and done < planned):
        finished = escape(f"The run was interrupted: {done} of {planned} planned lanes finished.")
        warning = f'<p class="note">{finished}</p>'
    return (
        f'<header><h1>lstm-conformance <span class="muted">· {escape(suites)}</span></h1>'
        f'<p class="verdict {css}">{escape(verdict)}</p>'
        f'<ul class="chips" aria-label="lanes by status">{chips}</ul>'
        f'<p class="muted">{escape(" · ".join(facts))}</p>{warning}{_toc(results)}</header>'
    )


def _toc(results: list[dict[str, Any]]) -> str:
    links = [("matrix", "Conformance matrix")]
    if any(r.get("status") in FAILING for r in results):
        links.append(("failures", "Failing lanes"))
    links.append(("curves", "Error per time step"))
    if any(isinstance(r.get("latency"), dict) for r in results):
        links.append(("latency", "Latency"))
    links += [("expected", "Expected divergences and skips"), ("environment", "Environment")]
    return '<nav><ul class="toc">' + "".join(f'<li><a href="#{a}">{t}</a></li>' for a, t in links) + "</ul></nav>"


def _matrix_section(results: list[dict[str, Any]]) -> str:
    loaded = _suite_cases({str(r.get("suite", "")) for r in results})
    features = case_features(results, loaded)
    order = {suite: {case: i for i, case in enumerate(cases)} for suite, cases in loaded.items()}
    by_suite: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in results:
        by_suite[str(record.get("suite", ""))].append(record)
    failing_ids = _failing_anchor_ids(results)
    legend = "".join(
        f'<li><span class="cell st-{s}" aria-hidden="true">{STATUS_SYMBOL[s]}</span> <b>{s}</b>: '
        f"{STATUS_MEANING[s]}</li>"
        for s in STATUS_ORDER
    )
    legend += '<li><span class="cell none" aria-hidden="true"></span> no such lane</li>'
    tables = [
        _matrix_table(suite, by_suite[suite], features, order.get(suite, {}), failing_ids) for suite in sorted(by_suite)
    ]
    return (
        '<section id="matrix"><h2>Conformance matrix</h2><p class="muted">Rows are cases with the features they '
        "exercise; columns are lanes: the runtime (bold) and the exporter that fed it. Hover a cell for its status "
        "and message; a failing cell links to its details.</p>"
        f'<ul class="legend">{legend}</ul>{"".join(tables)}</section>'
    )


def _matrix_table(
    suite: str,
    records: list[dict[str, Any]],
    features: dict[tuple[str, str], tuple[str, ...]],
    known: dict[str, int],
    failing_ids: dict[str, str],
) -> str:
    """One suite's cases (rows, in file order) by lanes (columns, grouped by exporter)."""
    lanes = sorted(
        {(str(r.get("exporter")), str(r.get("runtime"))) for r in records},
        key=lambda lane: (_EXPORTER_ORDER.get(lane[0], 9), lane),
    )
    starts = {lane for i, lane in enumerate(lanes) if i == 0 or lanes[i - 1][0] != lane[0]}  # exporter groups
    case_order = sorted({str(r.get("case")) for r in records}, key=lambda c: (known.get(c, len(known)), c))
    cells = {(str(r.get("case")), str(r.get("exporter")), str(r.get("runtime"))): r for r in records}
    head = "".join(
        f'<th scope="col" class="rt{" start" if (e, rt) in starts else ""}" title="{escape(e)}/{escape(rt)}">'
        f'<div><span class="r">{escape(rt)}</span><span class="e">{escape(_exporter_label(e))}</span></div></th>'
        for e, rt in lanes
    )
    rows = []
    for case in case_order:
        chips = "".join(
            f'<span class="feat{" dim" if f[:2] in ("T=", "B=", "H=") else ""}">{escape(f)}</span>'
            for f in features.get((suite, case), ())
        )
        row = [f'<th scope="row" class="case">{escape(case)}</th>']
        for lane in lanes:
            record = cells.get((case, *lane))
            start = " start" if lane in starts else ""
            row.append(
                _cell(record, failing_ids, start)
                if record
                else f'<td class="cell none{start}" title="no such lane"></td>'
            )
        row.append(f'<td class="feats">{chips}</td>')
        rows.append(f"<tr>{''.join(row)}</tr>")
    return (
        f'<h3>Suite <code>{escape(suite_name(suite))}</code> <span class="muted">{len(case_order)} cases \u00d7 '
        f"{len(lanes)} lane columns</span></h3>"
        f'<div class="scroll"><table class="matrix"><caption class="vh">{escape(suite)}: cases by lane</caption>'
        f'<thead><tr><th scope="col" class="corner">case</th>{head}<th scope="col" class="corner">features</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _exporter_label(exporter: str) -> str:
    return "no export" if exporter == "none" else exporter  # the reference runtime reads the weights


def _cell(record: dict[str, Any], failing_ids: dict[str, str], extra_class: str = "") -> str:
    status = str(record.get("status"))
    tip = f"{record.get('id')}\n{status}: {_one_line(record)}"
    symbol = STATUS_SYMBOL.get(status, "?")
    content = f'<span aria-hidden="true">{symbol}</span><span class="vh">{escape(status)}</span>'
    anchor = failing_ids.get(str(record.get("id")))
    if anchor:
        content = f'<a href="#{anchor}">{content}</a>'
    return f'<td class="cell st-{escape(status)}{extra_class}" title="{escape(tip)}">{content}</td>'


def _failures_section(results: list[dict[str, Any]]) -> str:
    failing = [r for r in results if r.get("status") in FAILING]
    if not failing:
        return ""
    anchors = _failing_anchor_ids(results)
    items = []
    for record in failing:
        expected, note = record.get("expected"), ""
        if isinstance(expected, dict):
            note = (
                f'<p class="note">Expected to {escape(str(expected.get("status", "fail")))}: '
                f"{escape(str(expected.get('reason', '')))}{_reference(expected.get('reference'))}</p>"
            )
        items.append(
            f'<article class="lane" id="{anchors[str(record["id"])]}"><h3>{_badge(str(record.get("status")))} '
            f"<code>{escape(str(record['id']))}</code></h3>"
            f"{note}<pre>{escape(str(record.get('message', '')))}</pre>{_details(record)}</article>"
        )
    return f'<section id="failures"><h2>Failing lanes ({len(failing)})</h2>{"".join(items)}</section>'


def _curves_section(results: list[dict[str, Any]]) -> str:
    figures = [
        f'<figure class="curve"><figcaption>{_badge(str(f.record.get("status")))} '
        f"<code>{escape(str(f.record.get('id')))}</code><br>"
        f'<span class="muted">{escape(f.why)} · {escape(f.caption)}</span></figcaption>{f.svg}</figure>'
        for f in step_figures(results, worst_passing=WORST_PASSING)
    ]
    body = f'<div class="grid">{"".join(figures)}</div>' if figures else "<p>No lane recorded errors per step.</p>"
    return (
        '<section id="curves"><h2>Error per time step</h2><p class="muted">Greatest absolute error at each step '
        f"of every output with a time axis, for each failing lane and the {WORST_PASSING} passing lanes closest to "
        "their tolerance. The green band is the allowed error for |expected| between 0 and 1; "
        f"headroom is error / allowed (above 1 fails).</p>{body}</section>"
    )


def _latency_section(results: list[dict[str, Any]]) -> str:
    blocks = []
    header = "".join(f"<th>{k.removesuffix('_ms')}</th>" for k in LATENCY_KEYS)
    for figure in latency_figures(results):
        rows = "".join(
            f"<tr><td><code>{escape(case)}</code></td><td>{escape(exporter)}</td>"
            + "".join(f'<td class="num">{escape(c)}</td>' for c in cells)
            + "</tr>"
            for case, exporter, *cells in figure.rows
        )
        blocks.append(
            f"<h3><code>{escape(figure.runtime)}</code></h3>{figure.svg}<details><summary>numbers (ms)</summary>"
            f'<table class="data"><thead><tr><th>case</th><th>exporter</th>{header}<th>runs</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></details>"
        )
    return f'<section id="latency"><h2>Latency per runtime</h2>{"".join(blocks)}</section>' if blocks else ""


def _expected_section(results: list[dict[str, Any]]) -> str:
    by_reason: dict[str, list[tuple[str, str]]] = defaultdict(list)  # reason: (lane id, reference)
    for record in results:
        expected = record.get("expected")
        if record.get("status") == "xfail" and isinstance(expected, dict):
            reference = str(expected.get("reference") or "")
            by_reason[str(expected.get("reason", ""))].append((str(record["id"]), reference))
    skipped = Counter(str(r.get("message", "")) for r in results if r.get("status") == "skip")
    rows = "".join(
        f'<tr><td class="num">{len(lanes)}</td><td>{escape(reason)}'
        + "".join(_reference(ref) for ref in dict.fromkeys(ref for _, ref in lanes))
        + f"</td><td><details><summary>lanes</summary>{'<br>'.join(f'<code>{escape(i)}</code>' for i, _ in lanes)}"
        "</details></td></tr>"
        for reason, lanes in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    )
    skips = "".join(f'<tr><td class="num">{n}</td><td>{escape(m)}</td></tr>' for m, n in skipped.most_common())
    head = "<tr><th>lanes</th><th>expected divergence (confirmed)</th><th>which</th></tr>"
    expected = f'<table class="data">{head}{rows}</table>' if rows else "<p>No expected divergence showed up.</p>"
    if skips:
        expected += f'<table class="data"><tr><th>lanes</th><th>skipped because</th></tr>{skips}</table>'
    return f'<section id="expected"><h2>Expected divergences and skips</h2>{expected}</section>'


def _environment_section(document: dict[str, Any]) -> str:
    env, run = document.get("environment") or {}, document.get("run") or {}
    rows = [(key, str(env[key])) for key in ("python", "platform", "cpu", "cpu_count") if key in env]
    rows.append(("gpus", ", ".join(map(str, env.get("gpus") or [])) or "none"))
    rows.append(("onnxruntime providers", ", ".join(map(str, env.get("onnxruntime_providers") or []))))
    rows += [(name, str(version)) for name, version in sorted((env.get("versions") or {}).items())]
    rows += [(f"run: {k}", _plain(run[k])) for k in ("suites", "select", "lanes", "wall_seconds", "argv") if k in run]
    rows.append(("schema_version", str(document.get("schema_version", ""))))
    return f'<section id="environment"><h2>Environment</h2>{_key_value_table(rows, "data env")}</section>'


# --- helpers ---------------------------------------------------------------------------------------


def _failing_anchor_ids(results: list[dict[str, Any]]) -> dict[str, str]:
    failing = [str(r.get("id")) for r in results if r.get("status") in FAILING]
    return {lane_id: f"lane-{i}" for i, lane_id in enumerate(failing, 1)}


def _one_line(record: dict[str, Any]) -> str:
    failed = [summary_line(d) for d in output_diffs(record) if not d.passed]
    if failed and record.get("status") in ("fail", "xfail"):
        return "; ".join(failed)
    message = str(record.get("message", ""))
    return next((line.strip() for line in message.splitlines() if line.strip()), "")


def _badge(status: str) -> str:
    return f'<span class="badge st-{escape(status)}">{STATUS_SYMBOL.get(status, "?")} {escape(status)}</span>'


def _details(record: dict[str, Any]) -> str:
    rows = [(summary_line(d).split(": ", 1)[0], summary_line(d).split(": ", 1)[-1]) for d in output_diffs(record)]
    artifact = record.get("artifact") or {}
    for key in ("exporter", "opset", "producer", "size_bytes", "cached"):
        if key in artifact:
            rows.append((f"artifact {key}", _plain(artifact[key])))
    if artifact.get("op_histogram"):
        rows.append(("artifact ops", ", ".join(f"{k} {v}" for k, v in sorted(artifact["op_histogram"].items()))))
    rows += [(f"placement {node}", str(where)) for node, where in sorted((record.get("placement") or {}).items())]
    rows += [(f"setting {key}", _plain(value)) for key, value in sorted((record.get("settings") or {}).items())]
    if isinstance(record.get("duration_s"), (int, float)):
        rows.append(("duration", f"{record['duration_s']} s"))
    if not rows:
        return ""
    return f"<details><summary>outputs, artifact, placement, settings</summary>{_key_value_table(rows)}</details>"


def _key_value_table(rows: list[tuple[str, str]], css: str = "data") -> str:
    body = "".join(f"<tr><th scope='row'>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="{css}">{body}</table>'


def _reference(reference: object) -> str:
    return f' <span class="ref">(see {escape(str(reference))})</span>' if reference else ""


def _plain(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return "" if value is None else str(value)


_CSS = """
:root{--fg:#1d2330;--muted:#5b6472;--line:#d9dde3;--bg:#f6f7f9;--card:#fff}*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1360px;margin:0 auto;padding:24px 28px 60px}h1{font-size:24px;margin:0 0 6px}
h2{font-size:19px;margin:0 0 10px}h3{font-size:15px;margin:18px 0 8px}
section,header{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:0 0 18px}
.muted{color:var(--muted)}code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.verdict{font-size:20px;font-weight:700;display:inline-block;padding:6px 14px;border-radius:8px;margin:6px 0 10px}
.verdict-fail{background:#fdecea;color:#a4161a;border:1px solid #f5c2c0}
.verdict-pass{background:#e8f5e9;color:#1b5e20;border:1px solid #b9dfbc}.verdict-none{background:#eee;color:#444}
.chips,.legend,.toc{list-style:none;padding:0;margin:6px 0;display:flex;flex-wrap:wrap;gap:8px}
.chip{padding:3px 10px;border-radius:999px;font-size:13px}.toc li a{color:#0b57d0}
.legend li{display:flex;align-items:center;gap:6px;margin-right:14px;font-size:13px}.scroll{overflow-x:auto}
table.matrix{border-collapse:separate;border-spacing:2px}
table.matrix th.case{text-align:left;font:500 12.5px ui-monospace,Menlo,Consolas,monospace;
  white-space:nowrap;padding-right:10px}
table.matrix th.rt{vertical-align:bottom;padding:0 0 4px;font-weight:600;font-size:12px}
table.matrix th.rt div{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;margin:0 auto;
  text-align:left}
table.matrix th.rt span{display:block}table.matrix th.rt .e{font-weight:400;color:var(--muted);font-size:11px}
table.matrix .start{box-shadow:-3px 0 0 var(--card),-5px 0 0 #b7bec8}
table.matrix th.corner{text-align:left;vertical-align:bottom;font-size:12px;color:var(--muted)}
td.feats{padding:1px 0 1px 12px;min-width:280px}
.feat{display:inline-block;background:#eef1f6;border-radius:4px;padding:0 5px;margin:1px 2px;font-size:11.5px}
.feat.dim{background:none;color:var(--muted)}
.cell{width:26px;min-width:26px;height:24px;text-align:center;font-weight:700;border-radius:4px;font-size:13px}
span.cell{display:inline-block;line-height:24px}.cell a{color:inherit;text-decoration:none;display:block}
.cell.none{background:repeating-linear-gradient(45deg,#f3f4f6,#f3f4f6 3px,#e7e9ed 3px,#e7e9ed 6px)}
.st-pass{background:#dff3e3;color:#1b5e20}.st-fail{background:#d32f2f;color:#fff}
.st-xfail{background:#fff0c2;color:#7a5200}.st-xpass{background:#ad1457;color:#fff}
.st-error{background:#e65100;color:#fff}.st-timeout{background:#5d4037;color:#fff}
.st-skip{background:#eceff1;color:#607080}
.badge{display:inline-block;padding:1px 8px;border-radius:5px;font-size:12.5px;font-weight:700}
article.lane{border-top:1px solid var(--line);padding-top:6px}
pre{background:#0f172a;color:#e5e7eb;padding:12px 14px;border-radius:8px;overflow-x:auto;
  white-space:pre-wrap;word-break:break-word}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;margin:6px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(610px,1fr));gap:14px}
figure.curve{margin:0;border:1px solid var(--line);border-radius:8px;padding:10px}
figure.curve figcaption{font-size:13px;margin-bottom:4px}svg{max-width:100%;height:auto}
table.data{border-collapse:collapse;margin:8px 0;font-size:13px}
table.data th,table.data td{border-bottom:1px solid var(--line);padding:4px 10px;text-align:left;vertical-align:top}
table.data td.num{text-align:right;font-variant-numeric:tabular-nums}
table.env th{color:var(--muted);font-weight:500;white-space:nowrap}
details summary{cursor:pointer;color:#0b57d0;margin:4px 0}.ref{color:var(--muted)}
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
"""
