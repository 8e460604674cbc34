"""A run as a plan of lanes: cases from suites, ids matched by glob, every applicable (case, exporter, runtime).

Library code shared by ``conformance run``, ``selftest`` and the pytest plugin. Each planned
:class:`~conformance.lane.Lane` carries its :class:`~conformance.cases.Case`, so nothing downstream loads
a suite again.

Versioned runtimes (``ort-cpu@1.24.4``, :mod:`conformance.runtimes.versioned`): one named in a case's
``runtimes`` is planned like any other. One selected with ``--runtime`` (its exact id; globs do not
make versions) is added to every case whose ``runtimes`` lists its base (``ort-cpu``), right after it:
``--runtime ort-cpu --runtime ort-cpu@1.24.4`` runs both releases on the same lanes.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Collection, Sequence

from conformance.cases import Case, load_suite, select
from conformance.lane import NO_EXPORT, Lane
from conformance.runtimes import parse_versioned, versioned
from exporters.errors import BadInputError


def match_ids(
    patterns: Sequence[str] | None, known: Sequence[str], what: str, *, hidden: Collection[str] = ()
) -> set[str]:
    """Ids selected by glob patterns; a pattern matching nothing is bad input.

    ``hidden`` ids can be selected but are left out of the "available" list of the error message
    (the caller says how they are named).
    """
    if not patterns:
        return set(known)
    chosen: set[str] = set()
    for pattern in patterns:
        if what == "runtime" and versioned.is_versioned(pattern):
            parse_versioned(pattern)  # bad input unless it is ID@VERSION of a runtime that takes versions
            chosen.add(pattern)
            continue
        hits = fnmatch.filter(known, pattern)
        if not hits:
            close = difflib.get_close_matches(pattern, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            shown = [k for k in known if k not in hidden]
            raise BadInputError(f"unknown {what} {pattern!r}{hint}; available: {', '.join(shown)}")
        chosen.update(hits)
    return chosen


def load_cases(suites: Sequence[str], expr: str | None) -> list[tuple[str, Case]]:
    """(suite, case) pairs of the named suites that the ``-k`` expression selects; none is bad input."""
    cases: list[tuple[str, Case]] = []
    for name in suites:
        suite = load_suite(name)
        cases += [(name, case) for case in select(list(suite.cases), expr)]
    if not cases:
        raise BadInputError(f"no case in suite(s) {', '.join(suites)} matches -k {expr!r}")
    return cases


def plan(
    cases: Sequence[tuple[str, Case]], runtimes: Collection[str] | None = None, exporters: Collection[str] | None = None
) -> list[Lane]:
    """Every (case, exporter, runtime) lane whose artifact kind the runtime consumes."""
    from conformance.runtimes import all_runtimes
    from exporters.registry import get_exporter

    by_id = {r.id: r for r in all_runtimes()}
    produces: dict[str, str] = {}
    lanes = []
    for suite, case in cases:
        for runtime_id in case_runtimes(case, runtimes):
            if runtimes is not None and runtime_id not in runtimes:
                continue
            runtime = by_id.get(runtime_id)
            if runtime is None and versioned.is_versioned(runtime_id):
                runtime = by_id[runtime_id] = versioned.versioned_runtime(runtime_id)  # installs nothing yet
            if runtime is None:
                continue  # a provider this onnxruntime build does not know; `list` shows it
            if runtime.consumes == "weights":
                if exporters is None or NO_EXPORT in exporters:
                    lanes.append(Lane(suite, case, NO_EXPORT, runtime_id))
                continue
            for exporter_id in case.exporters:
                if exporters is not None and exporter_id not in exporters:
                    continue
                if exporter_id not in produces:
                    produces[exporter_id] = get_exporter(exporter_id).produces
                if produces[exporter_id] == runtime.consumes:
                    lanes.append(Lane(suite, case, exporter_id, runtime_id))
    return lanes


def case_runtimes(case: Case, selected: Collection[str] | None) -> list[str]:
    """The case's runtimes, each followed by the selected versions of it (``ort-cpu``, ``ort-cpu@1.24.4``)."""
    extra = [r for r in selected or () if versioned.is_versioned(r) and r not in case.runtimes]
    extra.sort(key=versioned.release_key)
    chosen: list[str] = []
    for runtime_id in case.runtimes:
        chosen.append(runtime_id)
        chosen += [r for r in extra if r.partition(versioned.SEPARATOR)[0] == runtime_id]
    return chosen
