"""``conformance list``: suites, cases, exporters and runtimes, with availability and reasons."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("list", help="list suites, cases, exporters and runtimes with their availability")
    p.add_argument("what", nargs="?", choices=["suites", "cases", "exporters", "runtimes"], help="one section only")
    p.add_argument("--suite", action="append", help="suite(s) whose cases to list (default: all)")
    p.add_argument("-k", dest="select", metavar="EXPR", help="select cases by substring expression")


def main(args: argparse.Namespace) -> int:
    from rich.table import Table

    from conformance.cases import available_suites, load_suite, select
    from conformance.commands.output import console as make_console

    console = make_console()
    what = args.what
    if what in (None, "suites"):
        table = Table(title="Suites", title_justify="left")
        table.add_column("suite")
        table.add_column("cases", justify="right")
        table.add_column("description")
        for name in available_suites():
            suite = load_suite(name)
            table.add_row(name, str(len(suite.cases)), suite.description)
        console.print(table)
    if what == "cases":
        for name in args.suite or available_suites():
            suite = load_suite(name)
            table = Table(title=f"Cases of {name}", title_justify="left")
            table.add_column("id")
            table.add_column("features")
            table.add_column("exporters")
            table.add_column("runtimes")
            for case in select(list(suite.cases), args.select):
                table.add_row(case.id, ", ".join(case.features()), ", ".join(case.exporters), ", ".join(case.runtimes))
            console.print(table)
    if what in (None, "exporters"):
        from exporters.registry import exporter_ids, get_exporter

        table = Table(title="Exporters", title_justify="left")
        for column in ("id", "produces", "available", "description"):
            table.add_column(column)
        for exporter_id in exporter_ids(mutants=False):  # the selftest mutants are `conformance selftest`'s
            exporter = get_exporter(exporter_id)
            reason = exporter.unavailable()
            table.add_row(
                exporter_id, exporter.produces, "yes" if reason is None else f"no: {reason}", exporter.description
            )
        console.print(table)
        from exporters.transforms import TRANSFORMS

        table = Table(title="Transforms (any ONNX exporter: <exporter>+<transform>, e.g. torch-script+fp16)",
                      title_justify="left")  # fmt: skip
        for column in ("transform", "available", "description"):
            table.add_column(column)
        for transform in TRANSFORMS.values():
            reason = transform.unavailable()
            table.add_row(transform.id, "yes" if reason is None else f"no: {reason}", transform.description)
        console.print(table)
    if what in (None, "runtimes"):
        from conformance.runtimes import all_runtimes

        table = Table(title="Runtimes", title_justify="left")
        for column in ("id", "consumes", "available", "description"):
            table.add_column(column)
        for runtime in all_runtimes():
            reason = runtime.unavailable()
            table.add_row(
                runtime.id, runtime.consumes, "yes" if reason is None else f"no: {reason}", runtime.description
            )
        console.print(table)
    return 0
