"""One repro folder per distinct divergence of a result file (``repro --all-distinct``).

Diverging lanes (fail, error, xfail) are grouped by runtime family (``openvino-cpu`` and
``openvino-cpu-auto`` are ``openvino``) and case (``sequence-lens[mixed-forward]`` is ``sequence-lens``),
then by how they diverged (wrong results, or each distinct error). The smallest lane of each group, on a
float32 runtime where the family has one, is reproduced and minimised; the folder is named after the
runtime family and the operator features the minimal model keeps (``openvino-sequence-lens``). Groups
whose minimal models show the same divergence (same family, same kind, same features; for wrong values,
the same reading they match) keep the first folder only, and ``INDEX.md`` lists every lane it stands for.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conformance.cases import Case
from conformance.records import LANE, Result, ResultDocument
from conformance.repro.lanes import DIVERGING, Target, find_case
from conformance.repro.trial import Trial, normalised
from conformance.repro.worker import Worker
from conformance.status import ERROR, FAIL, XFAIL
from exporters.errors import BadInputError

TRIES = 3  # lanes of a group tried before it counts as no longer diverging
PENDING = ".pending"  # where a folder is written before it is named after its minimal model
FEATURE_SLUGS = {
    "sequence_lens": "sequence-lens",
    "initial_h": "initial-states",
    "P": "peepholes",
    "clip": "clip",
    "input_forget": "input-forget",
    "activations": "activations",
    "activation_alpha": "activation-params",
    "activation_beta": "activation-params",
    "layout": "layout-1",
}


@dataclass
class Written:
    folder: str
    headline: str
    lanes: list[str]


@dataclass
class Outcome:
    written: list[Written] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # groups none of whose lanes diverges now
    skipped: list[str] = field(default_factory=list)  # lanes on runtimes without a template or not here


def family(runtime_id: str) -> str:
    """The runtime without its precision or optimisation suffix: ``openvino-cpu-auto`` -> ``openvino``,
    ``ort-cpu-noopt`` -> ``ort``, ``ort-openvino-auto`` -> ``ort-openvino``."""
    return runtime_id.removesuffix("-auto").removesuffix("-noopt").removesuffix("-cpu")


def base(case_id: str) -> str:
    return case_id.split("[", 1)[0]


def how(record: Result) -> str:
    """How a lane diverged: ``fail``, or its error message without numbers and quoted names."""
    status = record.expected.status if record.status == XFAIL and record.expected else record.status
    return ERROR + ": " + normalised(record.message.splitlines()[0]) if status == ERROR and record.message else status


def size(case: Case) -> int:
    """Weights plus input elements: how big a lane's model is."""
    lstm = case.lstm
    d, h = lstm.num_directions, lstm.hidden_size
    weights = sum(d * 4 * h * (lstm.layer_input_size(k) + h + 2) for k in range(lstm.num_layers))
    return weights + case.inputs.seq_len * case.inputs.batch * lstm.input_size


def groups(document: ResultDocument, runtimes: Sequence[str] | None) -> dict[tuple[str, str, str], list[Result]]:
    """Diverging lanes by (runtime family, case without its matrix values, how they diverged)."""
    chosen: dict[tuple[str, str, str], list[Result]] = {}
    for record in document.results:
        if record.kind != LANE or record.status not in DIVERGING:
            continue
        if runtimes and not any(fnmatch.fnmatchcase(record.runtime, g) for g in runtimes):
            continue
        chosen.setdefault((family(record.runtime), base(record.case), how(record)), []).append(record)
    return chosen


def folder_name(family_id: str, trial: Trial, taken: Sequence[str]) -> str:
    """``openvino-sequence-lens``: the family and the features the minimal model keeps; ``-2`` when taken."""
    from conformance.repro.readme import features

    lstm = trial.variant.case.lstm
    slugs = [FEATURE_SLUGS.get(n, "") for n in features(trial)]
    slugs += [lstm.direction] if lstm.direction != "forward" else []
    words = list(dict.fromkeys(s for s in slugs if s)) or ["plain-lstm"]
    name = re.sub(r"[^a-z0-9]+", "-", f"{family_id}-{'-'.join(words)}".lower()).strip("-")
    unique, k = name, 2
    while unique in taken:
        unique, k = f"{name}-{k}", k + 1
    return unique


def reproduce_all(
    document: ResultDocument,
    source: Path,
    root: Path,
    worker: Worker,
    *,
    runtimes: Sequence[str] | None = None,
    shrink: bool = True,
    notice: Callable[[str], None] = lambda line: None,
) -> Outcome:
    """Write one folder per distinct divergence of ``document`` under ``root`` (and ``root/INDEX.md``)."""
    from conformance.repro import NoDivergenceError, reproduce
    from conformance.repro.readme import features, headline
    from conformance.repro.scripts import NoTemplateError, template
    from conformance.runtimes import get_runtime

    outcome = Outcome()
    cases: dict[tuple[str, str], Case] = {}
    usable: dict[str, str | None] = {}  # runtime -> why it cannot be reproduced here, or None
    seen: dict[tuple[object, ...], Written] = {}
    for (family_id, case_base, _), records in sorted(groups(document, runtimes).items()):
        for record in records:
            if record.runtime not in usable:
                try:
                    runtime = get_runtime(record.runtime)
                    template(runtime)
                    usable[record.runtime] = runtime.unavailable()
                except (NoTemplateError, BadInputError) as exc:
                    usable[record.runtime] = str(exc)
            if usable[record.runtime] is not None:
                outcome.skipped.append(f"{record.id}: {usable[record.runtime]}")
        ready = [r for r in records if usable[r.runtime] is None]
        for record in ready:
            if (record.suite, record.case) not in cases:
                where = f"{source}: lane {record.id!r}"
                cases[record.suite, record.case] = find_case(record.suite, record.case, where)
        ready.sort(key=lambda r: (r.runtime.endswith("-auto"), r.exporter != "onnx-native",
                                  size(cases[r.suite, r.case]), r.id))  # fmt: skip
        lanes = [r.id for r in records]
        for record in ready[:TRIES]:
            target = Target(record.suite, cases[record.suite, record.case], record.exporter, record.runtime,
                            f"recorded as {record.status} in {source}")  # fmt: skip
            pending = root / PENDING
            try:
                reproduction, _ = reproduce(target, worker, pending, shrink=shrink)
            except NoDivergenceError as exc:
                notice(f"{family_id}/{case_base}: {exc}")
                continue
            trial = reproduction.minimised.trial
            signature = trial.signature if trial.signature[0] == FAIL else (ERROR,)
            same = (family_id, *signature, tuple(features(trial)))
            if same in seen:
                shutil.rmtree(pending)
                seen[same].lanes.extend(lanes)
                notice(f"{record.id}: the same divergence as {seen[same].folder}")
            else:
                name = folder_name(family_id, trial, [w.folder for w in outcome.written])
                pending.rename(root / name)
                seen[same] = Written(name, headline(record.runtime, trial), list(lanes))
                outcome.written.append(seen[same])
                notice(f"{name}: {seen[same].headline.replace('`', '')}")
            break
        else:
            if ready:
                outcome.stale.append(f"{family_id}/{case_base}")
                notice(f"{family_id}/{case_base}: no lane of the group diverges now")
    _index(root, outcome)
    return outcome


def _index(root: Path, outcome: Outcome) -> None:
    """``INDEX.md``: each folder, what diverges, and the lanes of the result file it stands for."""
    lines = ["# Divergences", "", "| folder | what diverges | lanes |", "|---|---|---|"]
    for entry in outcome.written:
        lanes = entry.lanes
        shown = ", ".join(f"`{lane}`" for lane in lanes[:3]) + (f" and {len(lanes) - 3} more" if len(lanes) > 3 else "")
        lines.append(f"| [{entry.folder}]({entry.folder}/README.md) | {entry.headline} | {shown} |")
    root.mkdir(parents=True, exist_ok=True)
    (root / "INDEX.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
