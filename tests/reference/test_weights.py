"""The canonical weight bundle: gate-order conversion, PyTorch layout, files, recipes, digests."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reference import LayerWeights, LMConfig, LMWeights, LSTMConfig, LSTMWeights, run_stack
from reference.weights import (
    IFGO_TO_IOFC,
    IOFC_TO_IFGO,
    from_torch_state_dict,
    generate,
    generate_lm,
    lm_from_torch_state_dict,
    lm_to_torch_state_dict,
    load,
    permute_gates,
    save,
    to_torch_state_dict,
)

STACK = LSTMConfig(3, 4, num_layers=2, direction="bidirectional")
PEEPHOLES = LSTMConfig(3, 4, num_layers=2, direction="forward", peepholes=True)
LM = LMConfig(11, LSTMConfig(5, 6, num_layers=2, direction="bidirectional"))


def raises(message: str) -> Any:
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


def assert_same_arrays(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name, strict=True)


class TestGateOrder:
    H = 2

    def blocks(self) -> np.ndarray:
        # Rows labelled by gate: 0=i, 1=o, 2=f, 3=c (ONNX IOFC order), each block H rows of 3 columns.
        return np.repeat(np.arange(4.0), self.H)[:, None] * np.ones((1, 3))

    def test_iofc_to_ifgo_moves_blocks(self) -> None:
        torch_order = permute_gates(self.blocks(), IOFC_TO_IFGO)
        # PyTorch wants i, f, g(=c), o.
        np.testing.assert_array_equal(torch_order[:, 0], np.repeat([0.0, 2.0, 3.0, 1.0], self.H))

    def test_ifgo_to_iofc_moves_blocks(self) -> None:
        ifgo = np.repeat(np.arange(4.0), self.H)  # 0=i, 1=f, 2=g, 3=o
        np.testing.assert_array_equal(permute_gates(ifgo, IFGO_TO_IOFC), np.repeat([0.0, 3.0, 1.0, 2.0], self.H))

    def test_permutations_are_inverse(self) -> None:
        a = np.random.default_rng(0).standard_normal((8, 5))
        np.testing.assert_array_equal(permute_gates(permute_gates(a, IOFC_TO_IFGO), IFGO_TO_IOFC), a)
        np.testing.assert_array_equal(permute_gates(permute_gates(a, IFGO_TO_IOFC), IOFC_TO_IFGO), a)

    def test_other_axis(self) -> None:
        a = self.blocks().T  # gates along axis 1
        np.testing.assert_array_equal(permute_gates(a, IOFC_TO_IFGO, axis=1), permute_gates(a.T, IOFC_TO_IFGO).T)


class TestTorchLayout:
    def test_round_trip_is_exact(self) -> None:
        weights = generate(STACK, seed=1)
        back = from_torch_state_dict(to_torch_state_dict(weights))
        assert_same_arrays(back.arrays(), weights.arrays())
        assert back.digest() == weights.digest()

    def test_keys_are_torch_names(self) -> None:
        keys = set(to_torch_state_dict(generate(STACK, seed=1), prefix="rnn."))
        expected = {
            f"rnn.{kind}_{part}_l{k}{suffix}"
            for kind in ("weight", "bias")
            for part in ("ih", "hh")
            for k in (0, 1)
            for suffix in ("", "_reverse")
        }
        assert keys == expected

    def test_torch_module_accepts_the_state_dict_and_agrees(self) -> None:
        torch = pytest.importorskip("torch")
        weights = generate(STACK, seed=2)
        module = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).double()
        module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in to_torch_state_dict(weights).items()})
        x = np.random.default_rng(0).standard_normal((5, 2, 3))
        with torch.no_grad():
            out, (h, c) = module(torch.from_numpy(x))
        ref = run_stack(STACK, weights, x)
        np.testing.assert_allclose(out.numpy(), ref.output, rtol=0, atol=1e-13)
        np.testing.assert_allclose(h.numpy(), ref.h_n, rtol=0, atol=1e-13)
        np.testing.assert_allclose(c.numpy(), ref.c_n, rtol=0, atol=1e-13)

    def test_from_torch_tensors(self) -> None:
        torch = pytest.importorskip("torch")
        module = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)  # float32 parameters
        weights = from_torch_state_dict(module.state_dict())
        assert (weights.num_layers, weights.num_directions, weights.hidden_size, weights.input_size) == (2, 2, 4, 3)
        again = to_torch_state_dict(weights)
        for name, tensor in module.state_dict().items():
            np.testing.assert_array_equal(again[name], tensor.double().numpy(), err_msg=name)

    def test_missing_biases_are_zero(self) -> None:
        state = to_torch_state_dict(generate(LSTMConfig(3, 4), seed=0))
        del state["bias_ih_l0"], state["bias_hh_l0"]
        np.testing.assert_array_equal(from_torch_state_dict(state).layers[0].B, np.zeros((1, 32)))

    def test_peepholes_cannot_go_to_torch(self) -> None:
        with raises("to_torch_state_dict: torch.nn.LSTM has no peephole weights (P)"):
            to_torch_state_dict(generate(PEEPHOLES, seed=0))

    def test_proj_size_is_refused(self) -> None:
        state = to_torch_state_dict(generate(LSTMConfig(3, 4), seed=0))
        state["weight_hr_l0"] = np.zeros((2, 4))
        with raises("from_torch_state_dict: LSTMs with proj_size are not supported (ONNX LSTM has no projection)"):
            from_torch_state_dict(state)

    def test_no_lstm_under_prefix(self) -> None:
        with raises("from_torch_state_dict: no 'weight_ih_l0' under prefix 'lstm.'; keys: ['weight_ih_l0']"):
            from_torch_state_dict({"weight_ih_l0": np.zeros((16, 3))}, prefix="lstm.")

    def test_language_model_round_trip_is_exact(self) -> None:
        weights = generate_lm(LM, seed=3)
        state = lm_to_torch_state_dict(weights)
        assert {"embedding.weight", "proj.weight", "proj.bias", "lstm.weight_ih_l1_reverse"} <= set(state)
        back = lm_from_torch_state_dict(state)
        assert_same_arrays(back.arrays(), weights.arrays())
        assert back.digest() == weights.digest()


class _Trap:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def _meta(kind: str) -> np.ndarray:
    return np.array(json.dumps({"format": "lstm-conformance-weights", "version": 1, "kind": kind}))


class TestFiles:
    @pytest.mark.parametrize(
        "weights",
        [generate(STACK, seed=4), generate(PEEPHOLES, seed=4), generate_lm(LM, seed=4)],
        ids=["stack", "peepholes", "lm"],
    )
    def test_round_trip_is_exact(self, tmp_path: Path, weights: LSTMWeights | LMWeights) -> None:
        path = tmp_path / "w.npz"
        save(path, weights)
        back = load(path)
        assert type(back) is type(weights)
        assert_same_arrays(back.arrays(), weights.arrays())
        assert back.digest() == weights.digest()

    def test_saved_file_is_plain_npz(self, tmp_path: Path) -> None:
        path = tmp_path / "w.npz"
        save(path, generate(PEEPHOLES, seed=0))
        with np.load(path, allow_pickle=False) as data:
            assert set(data.files) == {"__meta__"} | {f"lstm.{k}.{n}" for k in (0, 1) for n in "WRBP"}
            meta = json.loads(str(data["__meta__"]))
        assert meta == {"format": "lstm-conformance-weights", "version": 1, "kind": "lstm"}

    def test_object_array_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "evil.npz"
        sentinel = tmp_path / "unpickled"
        np.savez(path, x=np.array([_Trap(str(sentinel))], dtype=object))
        with raises(f"{path}: not a weights file (Object arrays cannot be loaded when allow_pickle=False)"):
            load(path)
        assert not sentinel.exists()

    def test_pickle_file_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "evil.npz"
        sentinel = tmp_path / "unpickled"
        path.write_bytes(pickle.dumps(_Trap(str(sentinel))))
        with pytest.raises(ValueError, match=f"^{re.escape(f'{path}: not a weights file (')}.*pickled"):
            load(path)
        assert not sentinel.exists()

    def test_npz_without_meta(self, tmp_path: Path) -> None:
        path = tmp_path / "other.npz"
        np.savez(path, foo=np.zeros(3))
        with raises(f"{path}: not an lstm-conformance weights file (no __meta__ entry)"):
            load(path)

    def test_other_format(self, tmp_path: Path) -> None:
        path = tmp_path / "other.npz"
        np.savez(path, __meta__=np.array(json.dumps({"format": "something-else", "version": 1})))
        with raises(f"{path}: unsupported weights format {{'format': 'something-else', 'version': 1}}"):
            load(path)

    def test_no_layers(self, tmp_path: Path) -> None:
        path = tmp_path / "empty.npz"
        np.savez(path, __meta__=_meta("lstm"))
        with raises(f"{path}: no LSTM layers in weights file"):
            load(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        path = tmp_path / "absent.npz"
        with pytest.raises(ValueError, match=f"^{re.escape(f'{path}: not a weights file (')}"):
            load(path)

    @pytest.mark.parametrize(
        "entries",
        [
            pytest.param({"__meta__": np.array("not json")}, id="meta-not-json"),
            pytest.param({"__meta__": np.array("[1]")}, id="meta-not-object"),
            pytest.param(
                {
                    "__meta__": np.array(json.dumps({"format": "lstm-conformance-weights", "version": 1})),
                    **generate(STACK, seed=0).arrays(),
                },
                id="no-kind",
            ),
            pytest.param({"__meta__": _meta("lm"), **generate(STACK, seed=0).arrays()}, id="lm-without-embedding"),
            pytest.param({"__meta__": _meta("lstm"), "lstm.0.W": np.zeros((1, 16, 3))}, id="layer-without-R"),
        ],
    )
    def test_corrupt_file_is_a_value_error_naming_the_file(self, tmp_path: Path, entries: dict[str, Any]) -> None:
        path = tmp_path / "corrupt.npz"
        np.savez(path, **entries)
        with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: "):
            load(path)


class TestRecipes:
    def test_same_seed_same_weights(self) -> None:
        assert generate(STACK, seed=5).digest() == generate(STACK, seed=5).digest()
        assert generate_lm(LM, seed=5).digest() == generate_lm(LM, seed=5).digest()

    def test_different_seed_different_weights(self) -> None:
        assert generate(STACK, seed=5).digest() != generate(STACK, seed=6).digest()
        assert generate_lm(LM, seed=5).digest() != generate_lm(LM, seed=6).digest()

    def test_recipe_changes_weights(self) -> None:
        assert generate(STACK, seed=5).digest() != generate(STACK, seed=5, recipe="saturating").digest()

    def test_torch_default_bound(self) -> None:
        config = LSTMConfig(7, 16, num_layers=2, direction="bidirectional", peepholes=True)
        bound = 1.0 / np.sqrt(16)
        for name, a in generate(config, seed=0).arrays().items():
            # Values are rounded to float32 after drawing; rounding is monotonic, so they stay within f32(bound).
            assert np.abs(a).max() <= float(np.float32(bound)), name
            assert np.abs(a).max() > 0.9 * bound, name

    def test_saturating_values_are_large(self) -> None:
        arrays = generate(STACK, seed=0, recipe="saturating").arrays()
        for name, a in arrays.items():
            assert np.abs(a).max() <= 4.0, name
        values = np.concatenate([a.ravel() for a in arrays.values()])
        assert np.abs(values).max() > 3.0
        assert np.mean(np.abs(values) > 3.0) > 0.15  # U(-4, 4): a quarter of the values

    def test_values_are_float32_representable(self) -> None:
        weights = generate_lm(LM, seed=0)
        for name, a in weights.arrays().items():
            assert a.dtype == np.float64, name
            np.testing.assert_array_equal(a.astype(np.float32).astype(np.float64), a, err_msg=name)

    def test_lm_parts(self) -> None:
        weights = generate_lm(LM, seed=0)
        assert weights.embedding.shape == (11, 5)
        assert weights.proj_weight.shape == (11, 12)
        assert weights.proj_bias.shape == (11,)
        bound = 1.0 / np.sqrt(12)
        assert np.abs(weights.proj_weight).max() <= float(np.float32(bound))
        assert np.abs(weights.embedding).max() > bound  # N(0, 1), not the uniform bound

    def test_unknown_recipe(self) -> None:
        with raises("unknown weights recipe 'xavier'; expected one of: torch-default, saturating"):
            generate(STACK, seed=0, recipe="xavier")

    def test_shapes_follow_config(self) -> None:
        weights = generate(STACK, seed=0)
        assert weights.matches(STACK) is None
        assert [layer.W.shape for layer in weights.layers] == [(2, 16, 3), (2, 16, 8)]


class TestDigest:
    def test_stable_across_save_and_load(self, tmp_path: Path) -> None:
        weights = generate(PEEPHOLES, seed=8)
        save(tmp_path / "a.npz", weights)
        loaded = load(tmp_path / "a.npz")
        save(tmp_path / "b.npz", loaded)
        assert load(tmp_path / "b.npz").digest() == loaded.digest() == weights.digest()

    def test_any_change_changes_digest(self) -> None:
        weights = generate(STACK, seed=8)
        layers = list(weights.layers)
        r = layers[1].R.copy()
        r[1, 2, 3] = np.nextafter(r[1, 2, 3], np.inf)
        layers[1] = LayerWeights(layers[1].W, r, layers[1].B)
        assert LSTMWeights(tuple(layers)).digest() != weights.digest()

    def test_digest_of_a_fixed_bundle_is_pinned(self) -> None:
        # An accidental change to how digests are computed would orphan every cached artifact.
        weights = LSTMWeights((LayerWeights(W=np.zeros((1, 4, 1)), R=np.ones((1, 4, 1)), B=np.zeros((1, 8))),))
        assert weights.digest() == "c029629f177387251d5459dfda72a8b77c7c4953949a4b2b3ebb5a520d5ed238"


class TestLSTMWeightsValidation:
    def test_no_layers(self) -> None:
        with raises("LSTMWeights: at least one layer is required"):
            LSTMWeights(())

    def test_wrong_r(self) -> None:
        # The hidden size is read off R's last axis, so a wrong gate count shows up on R.
        with raises("layer 0 R: expected shape [1, 16, 4], got [1, 12, 4]"):
            LSTMWeights((LayerWeights(W=np.zeros((1, 16, 3)), R=np.zeros((1, 12, 4)), B=np.zeros((1, 32))),))

    def test_wrong_w_for_hidden_size(self) -> None:
        with raises("layer 0 W: expected shape [1, 12, 3], got [1, 16, 3]"):
            LSTMWeights((LayerWeights(W=np.zeros((1, 16, 3)), R=np.zeros((1, 16, 3)), B=np.zeros((1, 32))),))

    def test_wrong_b(self) -> None:
        with raises("layer 0 B: expected shape [1, 32], got [1, 16]"):
            LSTMWeights((LayerWeights(W=np.zeros((1, 16, 3)), R=np.zeros((1, 16, 4)), B=np.zeros((1, 16))),))

    def test_wrong_p(self) -> None:
        with raises("layer 0 P: expected shape [1, 12], got [1, 16]"):
            LSTMWeights(
                (
                    LayerWeights(
                        W=np.zeros((1, 16, 3)), R=np.zeros((1, 16, 4)), B=np.zeros((1, 32)), P=np.zeros((1, 16))
                    ),
                )
            )

    def test_second_layer_reads_first_layers_output(self) -> None:
        first = LayerWeights(W=np.zeros((2, 16, 3)), R=np.zeros((2, 16, 4)), B=np.zeros((2, 32)))
        second = LayerWeights(W=np.zeros((2, 16, 4)), R=np.zeros((2, 16, 4)), B=np.zeros((2, 32)))
        with raises("layer 1 W: expected shape [2, 16, 8], got [2, 16, 4]"):
            LSTMWeights((first, second))

    def test_peepholes_on_some_layers_only(self) -> None:
        first = LayerWeights(W=np.zeros((1, 16, 3)), R=np.zeros((1, 16, 4)), B=np.zeros((1, 32)))
        second = LayerWeights(W=np.zeros((1, 16, 4)), R=np.zeros((1, 16, 4)), B=np.zeros((1, 32)), P=np.ones((1, 12)))
        with pytest.raises(ValueError, match="P"):
            LSTMWeights((first, second))
