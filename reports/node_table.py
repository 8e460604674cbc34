"""The node x runtime table of a ``check``: one row per LSTM node (its path), then the whole model and, with
``--weights``, the trained weights; one column per runtime; each cell the worst status over the inputs.

A node that passed at one input and was not exercised at another passed: "not exercised" shows only
where no input reached the node.
"""

from __future__ import annotations

from collections.abc import Sequence

from conformance.records import NODE, WEIGHTS, Result
from conformance.status import ERROR, FAIL, NOT_EXERCISED, PASS, SKIP, TIMEOUT, XFAIL, XPASS

__all__ = ["MODEL_ROW", "STREAM_ROW", "WEIGHTS_ROW", "node_table"]

MODEL_ROW = "(whole model)"
STREAM_ROW = "(stream)"
WEIGHTS_ROW = "(trained weights)"
_WORST_FIRST = (FAIL, XPASS, ERROR, TIMEOUT, PASS, XFAIL, SKIP, NOT_EXERCISED)


def node_table(results: Sequence[Result]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(runtime columns in first-seen order, row -> runtime -> status); rows: nodes in first-seen order,
    then the whole model, the ``--stream`` run, and the trained weights (one cell, under ``weights``)."""
    rank = {status: i for i, status in enumerate(_WORST_FIRST)}
    columns: list[str] = []
    nodes: dict[str, dict[str, str]] = {}
    model: dict[str, str] = {}
    weights: dict[str, str] = {}
    stream: dict[str, str] = {}
    for result in results:
        if result.kind == WEIGHTS:
            row = weights
        elif result.kind == NODE and result.node:
            row = nodes.setdefault(result.node, {})
        elif "max_abs_error_per_step" in result.detail:
            row = stream
        else:
            row = model
        if result.kind != WEIGHTS and result.runtime not in columns:
            columns.append(result.runtime)
        previous = row.get(result.runtime)
        if previous is None or rank.get(result.status, len(rank)) < rank.get(previous, len(rank)):
            row[result.runtime] = result.status
    table = dict(nodes)
    if model:
        table[MODEL_ROW] = model
    if stream:
        table[STREAM_ROW] = stream
    if weights:
        table[WEIGHTS_ROW] = weights
    return columns, table
