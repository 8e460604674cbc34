"""conformance.intent: LSTM nodes held against the user's trained nn.LSTM (state_dicts built with torch)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conformance.graph.nodes import LSTMAttributes, LSTMNode
from conformance.intent import (
    Finding,
    NodeWeights,
    Trained,
    check_extras,
    check_intent,
    match_nodes,
    read_trained,
)
from exporters.errors import BadInputError
from reference.config import LSTMConfig
from reference.weights import LSTMWeights, generate, save

REPO = Path(__file__).resolve().parents[2]
Array = np.ndarray[Any, Any]


def lstm(input_size: int, hidden: int, *, seed: int = 0, **options: Any) -> torch.nn.LSTM:
    torch.manual_seed(seed)
    return torch.nn.LSTM(input_size, hidden, **options)


def state_of(**modules: torch.nn.Module) -> dict[str, torch.Tensor]:
    """One state_dict holding each module under its name as prefix (``encoder.lstm.weight_ih_l0``)."""
    return {f"{name}.{key}": value for name, module in modules.items() for key, value in module.state_dict().items()}


def saved(tmp_path: Path, state: object, name: str = "model.pt", **options: Any) -> Path:
    path = tmp_path / name
    torch.save(state, path, **options)
    return path


def iofc(weight: Array, hidden: int) -> Array:
    """PyTorch's gate blocks (i, f, g, o) in ONNX's order (i, o, f, c), written out here, not imported."""
    i, f, g, o = (weight[k * hidden : (k + 1) * hidden] for k in range(4))
    return np.concatenate([i, o, f, g])


def node(path: str, module: torch.nn.LSTM, k: int = 0, **attributes: Any) -> NodeWeights:
    """The weights an exact ONNX export of layer ``k`` of ``module`` feeds its LSTM node."""
    h = module.hidden_size
    sd = {key: value.detach().numpy() for key, value in module.state_dict().items()}
    suffixes = ["", "_reverse"] if module.bidirectional else [""]
    W = np.stack([iofc(sd[f"weight_ih_l{k}{s}"], h) for s in suffixes])
    R = np.stack([iofc(sd[f"weight_hh_l{k}{s}"], h) for s in suffixes])
    B = None
    if module.bias:
        B = np.stack(
            [np.concatenate([iofc(sd[f"bias_ih_l{k}{s}"], h), iofc(sd[f"bias_hh_l{k}{s}"], h)]) for s in suffixes]
        )
    direction = "bidirectional" if module.bidirectional else "forward"
    attrs = LSTMAttributes(hidden_size=h, direction=direction, **attributes)
    return NodeWeights(path, attrs, W, R, B, None, h)


def bias_of(module: torch.nn.LSTM, k: int = 0) -> Array:
    """A writable copy of the B an exact export of layer ``k`` carries."""
    B = node("", module, k).B
    assert B is not None
    copy: Array = B.copy()
    return copy


def messages(findings: list[Finding]) -> list[str]:
    return [f.message for f in findings]


def refusal(path: Path) -> str:
    with pytest.raises(BadInputError) as info:
        read_trained(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.fixture(scope="module")
def bilstm() -> torch.nn.LSTM:
    return lstm(8, 5, num_layers=2, bidirectional=True)


@pytest.fixture
def bilstm_trained(bilstm: torch.nn.LSTM, tmp_path: Path) -> Trained:
    return read_trained(saved(tmp_path, state_of(lstm=bilstm)))


class TestReadTrained:
    def test_a_zip_checkpoint_is_read_without_torch(self, bilstm: torch.nn.LSTM, tmp_path: Path) -> None:
        path = saved(tmp_path, state_of(lstm=bilstm))
        script = (
            "import sys; from pathlib import Path; from conformance.intent import read_trained; "
            f"t = read_trained(Path({str(path)!r})); "
            "print('torch' in sys.modules, [layer.label for layer in t.layers])"
        )
        run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
        assert run.stdout.strip() == "False ['lstm layer 0', 'lstm layer 1']"

    def test_layers_come_in_onnx_layout(self, bilstm: torch.nn.LSTM, bilstm_trained: Trained) -> None:
        first, second = bilstm_trained.layers
        assert (first.direction, first.hidden_size, first.input_size) == ("bidirectional", 5, 8)
        assert (first.W.shape, first.R.shape, second.W.shape) == ((2, 20, 8), (2, 20, 5), (2, 20, 10))
        assert first.B is not None and first.B.shape == (2, 40)
        expected = node("n", bilstm, 1)
        np.testing.assert_array_equal(second.W, expected.W)
        np.testing.assert_array_equal(second.R, expected.R)
        np.testing.assert_array_equal(second.B, expected.B)
        assert second.torch_names[:4] == (
            "lstm.weight_ih_l1",
            "lstm.weight_hh_l1",
            "lstm.bias_ih_l1",
            "lstm.bias_hh_l1",
        )
        assert bilstm_trained.others == {}

    def test_two_modules_bias_false_and_a_gru_beside(self, tmp_path: Path) -> None:
        torch.manual_seed(1)
        head, gru = torch.nn.Linear(4, 3), torch.nn.GRU(4, 4)
        encoder, decoder = lstm(6, 4, bias=False), lstm(4, 4, seed=2)
        trained = read_trained(saved(tmp_path, state_of(encoder=encoder, decoder=decoder, head=head, gru=gru)))
        assert [layer.label for layer in trained.layers] == ["encoder layer 0", "decoder layer 0"]
        assert trained.layers[0].B is None and trained.layers[1].B is not None
        assert sorted(trained.others) == sorted(["head.weight", "head.bias", *(f"gru.{k}" for k in gru.state_dict())])

    def test_wrapped_and_legacy_checkpoints(self, bilstm: torch.nn.LSTM, tmp_path: Path) -> None:
        wrapped = saved(tmp_path, {"state_dict": state_of(lstm=bilstm), "epoch": 3}, "wrapped.pt")
        legacy = saved(tmp_path, state_of(lstm=bilstm), "legacy.pt", _use_new_zipfile_serialization=False)
        for path in (wrapped, legacy):
            assert [layer.label for layer in read_trained(path).layers] == ["lstm layer 0", "lstm layer 1"]

    def test_our_npz_bundle(self, tmp_path: Path) -> None:
        weights = generate(LSTMConfig(4, 3, 2), seed=0)
        assert isinstance(weights, LSTMWeights)
        save(tmp_path / "w.npz", weights)
        trained = read_trained(tmp_path / "w.npz")
        assert [(layer.label, layer.prefix) for layer in trained.layers] == [("layer 0", None), ("layer 1", None)]
        np.testing.assert_array_equal(trained.layers[1].R, weights.layers[1].R)
        assert messages(check_intent(trained, [])) == [
            "trained layer 0 (W [1, 12, 4]) matches no LSTM node of the model",
            "trained layer 1 (W [1, 12, 3]) matches no LSTM node of the model",
        ]


class TestBadFiles:
    def test_missing_file(self, tmp_path: Path) -> None:
        assert refusal(tmp_path / "missing.pt") == f"{tmp_path / 'missing.pt'}: no such file"

    def test_a_text_file_named_pt(self, tmp_path: Path) -> None:
        path = tmp_path / "model.pt"
        path.write_text("hello, world\n")
        assert refusal(path) == f"{path}: is not a zip archive (it starts with b'hello, w'), not a PyTorch checkpoint"

    def test_nan_in_the_weights(self, bilstm: torch.nn.LSTM, tmp_path: Path) -> None:
        state = {k: v.clone() for k, v in state_of(lstm=bilstm).items()}
        state["lstm.weight_hh_l1_reverse"][2, 3] = float("nan")
        assert refusal(saved(tmp_path, state)) == (
            f"{tmp_path / 'model.pt'}: tensor 'lstm.weight_hh_l1_reverse' contains NaN or Inf "
            "(1 value(s), first at index (2, 3)); refusing to compare"
        )

    def test_a_checkpoint_without_an_lstm(self, tmp_path: Path) -> None:
        torch.manual_seed(0)
        path = saved(tmp_path, state_of(fc=torch.nn.Linear(3, 2)))
        assert refusal(path) == (
            f"{path}: no nn.LSTM weights in the state_dict (no '<prefix>weight_ih_l0'; keys: fc.weight, fc.bias)"
        )

    def test_a_bias_of_the_wrong_shape(self, tmp_path: Path) -> None:
        state = state_of(lstm=lstm(3, 2))
        state["lstm.bias_hh_l0"] = torch.zeros(7)
        assert refusal(saved(tmp_path, state)) == (
            f"{tmp_path / 'model.pt'}: lstm.bias_hh_l0 has shape [7]; an nn.LSTM layer with "
            "lstm.weight_ih_l0 [8, 3] needs [8]"
        )


class TestMatch:
    def test_an_exact_export_has_no_findings(self, bilstm: torch.nn.LSTM, bilstm_trained: Trained) -> None:
        nodes = [node("/lstm/LSTM", bilstm, 0), node("/lstm/LSTM_1", bilstm, 1)]
        match = match_nodes(bilstm_trained, nodes)
        assert [(n.path, layer.label) for n, layer in match.pairs] == [
            ("/lstm/LSTM", "lstm layer 0"),
            ("/lstm/LSTM_1", "lstm layer 1"),
        ]
        assert check_intent(bilstm_trained, nodes) == []

    def test_node_weights_from_a_capture(self, bilstm: torch.nn.LSTM, bilstm_trained: Trained) -> None:
        exact = node("/lstm/LSTM", bilstm, 0)
        attributes = LSTMAttributes(direction="bidirectional")  # hidden_size unset: R tells it
        lstm_node = LSTMNode("/lstm/LSTM", "LSTM", 0, attributes, {}, {}, (), "float32")
        inputs: dict[str, Array] = {
            "X": np.zeros((2, 1, 8), np.float32),
            "W": exact.W,
            "R": exact.R,
            "B": bias_of(bilstm),
        }
        weights = NodeWeights.of(lstm_node, inputs)
        assert (weights.hidden_size, weights.P) == (5, None)
        assert messages(check_intent(bilstm_trained, [weights])) == [
            "trained layer lstm layer 1 (weight_ih_l1 [20, 10], bidirectional) matches no LSTM node of the model"
        ]

    def test_same_shaped_layers_pair_by_value(self, tmp_path: Path) -> None:
        a, b = lstm(4, 4, seed=1), lstm(4, 4, seed=2)
        trained = read_trained(saved(tmp_path, state_of(a=a, b=b)))
        match = match_nodes(trained, [node("/b", b), node("/a", a)])
        assert [(n.path, layer.label) for n, layer in match.pairs] == [("/b", "b layer 0"), ("/a", "a layer 0")]
        assert match.findings == ()

    def test_a_module_exported_twice_pairs_twice(self, tmp_path: Path) -> None:
        module = lstm(4, 3)
        trained = read_trained(saved(tmp_path, state_of(lstm=module)))
        assert check_intent(trained, [node("/If/then/LSTM", module), node("/If/else/LSTM", module)]) == []

    def test_a_node_no_layer_fits(self, bilstm_trained: Trained) -> None:
        findings = check_intent(bilstm_trained, [node("/other/LSTM", lstm(8, 5))])
        assert findings[0] == Finding(
            "/other/LSTM",
            "LSTM node /other/LSTM: no layer of the trained weights has this node's shapes W [1, 20, 8] R [1, 20, 5] "
            "(trained: lstm layer 0 W [2, 20, 8] R [2, 20, 5], lstm layer 1 W [2, 20, 10] R [2, 20, 5])",
        )
        assert messages(findings[1:]) == [  # a forward node never pairs with a bidirectional layer
            "trained layer lstm layer 0 (weight_ih_l0 [20, 8], bidirectional) matches no LSTM node of the model",
            "trained layer lstm layer 1 (weight_ih_l1 [20, 10], bidirectional) matches no LSTM node of the model",
        ]

    def test_a_trained_layer_no_node_has(self, tmp_path: Path) -> None:
        module = lstm(16, 8, num_layers=2)
        trained = read_trained(saved(tmp_path, state_of(encoder_lstm=module)))
        assert check_intent(trained, [node("/LSTM", module, 0)]) == [
            Finding(None, "trained layer encoder_lstm layer 1 (weight_ih_l1 [32, 8]) matches no LSTM node of the model")
        ]

    def test_a_projection_matches_nothing(self, tmp_path: Path) -> None:
        trained = read_trained(saved(tmp_path, state_of(lstm=lstm(4, 6, proj_size=3))))
        assert messages(check_intent(trained, [])) == [
            "trained layer lstm layer 0 (weight_hr_l0 [3, 6]) uses proj_size=3: LSTM projections are not an ONNX "
            "LSTM feature, so no LSTM node can match it"
        ]


class TestAttributes:
    @pytest.fixture
    def module(self) -> torch.nn.LSTM:
        return lstm(4, 3, num_layers=2)

    def findings(self, module: torch.nn.LSTM, tmp_path: Path, **changes: Any) -> list[str]:
        trained = read_trained(saved(tmp_path, state_of(lstm=module)))
        second = node("/lstm/LSTM_1", module, 1)
        attributes = dataclasses.replace(second.attributes, **changes.pop("attributes", {}))
        second = dataclasses.replace(second, attributes=attributes, **changes)
        return messages(check_intent(trained, [node("/lstm/LSTM", module, 0), second]))

    def test_direction_reverse(self, module: torch.nn.LSTM, tmp_path: Path) -> None:
        assert self.findings(module, tmp_path, attributes={"direction": "reverse"}) == [
            "LSTM node /lstm/LSTM_1: direction='reverse' while the trained layer lstm layer 1 is a forward nn.LSTM: "
            "the node runs the sequence backwards"
        ]

    def test_hard_sigmoid(self, module: torch.nn.LSTM, tmp_path: Path) -> None:
        activations = {"activations": ("HardSigmoid", "Tanh", "Tanh")}
        assert self.findings(module, tmp_path, attributes=activations) == [
            "LSTM node /lstm/LSTM_1: uses activations [HardSigmoid, Tanh, Tanh]; nn.LSTM uses Sigmoid, Tanh, Tanh"
        ]

    def test_default_activations_in_any_case_are_fine(self, module: torch.nn.LSTM, tmp_path: Path) -> None:
        activations = {"activations": ("sigmoid", "TANH", "Tanh"), "layout": 1}
        assert self.findings(module, tmp_path, attributes=activations) == []

    def test_clip(self, module: torch.nn.LSTM, tmp_path: Path) -> None:
        assert self.findings(module, tmp_path, attributes={"clip": 0.5}) == [
            "LSTM node /lstm/LSTM_1: sets clip=0.5; nn.LSTM never clips"
        ]

    def test_input_forget(self, module: torch.nn.LSTM, tmp_path: Path) -> None:
        assert self.findings(module, tmp_path, attributes={"input_forget": 1}) == [
            "LSTM node /lstm/LSTM_1: sets input_forget=1 (f = 1 - i); nn.LSTM has an independent forget gate"
        ]

    def test_peepholes(self, module: torch.nn.LSTM, tmp_path: Path) -> None:
        assert self.findings(module, tmp_path, P=np.zeros((1, 9))) == []  # all-zero peepholes change nothing
        assert self.findings(module, tmp_path, P=np.full((1, 9), 0.1)) == [
            "LSTM node /lstm/LSTM_1: uses peepholes; nn.LSTM has none"
        ]

    def test_hidden_size(self, module: torch.nn.LSTM, tmp_path: Path) -> None:
        assert self.findings(module, tmp_path, attributes={"hidden_size": 4}) == [
            "LSTM node /lstm/LSTM_1: hidden_size=4 while the trained layer lstm layer 1 has hidden size 3"
        ]


class TestWeights:
    def findings(self, module: torch.nn.LSTM, tmp_path: Path, k: int = 0, **arrays: Any) -> list[str]:
        trained = read_trained(saved(tmp_path, state_of(lstm=module)))
        nodes = [node(f"/lstm/LSTM_{j}", module, j) for j in range(module.num_layers)]
        nodes[k] = dataclasses.replace(nodes[k], **arrays)
        return messages(check_intent(trained, nodes))

    def test_gates_left_in_pytorch_order(self, bilstm: torch.nn.LSTM, tmp_path: Path) -> None:
        sd = {k: v.detach().numpy() for k, v in bilstm.state_dict().items()}
        torch_order = node("", bilstm, 1)
        W = np.stack([sd["weight_ih_l1"], sd["weight_ih_l1_reverse"]])
        R = np.stack([sd["weight_hh_l1"], sd["weight_hh_l1_reverse"]])
        B = np.stack([np.concatenate([sd[f"bias_ih_l1{s}"], sd[f"bias_hh_l1{s}"]]) for s in ("", "_reverse")])
        assert torch_order.B is not None and B.shape == torch_order.B.shape
        reason = "gate blocks are in IFGO (PyTorch's order), not ONNX's IOFC: the export did not reorder the gates"
        assert self.findings(bilstm, tmp_path, 1, W=W, R=R, B=B) == [
            f"LSTM node /lstm/LSTM_1: W differs from lstm.weight_ih_l1 and lstm.weight_ih_l1_reverse: {reason}",
            f"LSTM node /lstm/LSTM_1: R differs from lstm.weight_hh_l1 and lstm.weight_hh_l1_reverse: {reason}",
            "LSTM node /lstm/LSTM_1: B differs from lstm.bias_ih_l1, lstm.bias_hh_l1, lstm.bias_ih_l1_reverse and "
            f"lstm.bias_hh_l1_reverse: {reason}",
        ]

    def test_swapped_directions(self, bilstm: torch.nn.LSTM, tmp_path: Path) -> None:
        R = node("", bilstm, 0).R[::-1]
        assert self.findings(bilstm, tmp_path, R=R) == [
            "LSTM node /lstm/LSTM_0: R differs from lstm.weight_hh_l0 and lstm.weight_hh_l0_reverse: "
            "forward and reverse directions are swapped"
        ]

    def test_dropped_bias_half(self, tmp_path: Path) -> None:
        module = lstm(4, 3)
        B = bias_of(module)
        B[:, 12:] = 0
        assert self.findings(module, tmp_path, B=B) == [
            "LSTM node /lstm/LSTM_0: B differs from lstm.bias_ih_l0 and lstm.bias_hh_l0: "
            "the recurrence bias half Rb is all zero: only one of bias_ih/bias_hh was exported"
        ]

    def test_biases_folded_into_wb_are_fine(self, tmp_path: Path) -> None:
        module = lstm(4, 3)
        B = bias_of(module)
        folded = np.concatenate([B[:, :12] + B[:, 12:], np.zeros((1, 12), np.float32)], axis=1)
        assert self.findings(module, tmp_path, B=folded) == []

    def test_float16_rounding_in_a_float32_node(self, tmp_path: Path) -> None:
        module = lstm(4, 3)
        W = node("", module).W.astype(np.float16).astype(np.float32)
        assert self.findings(module, tmp_path, W=W) == [
            "LSTM node /lstm/LSTM_0: W differs from lstm.weight_ih_l0: "
            "values are the trained weights rounded to float16"
        ]

    def test_a_float16_node_holds_the_weights_rounded(self, bilstm: torch.nn.LSTM, tmp_path: Path) -> None:
        exact = node("", bilstm, 1)
        assert exact.B is not None
        half = {name: getattr(exact, name).astype(np.float16) for name in ("W", "R", "B")}
        assert self.findings(bilstm, tmp_path, 1, **half) == []

    def test_one_changed_value_names_the_torch_tensor_index_and_gate(self, tmp_path: Path) -> None:
        module = lstm(8, 20, num_layers=2)
        state = {k: v.clone() for k, v in state_of(lstm=module).items()}
        state["lstm.weight_hh_l1"][75, 5] += 0.5  # torch row 75 = block 3 (o) row 15 -> ONNX row 20 + 15
        trained = read_trained(saved(tmp_path, state))
        nodes = [node("/lstm/LSTM", module, 0), node("/lstm/LSTM_1", module, 1)]
        assert messages(check_intent(trained, nodes)) == [
            "LSTM node /lstm/LSTM_1: R differs from lstm.weight_hh_l1: 1 of 1600 values differ, greatest by 0.5 at "
            "ONNX index (0, 35, 5) = lstm.weight_hh_l1[75, 5] (output gate)"
        ]

    def test_one_changed_reverse_bias(self, bilstm: torch.nn.LSTM, tmp_path: Path) -> None:
        B = bias_of(bilstm)
        B[1, 20 + 10 + 2] += 0.25  # Rb, IOFC block 2 (f), row 2 -> torch block 1 (f) row 2
        assert self.findings(bilstm, tmp_path, B=B) == [
            "LSTM node /lstm/LSTM_0: B differs from lstm.bias_ih_l0, lstm.bias_hh_l0, lstm.bias_ih_l0_reverse and "
            "lstm.bias_hh_l0_reverse: 1 of 80 values differ, greatest by 0.25 at ONNX index (1, 32) = "
            "lstm.bias_hh_l0_reverse[7] (forget gate)"
        ]

    def test_bias_false(self, tmp_path: Path) -> None:
        module = lstm(4, 3, bias=False)
        assert self.findings(module, tmp_path) == []
        assert self.findings(module, tmp_path, B=np.zeros((1, 24), np.float32)) == []
        assert self.findings(module, tmp_path, B=np.full((1, 24), 0.5, np.float32)) == [
            "LSTM node /lstm/LSTM_0: B is not all zero while the trained layer lstm layer 0 has no bias "
            "(nn.LSTM(bias=False))"
        ]

    def test_a_node_without_the_trained_biases(self, tmp_path: Path) -> None:
        assert self.findings(lstm(4, 3), tmp_path, B=None) == [
            "LSTM node /lstm/LSTM_0: has no B while the trained layer lstm layer 0 has biases "
            "(lstm.bias_ih_l0 and lstm.bias_hh_l0): the node runs without them"
        ]


class LM(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.embedding = torch.nn.Embedding(11, 6)
        self.lstm = torch.nn.LSTM(6, 5, num_layers=2, bidirectional=True)
        self.proj = torch.nn.Linear(10, 11)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(self.embedding(tokens))
        out: torch.Tensor = self.proj(y)
        return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[LM, Any]:
    """The LM and its ONNX model from the TorchScript exporter."""
    import onnx

    model, path = LM(), tmp_path_factory.mktemp("export") / "lm.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(3, 2, dtype=torch.long),), str(path), dynamo=False)
    return model, onnx.load(str(path))


class TestExport:
    """A real torch.onnx.export (TorchScript exporter): its LSTM nodes and initializers pass as they are."""

    @pytest.fixture
    def trained(self, exported: tuple[LM, Any], tmp_path: Path) -> Trained:
        return read_trained(saved(tmp_path, exported[0].state_dict()))

    @staticmethod
    def initializers(proto: Any) -> dict[str, Array]:
        from onnx import numpy_helper

        return {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}

    def test_nodes_and_extras_match(self, exported: tuple[LM, Any], trained: Trained) -> None:
        from onnx import helper

        proto = exported[1]
        inits = self.initializers(proto)
        nodes = []
        for n in proto.graph.node:
            if n.op_type == "LSTM":
                values = {a.name: helper.get_attribute_value(a) for a in n.attribute}
                attrs = LSTMAttributes.from_values(values)
                W, R, B = (inits[name] for name in n.input[1:4])
                nodes.append(NodeWeights(n.name, attrs, W, R, B, None, int(R.shape[-1])))
        assert len(nodes) == 2
        assert check_intent(trained, nodes) == []
        assert check_extras(trained, inits) == []

    def test_a_changed_embedding_value(self, exported: tuple[LM, Any], trained: Trained) -> None:
        inits = self.initializers(exported[1])
        inits["embedding.weight"] = inits["embedding.weight"].copy()
        inits["embedding.weight"][4, 2] -= 0.125
        assert messages(check_extras(trained, inits)) == [
            "embedding.weight differs from initializer 'embedding.weight' in the model: 1 of 66 values differ, "
            "greatest by 0.125 at embedding.weight[4, 2]"
        ]

    def test_a_changed_projection_stored_transposed(self, exported: tuple[LM, Any], trained: Trained) -> None:
        inits = self.initializers(exported[1])
        (name,) = [k for k, v in inits.items() if v.shape == (10, 11)]  # MatMul keeps proj.weight transposed
        inits[name] = inits[name].copy()
        inits[name][7, 3] += 1.0
        assert messages(check_extras(trained, inits)) == [
            f"proj.weight differs from initializer {name!r} in the model (stored transposed): 1 of 110 values "
            "differ, greatest by 1 at proj.weight[3, 7]"
        ]

    def test_the_bias_is_checked_once_its_weight_matched(self, exported: tuple[LM, Any], trained: Trained) -> None:
        inits = self.initializers(exported[1])
        inits["proj.bias"] = inits["proj.bias"].copy()
        inits["proj.bias"][9] += 0.5
        finding = "proj.bias differs from initializer 'proj.bias' in the model: 1 of 11 values differ, greatest by "
        assert messages(check_extras(trained, inits)) == [finding + "0.5 at proj.bias[9]"]
        (name,) = [k for k, v in inits.items() if v.shape == (10, 11)]
        inits[name] = inits[name] * np.float32(2)  # the weight differs: its bias is not held against anything
        assert [m.split(": ")[0] for m in messages(check_extras(trained, inits))] == [
            f"proj.weight differs from initializer {name!r} in the model (stored transposed)"
        ]

    def test_ambiguous_candidates_say_nothing(self, exported: tuple[LM, Any], trained: Trained) -> None:
        inits = self.initializers(exported[1])
        inits["another"] = np.zeros((11, 6), np.float32)  # the embedding now has two candidates
        inits["embedding.weight"] = inits["embedding.weight"] + np.float32(1)
        assert check_extras(trained, inits) == []
