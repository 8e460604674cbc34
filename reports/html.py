"""One self-contained HTML page: verdict, the result matrix, error curves, latency, environment.

Offline by construction: inline CSS and SVG, no script, no external resource. Every status is shown by a
symbol and a word as well as a colour. All text from the result file is escaped and made safe (control
characters visible, long fields cut: ``reports.text``); the JSON file keeps the full text.

The page names what was checked: the model of a ``check``, the suites of a ``run``. Rows of the matrix are a
run's cases (with the features each exercises) or a check's shapes and nodes; columns are what ran them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from html import escape

from conformance.diffs import summary_line
from conformance.records import Result, ResultDocument
from conformance.status import FAILING, PASSING, SKIP, STATUSES, UNCHECKED, XFAIL
from reports.labels import LOOKS, against, checked, model_file, noun, row_label, suite_name, unfinished
from reports.latency import timed
from reports.svg import LATENCY_KEYS, latency_figures, step_figures
from reports.text import FILE_MESSAGE, ID, MESSAGE, NAME, count, first_line, joined, plural, safe

__all__ = ["render_html"]

WORST_PASSING = 5  # error curves for this many passing results closest to their tolerance
_EXPORTER_ORDER = {"none": 0, "onnx-native": 1}
_RUN_KEYS = ("command", "model", "suites", "select", "lanes", "wall_seconds", "argv")

Column = tuple[str, str]  # (exporter, runtime)
Row = tuple[str, str, str]  # (case, kind, node)


def render_html(document: ResultDocument) -> str:
    """The result document as one HTML page (a string)."""
    results = tuple(sorted(document.results, key=lambda r: r.id))
    command, names = checked(document)
    if command == "check":
        module = f" against {against(document)}" if against(document) else ""
        title = f"lstm-conformance check: {model_file(document)}{module}"
        heading = ("lstm-conformance check", names[0] + module)
    else:
        what = ", ".join(names) or "conformance"
        title, heading = f"lstm-conformance: {what}", ("lstm-conformance", what)
    body = [
        _header(document, results, heading),
        _matrix_section(document, results),
        _failures_section(document, results),
        _curves_section(results),
        _latency_section(results),
        _expected_section(results, noun(document)),
        _environment_section(document),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_h(title, ID)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(part for part in body if part)
        + "\n</main>\n</body>\n</html>\n"
    )


def _h(text: object, limit: int | None = NAME, *, multiline: bool = False) -> str:
    """Text from the file, safe and escaped for HTML (element content and quoted attributes)."""
    return escape(safe(text, limit, multiline=multiline))


# --- sections --------------------------------------------------------------------------------------


def _header(document: ResultDocument, results: Sequence[Result], heading: tuple[str, str]) -> str:
    counts = Counter(r.status for r in results)
    word = noun(document)
    failing = sum(counts[s] for s in FAILING)
    if failing:
        verdict, css = f"✗ FAIL: {failing} failing {plural(failing, word)}", "verdict-fail"
    elif any(counts[s] for s in PASSING):
        verdict, css = f"✓ PASS: every {word} that ran conforms", "verdict-pass"
    else:
        verdict, css = "nothing was checked", "verdict-none"
    run = document.run
    wall = run.get("wall_seconds")
    facts = [count(len(results), word)]
    facts += [f"{wall:.1f} s"] if isinstance(wall, (int, float)) and not isinstance(wall, bool) else []
    facts += [f"-k {run['select']}"] if run.get("select") else []
    chips = "".join(
        f'<li class="chip st-{s}"><span class="sym" aria-hidden="true">{LOOKS[s].symbol}</span> '
        f"<b>{counts[s]}</b> {s}</li>"
        for s in STATUSES
        if counts[s]
    )
    finished = unfinished(document)
    warning = f'<p class="note">{_h(f"The run was interrupted: {finished}.", ID)}</p>' if finished else ""
    return (
        f'<header><h1>{escape(heading[0])} <span class="muted">· {_h(heading[1], ID)}</span></h1>'
        f'<p class="verdict {css}">{escape(verdict)}</p>'
        f'<ul class="chips" aria-label="{word}s by status">{chips}</ul>'
        f'<p class="muted">{_h(" · ".join(facts), MESSAGE)}</p>{warning}{_toc(document, results)}</header>'
    )


def _toc(document: ResultDocument, results: Sequence[Result]) -> str:
    word = noun(document)
    links = [("matrix", "Matrix" if word == "result" else "Conformance matrix")]
    if any(r.status in FAILING for r in results):
        links.append(("failures", f"Failing {word}s"))
    links.append(("curves", "Error per time step"))
    if any(timed(r) is not None for r in results):
        links.append(("latency", "Latency"))
    links += [("expected", "Expected divergences and unchecked results"), ("environment", "Environment")]
    return '<nav><ul class="toc">' + "".join(f'<li><a href="#{a}">{t}</a></li>' for a, t in links) + "</ul></nav>"


def _matrix_section(document: ResultDocument, results: Sequence[Result]) -> str:
    command, names = checked(document)
    groups: dict[str, list[Result]] = defaultdict(list)
    for result in results:
        groups[names[0] if command == "check" else suite_name(result.suite)].append(result)
    anchors = _failing_anchors(results)
    legend = "".join(
        f'<li><span class="cell st-{s}" aria-hidden="true">{look.symbol}</span> <b>{s}</b>: {look.meaning}</li>'
        for s, look in LOOKS.items()
    )
    legend += '<li><span class="cell none" aria-hidden="true"></span> did not run</li>'
    if command == "check":
        intro = (
            "Rows are the inputs that ran (shape) and each LSTM node or the whole model; columns are the "
            "runtimes. Hover a cell for its status and message; a failing cell links to its details."
        )
        tables = [_matrix_table(f"Model <code>{_h(group, ID)}</code>", groups[group], anchors) for group in groups]
    else:
        intro = (
            "Rows are cases with the features they exercise; columns are lanes: the runtime (bold) and the "
            "exporter that fed it. Hover a cell for its status and message; a failing cell links to its details."
        )
        tables = [
            _matrix_table(f"Suite <code>{_h(group)}</code>", groups[group], anchors, cases=True)
            for group in sorted(groups)
        ]
    title = "Matrix" if command == "check" else "Conformance matrix"
    return (
        f'<section id="matrix"><h2>{title}</h2><p class="muted">{intro}</p>'
        f'<ul class="legend">{legend}</ul>{"".join(tables)}</section>'
    )


def _matrix_table(heading: str, results: Sequence[Result], anchors: Mapping[str, str], *, cases: bool = False) -> str:
    """One group's rows (cases, or shapes x nodes) by columns (exporter/runtime, grouped by exporter)."""
    columns: list[Column] = sorted(
        {(r.exporter, r.runtime) for r in results}, key=lambda c: (_EXPORTER_ORDER.get(c[0], 9), c)
    )
    starts = {c for i, c in enumerate(columns) if i == 0 or columns[i - 1][0] != c[0]}  # exporter groups
    labels: dict[Row, str] = {}
    features: dict[Row, tuple[str, ...]] = {}
    cells: dict[tuple[Row, Column], Result] = {}
    for result in results:
        row = (result.case, result.kind, result.node or "")
        if row not in labels or result.shape:  # a result that recorded its shape names the row best
            labels[row] = row_label(result)
        features[row] = tuple(dict.fromkeys((*features.get(row, ()), *result.features)))
        cells[(row, (result.exporter, result.runtime))] = result
    rows = sorted(labels, key=lambda row: (features[row][:1], labels[row], row) if cases else (labels[row], row))
    single = len({c[0] for c in columns}) == 1 and not cases  # a check: every column is the user's model
    head = "".join(
        f'<th scope="col" class="rt{" start" if c in starts and not single else ""}" title="{_h(c[0])}/{_h(c[1])}">'
        f'<div><span class="r">{_h(c[1])}</span>'
        + ("" if single else f'<span class="e">{_h(_exporter_label(c[0]))}</span>')
        + "</div></th>"
        for c in columns
    )
    body = []
    for row in rows:
        chips = "".join(
            f'<span class="feat{" dim" if f[:2] in ("T=", "B=", "H=") else ""}">{_h(f)}</span>' for f in features[row]
        )
        tds = [f'<th scope="row" class="case">{_h(labels[row], ID)}</th>']
        for column in columns:
            start = " start" if column in starts and not single else ""
            found = cells.get((row, column))
            tds.append(
                _cell(found, anchors, start) if found else f'<td class="cell none{start}" title="did not run"></td>'
            )
        tds.append(f'<td class="feats">{chips}</td>')
        body.append(f"<tr>{''.join(tds)}</tr>")
    what, column_word = ("case", "lane column") if cases else ("row", "runtime column")
    size = f"{count(len(rows), what)} \u00d7 {count(len(columns), column_word)}"
    return (
        f'<h3>{heading} <span class="muted">{size}</span></h3>'
        f'<div class="scroll"><table class="matrix"><caption class="vh">{what}s by column</caption>'
        f'<thead><tr><th scope="col" class="corner">{"case" if cases else "input · node"}</th>{head}'
        f'<th scope="col" class="corner">features</th></tr></thead><tbody>{"".join(body)}</tbody></table></div>'
    )


def _exporter_label(exporter: str) -> str:
    return "no export" if exporter == "none" else exporter  # the reference runtime reads the weights


def _cell(result: Result, anchors: Mapping[str, str], extra_class: str = "") -> str:
    tip = f"{safe(result.id, ID)}\n{result.status}: {safe(_one_line(result), MESSAGE)}"
    content = f'<span aria-hidden="true">{LOOKS[result.status].symbol}</span><span class="vh">{result.status}</span>'
    anchor = anchors.get(result.id)
    if anchor:
        content = f'<a href="#{anchor}">{content}</a>'
    return f'<td class="cell st-{result.status}{extra_class}" title="{escape(tip)}">{content}</td>'


def _failures_section(document: ResultDocument, results: Sequence[Result]) -> str:
    failing = [r for r in results if r.status in FAILING]
    if not failing:
        return ""
    anchors = _failing_anchors(results)
    items = []
    for result in failing:
        note = ""
        if result.expected is not None:
            note = (
                f'<p class="note">Expected to {_h(result.expected.status)}: '
                f"{_h(result.expected.reason, MESSAGE)}{_reference(result.expected.reference)}</p>"
            )
        items.append(
            f'<article class="lane" id="{anchors[result.id]}"><h3>{_badge(result.status)} '
            f"<code>{_h(result.id, ID)}</code></h3>"
            f"{note}<pre>{_h(result.message, FILE_MESSAGE, multiline=True)}</pre>{_details(result)}</article>"
        )
    word = noun(document)
    return f'<section id="failures"><h2>Failing {word}s ({len(failing)})</h2>{"".join(items)}</section>'


def _curves_section(results: Sequence[Result]) -> str:
    figures = [
        f'<figure class="curve"><figcaption>{_badge(f.result.status)} '
        f"<code>{_h(f.result.id, ID)}</code><br>"
        f'<span class="muted">{escape(f.why)} · {_h(f.caption, None)}</span></figcaption>{f.svg}</figure>'
        for f in step_figures(results, worst_passing=WORST_PASSING)
    ]
    body = f'<div class="grid">{"".join(figures)}</div>' if figures else "<p>No result recorded errors per step.</p>"
    return (
        '<section id="curves"><h2>Error per time step</h2><p class="muted">Greatest absolute error at each step '
        f"of every output with a time axis, for each failing result and the {WORST_PASSING} passing results "
        "closest to their tolerance. The green band is the allowed error for |expected| between 0 and 1; "
        f"headroom is error / allowed (above 1 fails).</p>{body}</section>"
    )


def _latency_section(results: Sequence[Result]) -> str:
    blocks = []
    header = "".join(f"<th>{k.removesuffix('_ms')}</th>" for k in LATENCY_KEYS)
    for figure in latency_figures(results):
        rows = "".join(
            f"<tr><td><code>{_h(case)}</code></td><td>{_h(exporter)}</td>"
            + "".join(f'<td class="num">{escape(c)}</td>' for c in cells)
            + "</tr>"
            for case, exporter, *cells in figure.rows
        )
        blocks.append(
            f"<h3><code>{_h(figure.runtime, ID)}</code></h3>{figure.svg}<details><summary>numbers (ms)</summary>"
            f'<table class="data"><thead><tr><th>case</th><th>exporter</th>{header}<th>runs</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></details>"
        )
    return f'<section id="latency"><h2>Latency per runtime</h2>{"".join(blocks)}</section>' if blocks else ""


def _expected_section(results: Sequence[Result], word: str) -> str:
    by_reason: dict[str, list[tuple[str, str]]] = defaultdict(list)  # reason: (result id, reference)
    for result in results:
        if result.status == XFAIL and result.expected is not None:
            by_reason[result.expected.reason].append((result.id, result.expected.reference or ""))
    rows = "".join(
        f'<tr><td class="num">{len(ids)}</td><td>{_h(reason, MESSAGE)}'
        + "".join(_reference(ref) for ref in dict.fromkeys(ref for _, ref in ids))
        + f"</td><td><details><summary>{word}s</summary>"
        + "<br>".join(f"<code>{_h(i, ID)}</code>" for i, _ in ids)
        + "</details></td></tr>"
        for reason, ids in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    )
    head = f"<tr><th>{word}s</th><th>expected divergence (confirmed)</th><th>which</th></tr>"
    body = f'<table class="data">{head}{rows}</table>' if rows else "<p>No expected divergence showed up.</p>"
    for status in sorted(UNCHECKED, key=STATUSES.index):
        reasons = Counter(r.message for r in results if r.status == status)
        because = "skipped because" if status == SKIP else "not exercised because"
        cells = "".join(
            f'<tr><td class="num">{n}</td><td>{_h(m, MESSAGE)}</td></tr>'
            for m, n in sorted(reasons.items(), key=lambda kv: -kv[1])
        )
        if cells:
            body += f'<table class="data"><tr><th>{word}s</th><th>{because}</th></tr>{cells}</table>'
    return f'<section id="expected"><h2>Expected divergences and unchecked results</h2>{body}</section>'


def _environment_section(document: ResultDocument) -> str:
    env, run = document.environment, document.run
    rows = [(key, str(env[key])) for key in ("python", "platform", "cpu", "cpu_count") if key in env]
    rows.append(("gpus", joined(env.get("gpus") or []) or "none"))
    rows.append(("onnxruntime providers", joined(env.get("onnxruntime_providers") or [])))
    versions = env.get("versions")
    rows += [(name, str(v)) for name, v in sorted(versions.items())] if isinstance(versions, dict) else []
    rows += [(f"run: {key}", _plain(run[key])) for key in _RUN_KEYS if key in run]
    rows.append(("schema_version", str(document.schema_version)))
    return f'<section id="environment"><h2>Environment</h2>{_key_value_table(rows, "data env")}</section>'


# --- helpers ---------------------------------------------------------------------------------------


def _failing_anchors(results: Iterable[Result]) -> dict[str, str]:
    failing = [r.id for r in results if r.status in FAILING]
    return {result_id: f"lane-{i}" for i, result_id in enumerate(failing, 1)}


def _one_line(result: Result) -> str:
    failed = [summary_line(d) for d in result.outputs if not d.passed]
    if failed and result.status in ("fail", "xfail"):
        return "; ".join(failed)
    return first_line(result.message)


def _badge(status: str) -> str:
    return f'<span class="badge st-{status}">{LOOKS[status].symbol} {status}</span>'


def _details(result: Result) -> str:
    rows = [tuple(summary_line(d).split(": ", 1)) for d in result.outputs]
    pairs: list[tuple[str, str]] = [(r[0], r[-1]) for r in rows]
    artifact = result.artifact or {}
    for key in ("exporter", "opset", "producer", "size_bytes", "cached"):
        if key in artifact:
            pairs.append((f"artifact {key}", _plain(artifact[key])))
    histogram = artifact.get("op_histogram")
    if isinstance(histogram, dict) and histogram:
        pairs.append(("artifact ops", ", ".join(f"{k} {v}" for k, v in sorted(histogram.items()))))
    pairs += [(f"placement {node}", str(where)) for node, where in sorted(result.placement.items())]
    pairs += [(f"setting {key}", _plain(value)) for key, value in sorted(result.settings.items())]
    if result.node is not None:
        pairs.append(("node", result.node))
    if result.duration_s is not None:
        pairs.append(("duration", f"{result.duration_s} s"))
    if not pairs:
        return ""
    return f"<details><summary>outputs, artifact, placement, settings</summary>{_key_value_table(pairs)}</details>"


def _key_value_table(rows: Sequence[tuple[str, str]], css: str = "data") -> str:
    body = "".join(f"<tr><th scope='row'>{_h(k, ID)}</th><td>{_h(v, MESSAGE)}</td></tr>" for k, v in rows)
    return f'<table class="{css}">{body}</table>'


def _reference(reference: str | None) -> str:
    return f' <span class="ref">(see {_h(reference, ID)})</span>' if reference else ""


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
.st-skip{background:#eceff1;color:#607080}.st-not-exercised{background:#e0f2f1;color:#00695c}
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
