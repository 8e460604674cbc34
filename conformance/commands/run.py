"""``conformance run``: plan lanes from suites, run them in workers, summarise, gate."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
from pathlib import Path
from typing import Any

from conformance.cases import Case, load_suite, select
from conformance.lane import FAILING, NO_EXPORT, Lane

DEFAULT_SUITE = "smoke"


def match_ids(patterns: list[str] | None, known: list[str], what: str) -> set[str]:
    """Ids selected by glob patterns; a pattern matching nothing is bad input."""
    if not patterns:
        return set(known)
    chosen: set[str] = set()
    for pattern in patterns:
        hits = fnmatch.filter(known, pattern)
        if not hits:
            import difflib

            close = difflib.get_close_matches(pattern, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            shown = [k for k in known if not k.startswith("mutant-")]
            more = " (and the selftest mutants mutant-*)" if len(shown) < len(known) else ""
            raise ValueError(f"unknown {what} {pattern!r}{hint}; available: {', '.join(shown)}{more}")
        chosen.update(hits)
    return chosen


def plan(
    cases: list[tuple[str, Case]], runtimes: set[str] | None = None, exporters: set[str] | None = None
) -> list[Lane]:
    """Every (case, exporter, runtime) lane whose artifact kind the runtime consumes."""
    from conformance.runtimes import all_runtimes
    from exporters.registry import get_exporter

    by_id = {r.id: r for r in all_runtimes()}
    produces = {}
    lanes = []
    for suite, case in cases:
        for runtime_id in case.runtimes:
            if runtimes is not None and runtime_id not in runtimes:
                continue
            runtime = by_id.get(runtime_id)
            if runtime is None:
                continue  # a provider this onnxruntime build does not know; `list` shows it
            if runtime.consumes == "weights":
                if exporters is None or NO_EXPORT in exporters:
                    lanes.append(Lane(suite, case.id, NO_EXPORT, runtime_id))
                continue
            for exporter_id in case.exporters:
                if exporters is not None and exporter_id not in exporters:
                    continue
                if exporter_id not in produces:
                    produces[exporter_id] = get_exporter(exporter_id).produces
                if produces[exporter_id] == runtime.consumes:
                    lanes.append(Lane(suite, case.id, exporter_id, runtime_id))
    return lanes


def load_cases(suites: list[str], expr: str | None) -> list[tuple[str, Case]]:
    cases: list[tuple[str, Case]] = []
    for name in suites:
        suite = load_suite(name)
        cases += [(name, case) for case in select(list(suite.cases), expr)]
    if not cases:
        raise ValueError(f"no case in suite(s) {', '.join(suites)} matches -k {expr!r}")
    return cases


SETTINGS_FILE = "run.json"  # the selection a run was started with, so --resume can repeat it


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run's selection: from the command line, or from the folder being resumed."""
    keys = ("suite", "select", "runtime", "exporter")
    if not args.resume:
        return {key: getattr(args, key) for key in keys}
    folder = Path(args.resume)
    try:
        saved = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"--resume {folder}: no {SETTINGS_FILE} there; not a conformance run folder") from None
    # Options given again on the command line win over the saved ones.
    return {key: getattr(args, key) or saved.get(key) for key in keys}


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from conformance.runner import ResultSink, read_jsonl, run_lanes
    from conformance.runtimes import runtime_ids
    from exporters.registry import exporter_ids

    if args.timeout <= 0:
        raise ValueError(f"--timeout: expected a positive number of seconds, got {args.timeout:g}")
    if args.jobs < 1:
        raise ValueError(f"--jobs: expected at least 1, got {args.jobs}")
    if args.latency_budget <= 0:
        raise ValueError(f"--latency-budget: expected a positive number of seconds, got {args.latency_budget:g}")
    settings = _settings(args)
    suites = settings["suite"] or [DEFAULT_SUITE]
    cases = load_cases(suites, settings["select"])
    runtimes = match_ids(settings["runtime"], runtime_ids(), "runtime") if settings["runtime"] else None
    exporters = (
        match_ids(settings["exporter"], [*exporter_ids(), NO_EXPORT], "exporter") if settings["exporter"] else None
    )
    lanes = plan(cases, runtimes, exporters)
    if not lanes:
        raise ValueError("the selection leaves no lane to run (check --runtime/--exporter against `conformance list`)")
    if args.resume:
        out = Path(args.resume)
    else:
        out = Path(args.out) if args.out else Path("conformance-results") / "-".join(Path(s).stem for s in suites)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "results.jsonl"
    done: list[dict[str, Any]] = []
    if args.resume:
        planned = {lane.id for lane in lanes}
        done = [r for r in read_jsonl(jsonl) if r.get("id") in planned]
        finished = {r["id"] for r in done}
        lanes_todo = [lane for lane in lanes if lane.id not in finished]
    else:
        jsonl.unlink(missing_ok=True)
        (out / SETTINGS_FILE).write_text(json.dumps({**settings, "suite": suites}, indent=1), encoding="utf-8")
        lanes_todo = lanes

    err = Console(stderr=True)
    if args.resume:
        err.print(f"resuming {out}: {len(done)} lane(s) already done, {len(lanes_todo)} to run")
    started = time.time()
    sink = ResultSink(jsonl)
    interrupted = False
    try:
        _run_with_progress(lanes_todo, sink, args, err, run_lanes)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        sink.close()
    wall = time.time() - started
    planned_ids = {lane.id for lane in lanes}
    results = [r for r in read_jsonl(jsonl) if r.get("id") in planned_ids]
    return _finish(out, results, suites, settings, lanes, wall, interrupted, args)


def _finish(
    out: Path,
    results: list[dict[str, Any]],
    suites: list[str],
    settings: dict[str, Any],
    lanes: list[Lane],
    wall: float,
    interrupted: bool,
    args: argparse.Namespace,
) -> int:
    """Write results.json (atomically), print the summary, return the exit code."""
    from rich.console import Console

    from conformance import environment
    from reports import console as console_report
    from reports import json_report

    run_info: dict[str, Any] = {
        "suites": suites,
        "select": settings["select"],
        "runtimes": settings["runtime"],
        "exporters": settings["exporter"],
        "lanes": len(lanes),
        "completed": len(results),
        "interrupted": interrupted,
        "latency_only": bool(args.latency_only),
        "wall_seconds": round(wall, 3),
        "argv": sys.argv[1:],
    }
    document = json_report.payload(results, environment=environment.collect(), run=run_info)
    json_report.write_atomic(out / "results.json", document)
    written = write_reports(document, junit=args.junit, markdown=args.markdown, html=args.html)
    console = Console()
    title = f"{', '.join(suites)}: {len(results)}/{len(lanes)} lanes in {wall:.1f} s"
    console.print(console_report.summary_table(results, title=title))
    for part in (console_report.expected(results), console_report.skipped(results), console_report.failures(results)):
        if part is not None:
            console.print(part)
    if args.show_latency:
        from reports.latency import latency_tables

        for table in latency_tables(results, baseline=args.baseline):
            console.print(table)
    console.print(f"results: {out / 'results.json'}" + "".join(f", {path}" for path in written))
    from conformance.lane import NOTHING_CHECKED, exit_code

    code = exit_code(results, interrupted=interrupted, latency_only=args.latency_only)
    if interrupted:
        console.print(
            f"interrupted: {len(results)} of {len(lanes)} lanes done; continue with: conformance run --resume {out}",
            style="bold yellow",
        )
    elif code == 1 and not any(r["status"] in FAILING for r in results):
        console.print(NOTHING_CHECKED, style="bold red")
    return code


def _run_with_progress(lanes: list[Lane], sink: Any, args: argparse.Namespace, err: Any, run_lanes: Any) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from conformance.lane import LatencySettings

    latency = None
    if not args.no_latency:
        latency = LatencySettings(budget_s=args.latency_budget, check_accuracy=not args.latency_only)
    kwargs = {"jobs": args.jobs, "timeout": args.timeout, "use_cache": not args.no_cache, "latency": latency}
    if not err.is_terminal:
        return run_lanes(lanes, sink, **kwargs)
    with Progress(
        TextColumn("[bold]{task.fields[lane]}", justify="left"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("lanes", total=len(lanes), lane="")
        return run_lanes(
            lanes,
            sink,
            on_start=lambda lane: progress.update(task, lane=lane.id),
            on_result=lambda record: progress.advance(task),
            **kwargs,
        )


def write_reports(document: dict[str, Any], *, junit: str | None, markdown: str | None, html: str | None) -> list[str]:
    """Render the optional report files (atomically); return the paths written."""
    import importlib

    from reports.json_report import write_text_atomic

    written = []
    for path, module, function in (
        (junit, "reports.junit", "render_junit"),
        (markdown, "reports.markdown", "render_markdown"),
        (html, "reports.html", "render_html"),
    ):
        if path:
            write_text_atomic(Path(path), getattr(importlib.import_module(module), function)(document))
            written.append(path)
    return written
