"""``conformance merge OUT DIR...``: the shards of one run (``conformance run --shard K/N``) as one run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from conformance.commands.output import add_report_options
from exporters.errors import BadInputError

# What every shard of one plan shares; a difference means the folders are not shards of one run.
SHARED = ("suites", "select", "runtimes", "exporters", "latency_only")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "merge",
        help="merge the result folders of `conformance run --shard K/N` into one run",
        description="Check that the folders hold shards of one plan (same plan hash, selection and version, "
        "no lane twice), then write OUT/results.json and the report files as one run would.",
    )
    p.add_argument("out", metavar="OUT", help="folder for the merged results.json")
    p.add_argument("folders", nargs="+", metavar="DIR", help="the shards' result folders (or results.json files)")
    p.add_argument("--allow-missing", action="store_true",
                   help="exit by the verdicts even when lanes of the plan are missing (listed either way)")  # fmt: skip
    p.add_argument("--baseline", default="ort-cpu", metavar="RUNTIME", help="latency speed-up baseline")
    p.add_argument("--show-latency", action="store_true", help="print a latency table per case")
    add_report_options(p, json=False)


def _results_file(given: str) -> Path:
    path = Path(given)
    return path / "results.json" if path.is_dir() else path


def _load(path: Path) -> Any:
    from conformance.files import load_document

    if not path.exists():
        raise BadInputError(f"{path}: no such file (a shard's folder holds results.json)")
    return load_document(path)


def _version(document: Any) -> Any:
    versions = document.environment.get("versions")
    return versions.get("lstm-conformance") if isinstance(versions, dict) else None


def merge_documents(paths: list[Path]) -> tuple[Any, list[str]]:
    """The merged document and the plan's lanes no shard ran (in plan order)."""
    from conformance.records import ResultDocument

    documents = [(path, _load(path)) for path in paths]
    first_path, first = documents[0]
    shards: dict[Any, Path] = {}
    for path, document in documents:
        shard = document.run.get("shard")
        if not isinstance(shard, dict) or not isinstance(shard.get("plan_ids"), list):
            raise BadInputError(f"{path}: not a shard (run it with conformance run --shard K/N)")
        if document.schema_version != first.schema_version:
            raise BadInputError(
                f"{path}: results schema {document.schema_version}, but {first_path} has {first.schema_version}: "
                "shards of one run are written by one version"
            )
        mine, theirs = shard.get("plan_hash"), first.run["shard"].get("plan_hash")
        if mine != theirs:
            raise BadInputError(
                f"{path}: a shard of another plan ({mine}; {first_path} is of {theirs}): the suites, selection, "
                "runtimes or installed packages differ"
            )
        for key in SHARED:
            if document.run.get(key) != first.run.get(key):
                raise BadInputError(
                    f"{path}: {key} {document.run.get(key)!r}, but {first_path} has {first.run.get(key)!r}: "
                    "not shards of one run"
                )
        ours, theirs_version = _version(document), _version(first)
        if ours != theirs_version:
            raise BadInputError(
                f"{path}: written by lstm-conformance {ours}, {first_path} by {theirs_version}: not one version"
            )
        count, index = shard.get("count"), shard.get("index")
        if count != first.run["shard"].get("count"):
            raise BadInputError(
                f"{path}: shard {index}/{count}, but {first_path} is one of {first.run['shard']['count']}"
            )
        if index in shards:
            raise BadInputError(f"{path}: shard {index}/{count} again (also {shards[index]})")
        shards[index] = path
    seen: dict[str, Path] = {}
    results = []
    for path, document in documents:
        for result in document.results:
            if result.id in seen:
                raise BadInputError(f"{path}: lane {result.id} is also in {seen[result.id]}")
            seen[result.id] = path
            results.append(result)
    plan_ids: list[str] = list(first.run["shard"]["plan_ids"])
    missing = [lane_id for lane_id in plan_ids if lane_id not in seen]
    strangers = sorted(set(seen) - set(plan_ids))
    if strangers:
        raise BadInputError(f"{seen[strangers[0]]}: lane {strangers[0]} is not in the plan")
    run = {key: first.run.get(key) for key in ("command", *SHARED)}
    run.update(
        lanes=len(plan_ids),
        completed=len(results),
        interrupted=any(bool(d.run.get("interrupted")) for _, d in documents),
        wall_seconds=max(float(d.run.get("wall_seconds") or 0) for _, d in documents),
        merged={
            "plan_hash": first.run["shard"]["plan_hash"],
            "count": first.run["shard"]["count"],
            "shards": [
                {
                    "index": d.run["shard"]["index"],
                    "source": str(p),
                    "lanes": len(d.results),
                    "wall_seconds": d.run.get("wall_seconds"),
                }
                for p, d in sorted(documents, key=lambda item: int(item[1].run["shard"]["index"]))
            ],
            "missing": missing,
        },
    )
    environment = dict(first.environment)
    environment["shards"] = {str(d.run["shard"]["index"]): dict(d.environment) for _, d in documents}
    return ResultDocument.of(results, run=run, environment=environment), missing


def main(args: argparse.Namespace) -> int:
    from conformance.commands.output import console, print_summary, refuse_overwrites, report_files, write_reports
    from conformance.files import write_document
    from conformance.status import EXIT_FAIL, exit_code
    from reports.console import default_title
    from reports.text import count

    paths = [_results_file(given) for given in args.folders]
    out = Path(args.out)
    target = out / "results.json"
    refuse_overwrites(
        report_files(args), {target: f"the merged results ({target})", **{p: f"a shard's results ({p})" for p in paths}}
    )
    if target.resolve() in {p.resolve() for p in paths if p.exists()}:
        raise BadInputError(f"{out}: it is one of the shards; merge into another folder")
    document, missing = merge_documents(paths)
    out.mkdir(parents=True, exist_ok=True)
    write_document(target, document)
    written = write_reports(document, report_files(args))
    screen = console()
    screen.print(f"results: {target}" + "".join(f", {path}" for path in written))
    shards = document.run["merged"]["shards"]
    screen.print(f"merged {count(len(shards), 'shard')} of {document.run['merged']['count']}: "
                 f"{count(len(document.results), 'lane')} of {document.run['lanes']}")  # fmt: skip
    print_summary(
        document, title=default_title(document), show_latency=args.show_latency, baseline=args.baseline, out=screen
    )
    code = exit_code([r.status for r in document.results], interrupted=bool(document.run.get("interrupted")),
                     exempt_unchecked=bool(document.run.get("latency_only")))  # fmt: skip
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        screen.print(f"missing: {count(len(missing), 'lane')} of the plan no shard ran: {shown}", style="bold red")
        if not args.allow_missing:
            return max(code, EXIT_FAIL)
    return code
