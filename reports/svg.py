"""The HTML report's charts: per-step error curves (log scale) and latency bars, as inline SVG.

Plain strings, no plotting library: the page stays one offline file. Every chart has a <title> and a
<desc> for screen readers, and every point or bar a <title> tooltip with its value. The second half picks
which lanes get a chart and reads the charts' data from their records.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from conformance.records import Result
from conformance.status import FAILING, PASS
from reports.latency import number, timed
from reports.text import ID, NAME, safe

__all__ = [
    "LATENCY_KEYS",
    "PALETTE",
    "Bar",
    "LatencyFigure",
    "Series",
    "StepFigure",
    "latency_chart",
    "latency_figures",
    "step_error_chart",
    "step_figures",
]

# Okabe-Ito: distinguishable with the common colour-vision deficiencies; each series also has its own marker.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
_DASHES = ("", "6 3", "2 2", "8 3 2 3")
MARKERS_UP_TO = 60  # steps; a longer series draws its line and marks only its worst step
_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'


@dataclass(frozen=True)
class Series:
    """One output's greatest absolute error at each time step."""

    name: str
    values: tuple[float, ...]


@dataclass(frozen=True)
class Bar:
    """One lane's latency: the bar is the median, the whisker runs to p90."""

    label: str
    median: float
    p90: float | None = None
    detail: str = ""
    colour: str = PALETTE[0]


def step_error_chart(
    series: Sequence[Series], *, atol: float, rtol: float, title: str, width: int = 600, height: int = 250
) -> str:
    """Per-step error lines on a log y axis, over the allowed band ``atol`` .. ``atol + rtol`` (|expected| <= 1)."""
    left, right, top, bottom = 64, 16, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    finite = [v for s in series for v in s.values if math.isfinite(v) and v > 0]
    bounds = [*finite, atol + rtol] if atol + rtol > 0 else finite
    positive = [v for v in (*bounds, atol) if v > 0]
    low_exp = math.floor(math.log10(min(positive))) - 1 if positive else -12
    high_exp = math.ceil(math.log10(max(positive))) if positive else 0
    high_exp = max(high_exp, low_exp + 2)
    floor_value = 10.0**low_exp
    steps = max((len(s.values) for s in series), default=1)

    def x(step: int) -> float:
        return left + (plot_w / 2 if steps == 1 else plot_w * step / (steps - 1))

    def y(value: float) -> float:
        exponent = math.log10(max(value, floor_value))
        return top + plot_h * (high_exp - exponent) / (high_exp - low_exp)

    parts = [_open(width, height, title, _describe(series, atol, rtol))]
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#c8ccd2"/>')
    for exponent in range(low_exp, high_exp + 1):  # decade grid and labels
        gy = y(10.0**exponent)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#eceef1"/>')
        parts.append(_text(left - 6, gy + 4, f"1e{exponent}", anchor="end", size=11, fill="#555"))
    if atol + rtol > 0:  # the allowed band and its edges
        y_hi, y_lo = y(atol + rtol), y(atol) if atol > 0 else top + plot_h
        parts.append(
            f'<rect x="{left}" y="{y_hi:.1f}" width="{plot_w}" height="{max(y_lo - y_hi, 1):.1f}" fill="#2e7d32" '
            'fill-opacity="0.08"><title>allowed error: atol + rtol * |expected|, for |expected| from 0 to 1</title>'
            "</rect>"
        )
        for value, label in ((atol + rtol, f"atol+rtol = {_num(atol + rtol)}"), (atol, f"atol = {_num(atol)}")):
            if value > 0:
                parts.append(
                    f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                    'stroke="#2e7d32" stroke-width="1.5" stroke-dasharray="5 4"/>'
                )
                parts.append(_text(left + plot_w - 4, y(value) - 4, label, anchor="end", size=11, fill="#2e7d32"))
    tick_every = max(1, int(_nice_step((steps - 1) / 10)))
    for step in range(0, steps, tick_every):
        parts.append(_text(x(step), top + plot_h + 16, str(step), anchor="middle", size=11, fill="#555"))
    parts.append(_text(left + plot_w / 2, height - 6, "time step", anchor="middle", size=12, fill="#333"))
    parts.append(_text(14, top + plot_h / 2, "max |error|", anchor="middle", size=12, fill="#333", rotate=True))
    for index, item in enumerate(series):
        colour, dash = PALETTE[index % len(PALETTE)], _DASHES[index % len(_DASHES)]
        points = [(x(i), y(v) if math.isfinite(v) else top, v) for i, v in enumerate(item.values)]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        if steps <= MARKERS_UP_TO:
            for step, (px, py, value) in enumerate(points):
                tip = _esc(f"{item.name}, step {step}: {_num(value)}")
                parts.append(f"{_marker(index, px, py, colour, finite=math.isfinite(value))}<title>{tip}</title></g>")
        elif points:  # a long sequence: mark only its worst step
            step = max(range(len(points)), key=lambda i: _rank(points[i][2]))
            px, py, value = points[step]
            tip = _esc(f"{item.name}: greatest {_num(value)} at step {step}")
            parts.append(f"{_marker(index, px, py, colour, finite=math.isfinite(value))}<title>{tip}</title></g>")
    legend_x = left
    for index, item in enumerate(series):  # legend above the plot
        colour = PALETTE[index % len(PALETTE)]
        parts.append(_marker(index, legend_x + 6, 16, colour, finite=True) + "</g>")
        parts.append(_text(legend_x + 16, 20, item.name, size=12, fill="#222"))
        legend_x += 30 + 8 * len(item.name)
    parts.append("</svg>")
    return "".join(parts)


def latency_chart(groups: Sequence[tuple[str, Sequence[Bar]]], *, title: str, width: int = 900) -> str:
    """Horizontal bars of median latency with a whisker to p90, one block of bars per group (case)."""
    label_w, right, bar_h, gap, head = 220, 90, 18, 6, 22
    rows = sum(len(bars) for _, bars in groups)
    height = 30 + len(groups) * head + rows * (bar_h + gap) + 46
    plot_w = width - label_w - right
    top_value = max((max(b.median, b.p90 or 0.0) for _, bars in groups for b in bars), default=1.0) or 1.0
    step = _nice_step(top_value / 5)
    scale_max = step * math.ceil(top_value / step)

    def x(value: float) -> float:
        return label_w + plot_w * value / scale_max

    desc = "; ".join(f"{g}: " + ", ".join(f"{b.label} {_num(b.median)} ms" for b in bars) for g, bars in groups)
    parts = [_open(width, height, title, desc)]
    axis_y = height - 42
    ticks = round(scale_max / step)
    for i in range(ticks + 1):
        tx = x(i * step)
        parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="24" y2="{axis_y}" stroke="#eceef1"/>')
        parts.append(_text(tx, axis_y + 15, _num(i * step), anchor="middle", size=11, fill="#555"))
    parts.append(_text(label_w + plot_w / 2, height - 6, "milliseconds (bar: median, whisker: p90)", anchor="middle"))
    cursor = 30
    for group, bars in groups:
        parts.append(_text(8, cursor + 15, group, size=13, fill="#111", weight="600"))
        cursor += head
        for bar in bars:
            mid = cursor + bar_h / 2
            colour = bar.colour
            tip = _esc(f"{group} · {bar.label}: median {_num(bar.median)} ms{bar.detail}")
            parts.append(_text(label_w - 8, mid + 4, bar.label, anchor="end", size=12, fill="#333"))
            parts.append(
                f'<g><title>{tip}</title><rect x="{label_w}" y="{cursor}" '
                f'width="{max(x(bar.median) - label_w, 1):.1f}" '
                f'height="{bar_h}" fill="{colour}" fill-opacity="0.85" rx="2"/>'
            )
            end = x(bar.median)
            if bar.p90 is not None and bar.p90 > bar.median:
                end = x(bar.p90)
                parts.append(
                    f'<line x1="{x(bar.median):.1f}" x2="{end:.1f}" y1="{mid}" y2="{mid}" stroke="#222" '
                    f'stroke-width="1.5"/><line x1="{end:.1f}" x2="{end:.1f}" y1="{mid - 5}" y2="{mid + 5}" '
                    'stroke="#222" stroke-width="1.5"/>'
                )
            parts.append(_text(end + 5, mid + 4, f"{_num(bar.median)} ms", size=11, fill="#222") + "</g>")
            cursor += bar_h + gap
    parts.append(f'<line x1="{label_w}" x2="{label_w}" y1="24" y2="{axis_y}" stroke="#888"/>')
    parts.append("</svg>")
    return "".join(parts)


def _open(width: int, height: int, title: str, desc: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" {_FONT}>'
        f"<title>{_esc(title)}</title><desc>{_esc(desc)}</desc>"
    )


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "start",
    size: int = 12,
    fill: str = "#333",
    weight: str = "400",
    rotate: bool = False,
) -> str:
    transform = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{fill}" '
        f'font-weight="{weight}"{transform}>{_esc(text)}</text>'
    )


def _marker(index: int, x: float, y: float, colour: str, *, finite: bool) -> str:
    """An open <g> holding the series' marker (circle, square, triangle, diamond); NaN/Inf get a cross."""
    if not finite:
        return (
            f'<g><path d="M{x - 5:.1f},{y - 5:.1f}L{x + 5:.1f},{y + 5:.1f}M{x - 5:.1f},{y + 5:.1f}'
            f'L{x + 5:.1f},{y - 5:.1f}" stroke="{colour}" stroke-width="2.5"/>'
        )
    shape = index % 4
    if shape == 0:
        mark = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5"'
    elif shape == 1:
        mark = f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7"'
    elif shape == 2:
        mark = f'<path d="M{x:.1f},{y - 4.5:.1f}L{x + 4.5:.1f},{y + 3.5:.1f}L{x - 4.5:.1f},{y + 3.5:.1f}Z"'
    else:
        mark = f'<path d="M{x:.1f},{y - 5:.1f}L{x + 5:.1f},{y:.1f}L{x:.1f},{y + 5:.1f}L{x - 5:.1f},{y:.1f}Z"'
    return f'<g>{mark} fill="{colour}" stroke="#fff" stroke-width="1"/>'


def _describe(series: Sequence[Series], atol: float, rtol: float) -> str:
    worst = "; ".join(f"{s.name}: greatest {_num(max(s.values, key=_rank))}" for s in series if s.values)
    return f"Greatest absolute error per time step, log scale; allowed atol {_num(atol)}, rtol {_num(rtol)}. {worst}"


def _rank(value: float) -> tuple[bool, float]:
    """Sort key putting NaN/Inf above every finite value."""
    return (not math.isfinite(value), value if math.isfinite(value) else 0.0)


def _nice_step(raw: float) -> float:
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _num(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.3g}"
    return f"{value:.2e}".replace("e-0", "e-").replace("e+0", "e")


# --- which lanes get a chart, and the charts' data from their records -------------------------------

LATENCY_KEYS = ("median_ms", "p90_ms", "p99_ms", "min_ms", "mean_ms", "stdev_ms", "ci_low_ms", "ci_high_ms")


@dataclass(frozen=True)
class StepFigure:
    result: Result
    why: str  # "failing" or "closest to tolerance"
    svg: str
    caption: str  # headroom per output, and the failed outputs the chart cannot show


@dataclass(frozen=True)
class LatencyFigure:
    runtime: str  # with its provider, where the lanes name one
    svg: str
    rows: tuple[tuple[str, ...], ...]  # case, exporter, LATENCY_KEYS..., runs (raw names: the page escapes)


def step_figures(results: Sequence[Result], *, worst_passing: int) -> list[StepFigure]:
    """Error-per-step charts: every failing lane, then the ``worst_passing`` passes with the least headroom."""
    charted = [(r, _step_series(r)) for r in results]
    failing = [(r, s) for r, s in charted if r.status in FAILING and s[0]]
    passing = sorted(
        ((r, s) for r, s in charted if r.status == PASS and s[0]),
        key=lambda item: (-_headroom(item[0]), item[0].id),
    )[:worst_passing]
    figures = []
    for (result, (series, atol, rtol)), why in [
        *((item, "failing") for item in failing),
        *((item, "closest to tolerance") for item in passing),
    ]:
        svg = step_error_chart(series, atol=atol, rtol=rtol, title=f"{safe(result.id, ID)}: error per time step")
        diffs = sorted(result.outputs, key=lambda d: d.name)
        caption = "headroom " + ", ".join(f"{safe(d.name, NAME)} {_num(d.headroom)}" for d in diffs)
        uncharted = [safe(d.name, NAME) for d in diffs if not d.per_step_max_abs and not d.passed]
        if uncharted:
            caption += f"; {', '.join(uncharted)} failed too (no time axis to chart)"
        figures.append(StepFigure(result, why, svg, caption))
    return figures


def latency_figures(results: Sequence[Result]) -> list[LatencyFigure]:
    """One bar chart per runtime (provider) of the lanes that carry latency, grouped by case."""
    by_runtime: dict[str, dict[str, list[Result]]] = defaultdict(lambda: defaultdict(list))
    for result in results:
        if timed(result) is not None:
            by_runtime[result.runtime][result.case].append(result)
    exporters = sorted({r.exporter for cases in by_runtime.values() for rs in cases.values() for r in rs})
    colours = {e: PALETTE[i % len(PALETTE)] for i, e in enumerate(exporters)}  # one colour per exporter
    figures = []
    for runtime in sorted(by_runtime):
        groups, rows, provider = [], [], ""
        for case in sorted(by_runtime[runtime]):
            bars = []
            for result in sorted(by_runtime[runtime][case], key=lambda r: r.exporter):
                latency = timed(result) or {}
                provider = provider or str(result.settings.get("provider", ""))
                values = {key: number(latency.get(key)) for key in LATENCY_KEYS}
                detail = "".join(
                    f", {k.removesuffix('_ms')} {_num(v)} ms"
                    for k in ("p90_ms", "p99_ms", "min_ms")
                    if (v := values[k])
                )
                median = float(latency["median_ms"])
                colour = colours[result.exporter]
                bars.append(Bar(safe(result.exporter, NAME), median, values["p90_ms"], detail, colour))
                cells = tuple("" if v is None else _num(v) for v in values.values())
                rows.append((case, result.exporter, *cells, str(int(latency["count"]))))
            groups.append((safe(case, NAME), bars))
        name = f"{runtime} ({provider})" if provider else runtime
        svg = latency_chart(groups, title=f"{safe(name, ID)}: median latency with p90 whisker")
        figures.append(LatencyFigure(name, svg, tuple(rows)))
    return figures


def _step_series(result: Result) -> tuple[list[Series], float, float]:
    diffs = [d for d in result.outputs if d.per_step_max_abs]
    series = [Series(safe(d.name, NAME), tuple(d.per_step_max_abs or ())) for d in diffs]
    atol = max((d.allowed_atol for d in diffs), default=0.0)
    rtol = max((d.allowed_rtol for d in diffs), default=0.0)
    return series, atol, rtol


def _headroom(result: Result) -> float:
    return max((d.headroom for d in result.outputs if not math.isnan(d.headroom)), default=0.0)


def _esc(text: str) -> str:
    """Escaped for SVG text and attributes, control characters made visible (the callers cap lengths)."""
    return escape(safe(text, None))
