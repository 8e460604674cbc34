"""pytest plugin: conformance lanes and ``check`` targets as ordinary pytest items, with the harness's messages.

Loaded through the ``pytest11`` entry point in every pytest session of a
project that installs the package, so it stays inert until asked: importing
it imports only pytest, and nothing is collected unless a ``conformance_*.toml``
file is reached or the ini options ``conformance_suites`` / ``conformance_check``
name something. Heavy imports (onnxruntime, torch) happen when an item runs.

- A suite file becomes a pytest File whose items are its lanes (case x exporter
  x runtime, as ``conformance run`` plans them), named by lane id and run
  in-process by ``conformance.lane.run_lane``: pass passes, skip skips, xfail
  is xfailed with the expectation's reason, anything failing fails with the
  lane's own message (no traceback).
- A ``conformance_check`` ini entry becomes one item per runtime (plus a
  ``weights`` item when trained weights are given); the model is checked once,
  on the runtimes whose items were selected.
- The ``conformance_check`` fixture (and the function of the same name) runs
  ``conformance.check.run_check`` inside a test and raises ``AssertionError``
  with the failing lanes' messages and the likely causes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr, TracebackStyle

    from conformance.cases import Case
    from conformance.check import CheckOptions, CheckReport
    from conformance.lane import Lane, LaneContext
    from conformance.records import Result

SUITE_GLOB = "conformance_*.toml"
MARKER = "conformance"
WEIGHTS_ITEM = "weights"  # the check item that compares the model's initializers with the trained weights
_CHECK_KEYS = ("weights", "seq_lens", "batches", "atol", "rtol")  # ``MODEL::key=value`` in conformance_check


class LaneFailedError(Exception):
    """A failing lane: ``str()`` is the message the harness wrote, shown without a traceback."""


class CheckInputError(ValueError):
    """``conformance_check`` could not read the model or its weights (bad input, not a conformance failure)."""


# --- configuration -------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "lstm-conformance (conformance suites and check targets)")
    group.addoption(
        "--conformance-runtime",
        action="append",
        metavar="GLOB",
        help="only lanes on runtimes matching GLOB (repeatable), such as 'ort-*'",
    )
    group.addoption(
        "--conformance-exporter",
        action="append",
        metavar="GLOB",
        help="only suite lanes from exporters matching GLOB (repeatable); the reference runtime's is 'none'",
    )
    group.addoption(
        "--conformance-latency",
        action="store_true",
        dest="conformance_latency",
        default=False,
        help="also time each lane (the median goes to the item's user_properties, so to JUnit XML)",
    )
    group.addoption(
        "--conformance-no-latency",
        action="store_false",
        dest="conformance_latency",
        help="do not time lanes (the default)",
    )
    parser.addini(
        "conformance_suites",
        type="linelist",
        default=[],
        help="suites to collect besides conformance_*.toml files: paths (relative to the ini file) "
        "or packaged suite names such as 'smoke'",
    )
    parser.addini(
        "conformance_check",
        type="linelist",
        default=[],
        help="ONNX models to check, one a line: PATH[::weights=FILE][::seq_lens=1,7][::batches=1,3][::atol=A::rtol=R]",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: an lstm-conformance lane or check target")
    config.stash[_STATE] = _State(config)


@dataclass(frozen=True)
class CheckTarget:
    """One ``conformance_check`` ini entry: the model and its ``check`` options."""

    path: Path
    weights: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)


class _State:
    """Per-session plugin state: ini targets, runtime/exporter filters, the shared LaneContext."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        base = config.inipath.parent if config.inipath else config.rootpath
        self.suite_entries = [(entry, _suite_path(entry, base)) for entry in config.getini("conformance_suites")]
        self.suite_paths = {path for _, path in self.suite_entries if path is not None}
        self.checks = {t.path: t for t in (_parse_check(entry, base) for entry in config.getini("conformance_check"))}
        self.reached: set[Path] = set()  # ini targets the file walk collected itself
        self._filters: tuple[set[str] | None, set[str] | None] | None = None
        self._context: LaneContext | None = None
        if config.getoption("conformance_runtime") or config.getoption("conformance_exporter"):
            self.filters()  # a misspelt glob is a usage error before anything is collected

    def filters(self) -> tuple[set[str] | None, set[str] | None]:
        """Selected runtime and exporter ids (``None``: no filter); an unknown glob is a usage error."""
        if self._filters is None:
            from conformance.lane import NO_EXPORT
            from conformance.planning import match_ids
            from conformance.runtimes import runtime_ids
            from exporters.registry import exporter_ids

            runtimes, exporters = (self.config.getoption(o) for o in ("conformance_runtime", "conformance_exporter"))
            try:
                chosen_runtimes = match_ids(runtimes, runtime_ids(), "runtime") if runtimes else None
            except ValueError as exc:
                raise pytest.UsageError(f"--conformance-runtime: {exc}") from None
            try:
                chosen_exporters = match_ids(exporters, [*exporter_ids(), NO_EXPORT], "exporter") if exporters else None
            except ValueError as exc:
                raise pytest.UsageError(f"--conformance-exporter: {exc}") from None
            self._filters = (chosen_runtimes, chosen_exporters)
        return self._filters

    def context(self) -> LaneContext:
        """One LaneContext for the session, so lanes of a case share weights, data and exports."""
        if self._context is None:
            from conformance.lane import LaneContext, LatencySettings

            latency = LatencySettings() if self.config.getoption("conformance_latency") else None
            self._context = LaneContext(latency=latency)
        return self._context


_STATE = pytest.StashKey[_State]()


def _suite_path(entry: str, base: Path) -> Path | None:
    """The file an ini suite entry names; ``None`` for a packaged suite name (resolved when collected)."""
    if "/" in entry or "\\" in entry or entry.endswith(".toml"):
        return (base / entry).resolve()
    return None


def _parse_check(entry: str, base: Path) -> CheckTarget:
    model, *parts = entry.split("::")
    options: dict[str, Any] = {}
    weights = None
    for part in parts:
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in _CHECK_KEYS or not value:
            raise pytest.UsageError(
                f"conformance_check entry {entry!r}: expected key=value with key one of {', '.join(_CHECK_KEYS)}, "
                f"got {part!r}"
            )
        if key == "weights":
            weights = (base / value).resolve()
            continue
        try:
            if key in ("seq_lens", "batches"):
                options[key] = tuple(int(v) for v in value.split(","))
                if any(v < 1 for v in options[key]):
                    raise ValueError
            else:
                options[key] = float(value)
        except ValueError:
            want = "comma-separated positive integers" if key in ("seq_lens", "batches") else "a number"
            raise pytest.UsageError(
                f"conformance_check entry {entry!r}: {key}: expected {want}, got {value!r}"
            ) from None
    if ("atol" in options) != ("rtol" in options):
        raise pytest.UsageError(f"conformance_check entry {entry!r}: atol and rtol are given together")
    return CheckTarget((base / model.strip()).resolve(), weights, options)


# --- collection ----------------------------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in (".toml", ".onnx"):  # the cheap test first: this runs for every file
        return None
    state = parent.config.stash[_STATE]
    if file_path.suffix == ".toml":
        if file_path.match(SUITE_GLOB) or file_path.resolve() in state.suite_paths:
            state.reached.add(file_path.resolve())
            return SuiteFile.from_parent(parent, path=file_path)
        return None
    target = state.checks.get(file_path.resolve())
    if target is None:
        return None
    state.reached.add(target.path)
    return CheckFile.from_parent(parent, path=file_path, target=target)


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselection, so the appended items are selected like any other
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Append the ini targets the file walk did not reach, unless paths were named on the command line."""
    state = config.stash[_STATE]
    if not (state.suite_entries or state.checks) or config.args_source == pytest.Config.ArgsSource.ARGS:
        return
    nodes: list[pytest.Collector] = []
    for entry, listed in state.suite_entries:
        path = _packaged_suite(entry) if listed is None else listed
        if path.resolve() not in state.reached:
            nodeid = f"cases/{path.name}" if listed is None else _nodeid(path, config)
            nodes.append(SuiteFile.from_parent(session, path=path, nodeid=nodeid))
    for target in state.checks.values():
        if target.path not in state.reached:
            nodes.append(
                CheckFile.from_parent(session, path=target.path, target=target, nodeid=_nodeid(target.path, config))
            )
    for node in nodes:
        items.extend(session.genitems(node))


def _nodeid(path: Path, config: pytest.Config) -> str | None:
    """``None`` (pytest's own) under the rootdir; else the path relative to it, such as ``../build/model.onnx``."""
    if path.is_relative_to(config.rootpath):
        return None
    return os.path.relpath(path, config.rootpath).replace(os.sep, "/")


def _display(path: Path, config: pytest.Config) -> str:
    """``path`` relative to where pytest was invoked, when it lies below it."""
    base = config.invocation_params.dir
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def _packaged_suite(name: str) -> Path:
    from conformance.cases import CaseError, load_suite

    try:
        return load_suite(name).path
    except CaseError as exc:
        raise pytest.UsageError(f"conformance_suites: {exc}") from None


class SuiteFile(pytest.File):
    """A suite TOML file; its items are the lanes ``conformance run`` would plan for it."""

    def collect(self) -> Iterator[LaneItem]:
        from conformance.cases import CaseError, loads_suite
        from conformance.planning import plan

        display = _display(self.path, self.config)  # errors name the file as the user wrote it
        try:
            suite = loads_suite(self.path.read_text(encoding="utf-8"), display=display, path=self.path)
        except CaseError as exc:
            raise self.CollectError(str(exc)) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise self.CollectError(f"{display}: cannot read suite file: {type(exc).__name__}: {exc}") from None
        runtimes, exporters = self.config.stash[_STATE].filters()
        for lane in plan([(str(self.path), case) for case in suite.cases], runtimes, exporters):
            yield LaneItem.from_parent(self, name=lane.id, case=lane.case, lane=lane)


class _ConformanceItem(pytest.Item):
    """Shows a LaneFailedError as its bare message, and reports skips at the item's own location."""

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: TracebackStyle | None = None
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, LaneFailedError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def _skip(self, reason: str) -> NoReturn:
        raise pytest.skip.Exception(reason, _use_item_location=True)


class LaneItem(_ConformanceItem):
    """One lane, run in-process with the session's LaneContext."""

    def __init__(self, *, case: Case, lane: Lane, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.lane = lane
        self.record: Result | None = None
        self.add_marker(MARKER)
        # Names `-k` matches besides the lane id, as `conformance run -k` matches cases.
        self.extra_keyword_matches.update({lane.runtime, lane.exporter, *case.tags, *case.features()})

    def runtest(self) -> None:
        from conformance.lane import run_lane
        from conformance.status import PASS, SKIP, XFAIL

        self.record = record = run_lane(self.lane, self.config.stash[_STATE].context())
        status, message = record.status, record.message
        self.user_properties.append(("conformance_status", status))
        if record.latency:
            self.user_properties.append(("latency_median_ms", record.latency["median_ms"]))
        if status == PASS:
            return
        if status == SKIP:
            self._skip(message)
        if status == XFAIL:
            pytest.xfail(record.expected.reason if record.expected else message)
        raise LaneFailedError(message)  # fail, xpass, error, timeout

    def reportinfo(self) -> tuple[Path, int, str]:
        _, _, line = self.case.source.rpartition(":")
        return self.path, int(line) - 1 if line.isdigit() else 0, self.lane.id


class CheckFile(pytest.File):
    """An ONNX model from ``conformance_check``: one item per runtime, checked once for all of them."""

    def __init__(self, *, target: CheckTarget, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self._outcome: CheckReport | str | None = None

    def collect(self) -> Iterator[CheckItem]:
        from conformance.check import onnx_runtime_ids

        if not self.path.is_file():
            raise self.CollectError(f"{self.path}: no such file (named by the conformance_check ini option)")
        if self.target.weights is not None:
            yield CheckItem.from_parent(self, name=WEIGHTS_ITEM, runtime=None)
        runtimes, _ = self.config.stash[_STATE].filters()
        for runtime in onnx_runtime_ids():
            if runtimes is None or runtime in runtimes:
                yield CheckItem.from_parent(self, name=runtime, runtime=runtime)

    def outcome(self) -> CheckReport | str:
        """The check's report (or the one-line reason it could not run), on the runtimes whose items were selected."""
        if self._outcome is None:
            wanted = [i.runtime for i in self.session.items if isinstance(i, CheckItem) and i.parent is self]
            options = {**self.target.options, "weights": self.target.weights}
            try:
                self._outcome = _run_check(self.path, runtimes=[r for r in wanted if r is not None], **options)
            except CheckInputError as exc:
                self._outcome = str(exc)
        return self._outcome


class CheckItem(_ConformanceItem):
    """One runtime's lanes of a checked model (every shape), or the model's weights."""

    def __init__(self, *, runtime: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        self.add_marker(MARKER)
        if runtime is not None:
            self.extra_keyword_matches.add(runtime)

    def runtest(self) -> None:
        from conformance.status import FAILING, nothing_checked

        assert isinstance(self.parent, CheckFile)
        report = self.parent.outcome()
        if isinstance(report, str):
            raise LaneFailedError(report)
        if self.runtime is None:
            weights = [r for r in report.results if r.kind == "weights" and r.status in FAILING]
            if weights:
                raise LaneFailedError(weights[0].message)
            return
        records = [r for r in report.results if r.runtime == self.runtime]
        if records and nothing_checked(r.status for r in records):
            self._skip(records[0].message)
        failing = [r for r in records if r.status in FAILING]
        if failing:
            raise LaneFailedError(f"{self.runtime}: {_failure_text(failing, len(records), report.causes)}")

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, self.nodeid


# --- the conformance_check fixture ---------------------------------------------------------------


def conformance_check(model_path: str | os.PathLike[str], **options: Any) -> CheckReport:
    """Check an exported ONNX model as ``conformance check`` does; return the report, or fail the test.

    ``options`` are ``conformance.check.CheckOptions`` fields (``seq_lens``, ``batches``, ``runtimes``,
    ``tolerance``, ``weights``, ``inputs``, ``seed``), with paths as strings or Paths, ``tolerance`` as a
    ``Tolerance`` or an ``(atol, rtol)`` pair, or ``atol=`` and ``rtol=`` given together. Raises
    ``AssertionError`` naming the failing lanes and the likely causes; skips the test when no runtime
    could run the model at all; raises ``CheckInputError`` for a model or weights file it cannot read.
    """
    __tracebackhide__ = True
    from conformance.status import FAILING, UNCHECKED

    report = _run_check(Path(model_path), **options)
    if report.failed:
        failing = [r for r in report.results if r.status in FAILING]
        ran = [r for r in report.results if r.status not in UNCHECKED]
        text = _failure_text(failing, len(ran), report.causes)
        raise AssertionError(f"conformance check of {model_path}: {text}")
    if all(r.status in UNCHECKED for r in report.results):
        reasons = sorted({f"{r.runtime}: {r.message}" for r in report.results})
        pytest.skip(f"no runtime could check {model_path}: {'; '.join(reasons) or 'no runtime selected'}")
    return report


@pytest.fixture(name="conformance_check")
def _conformance_check_fixture(request: pytest.FixtureRequest) -> Callable[..., CheckReport]:
    """``conformance_check(model_path, **options)``; ``--conformance-runtime`` picks the default runtimes."""
    runtimes, _ = request.config.stash[_STATE].filters()
    if runtimes is None:
        return conformance_check

    def check(model_path: str | os.PathLike[str], **options: Any) -> CheckReport:
        __tracebackhide__ = True
        from conformance.check import onnx_runtime_ids

        options.setdefault("runtimes", [r for r in onnx_runtime_ids() if r in runtimes])
        return conformance_check(model_path, **options)

    return check


def _run_check(model_path: Path, **options: Any) -> CheckReport:
    from conformance.check import run_check
    from exporters.errors import BadInputError

    try:
        return run_check(model_path, _check_options(options))
    except (BadInputError, OSError) as exc:
        message = str(exc)
        raise CheckInputError(message if message.startswith(str(model_path)) else f"{model_path}: {message}") from None


def _check_options(options: dict[str, Any]) -> CheckOptions:
    from dataclasses import fields

    from conformance.check import CheckOptions
    from conformance.diffs import Tolerance

    valid = [f.name for f in fields(CheckOptions)]
    unknown = sorted(set(options) - {*valid, "atol", "rtol"})
    if unknown:
        raise TypeError(f"conformance_check: unknown option(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    values = dict(options)
    if "atol" in values or "rtol" in values:
        if "atol" not in values or "rtol" not in values or "tolerance" in values:
            raise TypeError("conformance_check: give atol and rtol together, or tolerance, not both")
        values["tolerance"] = Tolerance(float(values.pop("atol")), float(values.pop("rtol")))
    if isinstance(values.get("tolerance"), Sequence):
        values["tolerance"] = Tolerance(*(float(v) for v in values["tolerance"]))
    if values.get("weights") is not None:
        values["weights"] = Path(values["weights"])
    if "inputs" in values:
        inputs = values["inputs"]
        values["inputs"] = (Path(inputs),) if isinstance(inputs, (str, os.PathLike)) else tuple(map(Path, inputs))
    return CheckOptions(**values)


def _failure_text(failing: list[Result], total: int, causes: list[str]) -> str:
    """A one-line count, the likely causes (read first, also in JUnit), then each failing lane's message."""
    from reports.text import count, plural

    parts = [f"{len(failing)} of {count(total, 'result')} failed"]
    if causes:
        parts[0] += f"; likely {plural(len(causes), 'cause')}:\n" + "\n".join(f"  - {cause}" for cause in causes)
    parts += [f"{r.status.upper()} {r.id}\n{r.message}" for r in failing]
    return "\n\n".join(parts)
