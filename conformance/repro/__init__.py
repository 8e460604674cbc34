"""``conformance repro``: one diverging lane as a self-contained folder for an upstream bug report.

The lane (from a results.json, or planned from its suite) is run again and must still diverge from the
reference; it is then minimised (:mod:`~conformance.repro.minimise`) to the smallest model that shows the
same divergence on that runtime, one bare ``LSTM`` node where possible, and written out
(:mod:`~conformance.repro.folder`) with a ``repro.py`` that needs only the runtime's own package and NumPy
(:mod:`~conformance.repro.scripts`). :mod:`~conformance.repro.distinct` makes one folder per distinct
divergence of a whole result file. Nothing here prints.

Modules: :mod:`~conformance.repro.lanes` (which lane), :mod:`~conformance.repro.trial` (one variant, run
and judged), :mod:`~conformance.repro.worker` (the runtime in a process of its own: tract aborts).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from conformance.repro.folder import Reproduction, refuse_overwrite, write
from conformance.repro.lanes import Target, from_results, from_suite
from conformance.repro.minimise import Minimised, minimise, written_out
from conformance.repro.scripts import NoTemplateError, template
from conformance.repro.trial import Trial, Variant, run_trial, variant_of
from conformance.repro.worker import DEFAULT_TIMEOUT, Worker
from exporters.errors import BadInputError

__all__ = [
    "DEFAULT_TIMEOUT",
    "NoDivergenceError",
    "NoTemplateError",
    "Reproduction",
    "Target",
    "Worker",
    "from_results",
    "from_suite",
    "refuse_overwrite",
    "reproduce",
    "write",
]


class NoDivergenceError(Exception):
    """The lane does not diverge when run again (exit 1, not bad input): ``str()`` says what it did."""


def reproduce(target: Target, worker: Worker, out: Path, *, shrink: bool = True) -> tuple[Reproduction, str]:
    """Run ``target`` again, confirm it diverges, minimise it and write the folder ``out`` (which must be free).

    Returns the reproduction and what its ``repro.py`` printed here. Raises :class:`NoTemplateError` or
    ``BadInputError`` for a runtime repro cannot script or run here, and :class:`NoDivergenceError` when
    the lane agrees with the reference now.
    """
    import dataclasses

    from conformance.runtimes import get_runtime

    runtime = get_runtime(target.runtime)
    script = template(runtime)
    reason = runtime.unavailable()
    if reason:
        raise BadInputError(f"runtime {target.runtime!r} is not available here: {reason}")
    settings = runtime.settings()
    computed_in = settings.get("tolerance_dtype")
    scratch = Path(tempfile.mkdtemp(prefix="conformance-repro-"))
    try:

        def run(variant: Variant) -> Trial:
            return run_trial(
                variant, target.runtime, worker, scratch, computed_in=computed_in, required=runtime.required_provider
            )

        original = run(variant_of(target.case, target.exporter))
        if original.status == "unbuilt":
            raise NoDivergenceError(
                f"lane {target.id!r}: the model cannot be built here ({original.message}); "
                f"that is not a divergence of {target.runtime}"
            )
        if not original.diverges:
            raise NoDivergenceError(f"lane {target.id!r} does not diverge now: it {original.summary()}")
        lengths = original.feeds.get("sequence_lens")
        start = dataclasses.replace(original, variant=written_out(original.variant, lengths))
        found = minimise(start, run) if shrink else Minimised(original, (), (), 0)
        reproduction = Reproduction(target, original, found, runtime.description, settings, script)
        return reproduction, write(reproduction, out, timeout=worker.timeout)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
