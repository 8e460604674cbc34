"""What a transform costs, as data and as text: the greatest absolute and relative error of an output
(``_cost``), the worse of two, their wording, and the console's cost table (``cost_rows``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conformance import evaluate
from conformance.compare import compare_output
from conformance.diffs import EXACT
from conformance.records import Result


def _over_max_abs(diff: Any, limit: float) -> str:
    """One output over ``--max-abs``: its greatest absolute error and where, how many elements are over."""
    if not diff.values_compared:
        return f"{diff.name}: {diff.problem}"
    bad = "".join(f", {n} {kind}" for n, kind in ((diff.nan_count, "NaN"), (diff.inf_count, "Inf")) if n)
    return (
        f"{diff.name}: greatest absolute error {diff.max_abs:.3g} at index {diff.max_abs_index}, over --max-abs "
        f"{limit:g} ({diff.mismatched} of {diff.total} elements over{bad})"
    )


def _headroom(verdict: evaluate.Verdict) -> float:
    return max((d.headroom for d in verdict.outputs), default=0.0)


def _cost(actual: Any, expected: Any, iteration: tuple[int, ...] = ()) -> dict[str, Any]:
    """The greatest absolute and relative error of ``actual`` against ``expected``, over every element, and
    where (an index; a node in a loop: the iteration first); NaN/Inf counted. Non-finite as text (JSON)."""
    diff = compare_output("cost", actual, expected, EXACT, time_axis=None)
    if diff.problem is not None:
        return {"problem": diff.problem}
    return {
        "max_abs": _finite(diff.max_abs),
        "max_abs_index": [*iteration, *diff.max_abs_index],
        "max_rel": _finite(diff.max_rel),
        "max_rel_index": [*iteration, *diff.max_rel_index],
        "nan": diff.nan_count,
        "inf": diff.inf_count,
    }


def _finite(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _number(value: Any) -> float:
    """A cost figure as a number (``"inf"`` -> inf); a problem reads as inf."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.inf


def _worse(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Of two costs of one output (two invocations), the greater absolute error, and the greater relative."""
    if old is None or "problem" in old:
        return old or new
    if "problem" in new:
        return new
    out = dict(old)
    if _number(new["max_abs"]) > _number(old["max_abs"]):
        out.update(max_abs=new["max_abs"], max_abs_index=new["max_abs_index"])
    if _number(new["max_rel"]) > _number(old["max_rel"]):
        out.update(max_rel=new["max_rel"], max_rel_index=new["max_rel_index"])
    out.update(nan=old["nan"] + new["nan"], inf=old["inf"] + new["inf"])
    return out


def _costs_text(costs: Mapping[str, Mapping[str, Any]]) -> str:
    return "; ".join(_cost_text(name, cost) for name, cost in costs.items()) or "no outputs compared"


def _cost_text(name: str, cost: Mapping[str, Any]) -> str:
    if "problem" in cost:
        return f"{name}: {cost['problem']}"
    text = (
        f"{name} max abs {_number(cost['max_abs']):.3g} at {tuple(cost['max_abs_index'])}, "
        f"max rel {_number(cost['max_rel']):.3g} at {tuple(cost['max_rel_index'])}"
    )
    bad = [f"{cost[k]} {k.upper()}" for k in ("nan", "inf") if cost.get(k)]
    return f"{text} ({', '.join(bad)})" if bad else text


# --- the console's cost table ----------------------------------------------------------------------


@dataclass(frozen=True)
class CostRow:
    """One line of the cost table: an output or a node on one runtime, its worst over the input sets."""

    what: str
    runtime: str
    max_abs: float
    where: str
    max_rel: float
    lm: str = ""


def cost_rows(results: Sequence[Result]) -> list[CostRow]:
    """Per output and per LSTM node (worst of its Y, Y_h, Y_c) and runtime: the greatest absolute error
    over the input sets and where, the greatest relative one; for a language model the greatest perplexity
    increase and the lowest next-token agreement."""
    worst: dict[tuple[str, str], CostRow] = {}
    lms: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for result in results:
        costs = result.detail.get("cost")
        if not isinstance(costs, Mapping):
            continue
        label = result.case.partition("[")[2].rstrip("]")
        for name, cost in costs.items():
            if "problem" in cost:
                continue
            what = f"node {result.node}" if result.node else f"output {name}"
            where = f"{name + ' ' if result.node else ''}at {label} {tuple(cost['max_abs_index'])}"
            row = CostRow(what, result.runtime, _number(cost["max_abs"]), where, _number(cost["max_rel"]))
            old = worst.get((what, result.runtime))
            if old is not None:
                bigger = row if row.max_abs > old.max_abs else old
                row = dataclasses.replace(bigger, max_rel=max(old.max_rel, row.max_rel))
            worst[what, result.runtime] = row
        lm = result.detail.get("lm")
        if isinstance(lm, Mapping) and not result.node:
            lms.setdefault((f"output {lm.get('output')}", result.runtime), []).append(lm)
    rows = []
    for key, row in worst.items():
        metrics = lms.get(key)
        rows.append(dataclasses.replace(row, lm=_lm_cell(metrics)) if metrics else row)
    return sorted(rows, key=lambda r: not r.what.startswith("output"))  # outputs first, runtimes as listed


def _lm_cell(metrics: Sequence[Mapping[str, Any]]) -> str:
    increases = [m["perplexity_increase"] for m in metrics if "perplexity_increase" in m]
    numbers = [i for i in increases if isinstance(i, float)]
    agreement = min(m["next_token_agreement"] for m in metrics)
    if len(numbers) < len(increases):
        ppl = "perplexity not finite"
    elif numbers:
        ppl = f"perplexity {100 * max(numbers):+.3g}% at worst"
    else:
        ppl = "perplexity not scored"
    return f"{ppl}; next-token agreement {agreement:.1%} at lowest"
