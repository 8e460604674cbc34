"""first_divergence: the first main-graph node whose output differs from the reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from conformance.graph import Run, onnxruntime_runner
from conformance.graph.bisect import first_divergence, topological_order
from tests.conformance.graph import models

ORT = onnxruntime_runner()


def with_initializer(run: Run, name: str, value: Any) -> Run:
    """A runtime that uses a different value for initializer ``name``: a node-local bug."""

    def changed(model: onnx.ModelProto, feeds: Any) -> Any:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        for i, init in enumerate(model.graph.initializer):
            if init.name == name:
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.asarray(value, init_dtype(init)), name))
        return run(model, feeds)

    return changed


def init_dtype(init: onnx.TensorProto) -> Any:
    return helper.tensor_dtype_to_np_dtype(init.data_type)


class TestFirstDivergence:
    def test_conforming_runtime_has_none(self) -> None:
        assert first_divergence(models.scaled_output(), {"X": models.x_input()}, ORT) is None

    def test_names_the_first_node_that_differs_not_its_consumers(self) -> None:
        run = with_initializer(ORT, "two", 2.001)  # Mul scales by 2.001: Mul and Tanh after it differ
        divergence = first_divergence(models.scaled_output(), {"X": models.x_input()}, run)
        assert divergence is not None
        assert (divergence.path, divergence.op_type, divergence.position, divergence.output) == (
            "scale",
            "Mul",
            1,
            "scaled",
        )
        assert divergence.diff.mismatched > 0

    def test_an_lstm_that_differs_is_found_first(self) -> None:
        w = models.weights(12)["W"].copy()
        w[0, 0, 0] += 0.1
        divergence = first_divergence(models.scaled_output(), {"X": models.x_input()}, with_initializer(ORT, "W", w))
        assert divergence is not None
        assert (divergence.path, divergence.output) == ("rnn", "Y_h")

    def test_comparing_two_identical_runs_with_zero_tolerance(self) -> None:
        model, feeds = models.plain(), {"X": models.x_input()}
        assert first_divergence(model, feeds, ORT, ORT, tolerances={"float32": _exact()}) is None


def _exact() -> Any:
    from conformance.compare import EXACT

    return EXACT


class TestTopologicalOrder:
    def test_sorted_graph_keeps_its_order(self) -> None:
        assert topological_order(models.scaled_output().graph) == [0, 1, 2]

    def test_unsorted_graph_is_sorted(self) -> None:
        graph = models.scaled_output().graph
        nodes = list(graph.node)
        del graph.node[:]
        graph.node.extend(reversed(nodes))
        assert [graph.node[i].name for i in topological_order(graph)] == ["rnn", "scale", "squash"]

    def test_subgraph_reads_count_as_dependencies(self) -> None:
        graph = models.if_branches().graph  # the If reads X and the weights from its branches
        graph.node.insert(0, helper.make_node("Identity", ["X0"], ["X"]))
        graph.input[0].name = "X0"
        order = topological_order(graph)
        assert order == [0, 1]
        nodes = list(graph.node)
        del graph.node[:]
        graph.node.extend(reversed(nodes))
        assert topological_order(graph) == [1, 0]

    def test_independent_nodes_keep_their_positions(self) -> None:
        graph = helper.make_graph(
            [
                helper.make_node("Relu", ["x"], ["a"]),
                helper.make_node("Neg", ["x"], ["b"]),
                helper.make_node("Add", ["a", "b"], ["c"]),
            ],
            "diamond",
            [],
            [],
        )
        assert topological_order(graph) == [0, 1, 2]

    def test_cycle_is_an_error(self) -> None:
        graph = helper.make_graph(
            [helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])], "cycle", [], []
        )
        with pytest.raises(ValueError, match="the graph has a cycle: 2 nodes never become ready"):
            topological_order(graph)
