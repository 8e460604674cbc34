"""``conformance run``: plan lanes from suites, run them in workers, summarise, gate."""

from __future__ import annotations

import argparse
import functools
import signal
import time
from pathlib import Path
from typing import Any

from conformance.commands.options import add_ep_library, apply_ep_libraries, integer, number
from conformance.commands.output import add_report_options
from conformance.ray_executor import INSTALL, Executor, executor_option
from conformance.stopping import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, on_sigterm
from exporters.errors import BadInputError

DEFAULT_SUITE = "smoke"
MAX_JOBS = 64  # each worker is a Python process with onnxruntime and torch loaded: ~300 MB


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run a conformance suite on every exporter and runtime")
    p.add_argument("--suite", action="append", help="suite name or TOML path (repeatable; default: smoke)")
    p.add_argument("-k", dest="select", metavar="EXPR", help="select cases by substring expression (and/or/not)")
    p.add_argument("--runtime", action="append", metavar="ID", help="only these runtimes (repeatable; globs allowed)")
    p.add_argument("--exporter", action="append", metavar="ID", help="only these exporters (repeatable; globs allowed)")
    p.add_argument("--out", metavar="DIR", help="result folder (default: conformance-results/<suite>)")
    p.add_argument("--jobs", type=integer(minimum=1, maximum=MAX_JOBS), default=None,
                   help=f"worker processes, at most {MAX_JOBS} (default: the CPUs available with --no-latency; 1 "
                   "when lanes are timed, since a timed lane wants the machine to itself)")  # fmt: skip
    p.add_argument("--shard", metavar="K/N",
                   help="run shard K of N of the plan (deterministic, balanced, each export in one shard); "
                   "put the shards' folders together with `conformance merge`")  # fmt: skip
    p.add_argument("--executor", type=executor_option, default=Executor(), metavar="local|ray|ray=HOST:PORT",
                   help="where lanes run: worker processes here (local, the default); Ray tasks on a Ray instance "
                   "started for the run (ray; --jobs: its CPUs), or on the Ray cluster at HOST:PORT (--jobs: the "
                   f"most lanes at once). Needs {INSTALL}. Latency on a cluster measures the cluster's "
                   "nodes")  # fmt: skip
    p.add_argument("--timeout", type=number(maximum=86400), default=300.0,
                   help="seconds per lane before it is killed (default 300)")  # fmt: skip
    p.add_argument("--no-cache", action="store_true", help="export again instead of using the export cache")
    p.add_argument("--resume", metavar="DIR", help="continue an interrupted run in DIR without redoing finished lanes")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--no-latency", action="store_true", help="check accuracy only; do not time the lanes")
    timing.add_argument("--latency-only", action="store_true", help="time the lanes; do not check accuracy")
    p.add_argument("--latency-budget", type=number(maximum=3600), default=0.2, metavar="S",
                   help="seconds of timed repetitions per lane at most (default 0.2)")  # fmt: skip
    p.add_argument("--show-latency", action="store_true", help="print a latency table per case")
    p.add_argument(
        "--baseline", default="ort-cpu", metavar="RUNTIME", help="latency speed-up baseline (default ort-cpu)"
    )
    add_ep_library(p)
    add_report_options(p, json=False)


def main(args: argparse.Namespace) -> int:
    from conformance import run_folder
    from conformance.lane import NO_EXPORT
    from conformance.planning import load_cases, match_ids, plan
    from conformance.runtimes import runtime_ids
    from exporters.registry import exporter_ids

    apply_ep_libraries(args.ep_library)
    resume = Path(args.resume) if args.resume else None
    settings = run_folder.selection(vars(args), resume)
    suites = settings["suite"] or [DEFAULT_SUITE]
    cases = load_cases(suites, settings["select"])
    known_runtimes = runtime_ids()
    runtimes = match_ids(settings["runtime"], known_runtimes, "runtime") if settings["runtime"] else None
    exporters = None
    if settings["exporter"]:
        from exporters.transforms import SEPARATOR, split_exporter_id

        for given in settings["exporter"]:  # an unknown transform: say which transforms there are
            if SEPARATOR in given and not any(c in given for c in "*?["):
                split_exporter_id(given)
        known = [*exporter_ids(), NO_EXPORT]
        hidden = set(exporter_ids()) - set(exporter_ids(mutants=False))
        try:
            exporters = match_ids(settings["exporter"], known, "exporter", hidden=hidden)
        except BadInputError as exc:  # the hidden ids are the selftest mutants: say how they are named
            from exporters.mutants import PREFIX

            raise BadInputError(f"{exc} (and the selftest mutants {PREFIX}*)") from None
    if args.baseline not in known_runtimes:
        from conformance.runtimes import unknown_runtime_hint

        raise BadInputError(
            f"--baseline {args.baseline}: no such runtime{unknown_runtime_hint(args.baseline)}; "
            f"available: {', '.join(known_runtimes)}"
        )
    lanes = plan(cases, runtimes, exporters)
    if not lanes:
        raise BadInputError(
            "the selection leaves no lane to run (check --runtime/--exporter against `conformance list`)"
        )
    shard_record = None
    if settings.get("shard"):
        from conformance.shards import parse_shard, shard_of

        lanes, shard_record = shard_of(lanes, parse_shard(settings["shard"]))
    if resume is not None:
        out = resume
    else:
        out = Path(args.out) if args.out else Path("conformance-results") / "-".join(Path(s).stem for s in suites)
    from conformance.commands.output import console, refuse_overwrites, report_files

    own = {
        run_folder.RESULTS_JSONL: "the run's journal",
        "results.json": "the run's results",
        run_folder.SETTINGS_FILE: "the run's selection",
    }
    refuse_overwrites(report_files(args), {out / name: f"{what} ({out / name})" for name, what in own.items()})
    out.mkdir(parents=True, exist_ok=True)

    err = console(stderr=True)
    with run_folder.owned(out, notice=lambda text: err.print(text, markup=False, highlight=False)):
        return _run_in(out, lanes, resume, suites, settings, args, err, shard_record)


def _run_in(
    out: Path,
    lanes: list[Any],
    resume: Path | None,
    suites: list[str],
    settings: dict[str, Any],
    args: argparse.Namespace,
    err: Any,
    shard: dict[str, Any] | None = None,
) -> int:
    """The run, in a folder this process owns."""
    from conformance import run_folder
    from conformance.runner import ResultSink, read_jsonl

    jsonl = out / run_folder.RESULTS_JSONL
    run_folder.refuse_links(out)
    planned = {lane.id for lane in lanes}
    if resume is not None:
        finished = {r.id for r in read_jsonl(jsonl) if r.id in planned}
        todo = [lane for lane in lanes if lane.id not in finished]
    else:
        jsonl.unlink(missing_ok=True)
        run_folder.save_selection(out, {**settings, "suite": suites})
        todo = lanes

    from reports.text import count

    if resume is not None:
        err.print(f"resuming {out}: {count(len(lanes) - len(todo), 'lane')} already done, {len(todo)} to run")
    started = time.time()
    sink = ResultSink(jsonl)
    interrupted = terminated = False
    try:
        with on_sigterm():
            _run_with_progress(todo, sink, args, err)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (on_sigterm): stop, keep what was measured
        interrupted, terminated = True, isinstance(exc, Terminated)
    finally:
        sink.close()
    wall = time.time() - started
    results = [r for r in read_jsonl(jsonl) if r.id in planned]
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # a Ctrl-C now would cost the report of what ran
    try:
        code = _finish(out, results, suites, settings, len(lanes), wall, interrupted, args, shard)
        late = signal.sigpending() & stops  # asked to stop while the report was written: it is whole
    finally:
        handlers = {s: signal.signal(s, signal.SIG_IGN) for s in stops}  # drop the pending ones
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        for stop, handler in handlers.items():
            signal.signal(stop, handler)
    if terminated or signal.SIGTERM in late:
        return EXIT_TERMINATED
    return EXIT_INTERRUPTED if signal.SIGINT in late else code


def _finish(
    out: Path,
    results: list[Any],
    suites: list[str],
    settings: dict[str, Any],
    planned: int,
    wall: float,
    interrupted: bool,
    args: argparse.Namespace,
    shard: dict[str, Any] | None = None,
) -> int:
    """Write results.json (atomically) and the report files, print the summary, return the exit code."""
    from conformance import environment
    from conformance.commands.output import argv, console, print_summary, report_files, write_reports
    from conformance.files import write_document
    from conformance.records import ResultDocument
    from conformance.status import exit_code
    from reports.console import default_title
    from reports.text import count

    run_info: dict[str, Any] = {
        "command": "run",
        "suites": suites,
        "select": settings["select"],
        "runtimes": settings["runtime"],
        "exporters": settings["exporter"],
        "lanes": planned,
        "completed": len(results),
        "interrupted": interrupted,
        "latency_only": bool(args.latency_only),
        "wall_seconds": round(wall, 3),
        "argv": argv(),
    }
    if shard is not None:
        run_info["shard"] = shard
    if getattr(args, "ray_cluster", None):
        run_info["executor"] = args.ray_cluster
    document = ResultDocument.of(results, run=run_info, environment=environment.collect())
    write_document(out / "results.json", document)
    written = write_reports(document, report_files(args))
    screen = console()
    screen.print(f"results: {out / 'results.json'}" + "".join(f", {path}" for path in written))
    # The summary ends with the verdict line (PASS, FAIL, NOTHING CHECKED), the last thing a run prints, as
    # for check; only an interrupted run adds how to finish it.
    print_summary(
        document, title=default_title(document), show_latency=args.show_latency, baseline=args.baseline, out=screen
    )
    if interrupted:
        done = f"{len(results)} of {count(planned, 'lane')} done"
        screen.print(f"interrupted: {done}; continue with: conformance run --resume {out}", style="bold yellow")
    return exit_code([r.status for r in results], interrupted=interrupted, exempt_unchecked=args.latency_only)


def _run_with_progress(lanes: list[Any], sink: Any, args: argparse.Namespace, err: Any) -> None:
    from conformance import runner
    from conformance.environment import usable_cpus
    from conformance.lane import LatencySettings

    latency = None
    if not args.no_latency:
        latency = LatencySettings(budget_s=args.latency_budget, check_accuracy=not args.latency_only)
    kwargs: dict[str, Any] = {
        "jobs": args.jobs or (1 if latency is not None else usable_cpus()),
        "timeout": args.timeout,
        "use_cache": not args.no_cache,
        "latency": latency,
    }
    run_lanes: Any = runner.run_lanes
    if args.executor.kind == "ray":  # Ray tasks; --jobs: the CPUs (a cluster's by default) it uses
        from conformance.ray_executor import run_lanes_ray

        kwargs["jobs"] = args.jobs or (1 if latency is not None and args.executor.address is None else None)
        cluster = vars(args).setdefault("ray_cluster", {})  # the cluster, for the results' run info (_finish)
        run_lanes = functools.partial(run_lanes_ray, address=args.executor.address, on_connect=cluster.update)
    if not err.is_terminal:
        run_lanes(lanes, sink, **kwargs)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.fields[lane]}", justify="left", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("lanes", total=len(lanes), lane="")
        run_lanes(
            lanes,
            sink,
            on_start=lambda lane: progress.update(task, lane=lane.id[:80]),
            on_result=lambda record: progress.advance(task),
            **kwargs,
        )
