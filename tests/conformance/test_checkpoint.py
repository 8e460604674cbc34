"""conformance.checkpoint: trained weights read without torch, safely, within a memory budget.

Real checkpoints come from ``torch.save`` and must equal ``torch.load(weights_only=True)`` exactly;
hostile ones are built by hand (tests/conformance/checkpoint_fixtures.py). Every refusal pins its whole
line; memory probes run in a child under RLIMIT_AS so that a budget bypass fails instead of swapping.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from conformance.checkpoint import (
    DEFAULT_MAX_BYTES,
    CheckpointError,
    NonFiniteWeightsError,
    NotAZipCheckpointError,
    OverBudgetError,
    UnsafeCheckpointError,
    read_npz,
    read_state_dict,
    read_weights,
    refuse_non_finite,
)
from reference.config import LSTMConfig
from reference.weights import generate, save
from tests.conformance.checkpoint_fixtures import (
    Call,
    GiB,
    Global,
    Member,
    Ordered,
    Raw,
    checkpoint,
    npy_bytes,
    npy_header,
    peak_rss_mib,
    raw_zip,
    rewrite_zip,
    run_limited,
    stored,
    tensor,
    zeros_deflate,
)

BUDGET = DEFAULT_MAX_BYTES  # 2 GiB


def refusal(call: Callable[[], object], cls: type[CheckpointError] = CheckpointError) -> str:
    """The one line a refusal says (and that it is one line)."""
    with pytest.raises(cls) as info:
        call()
    text = str(info.value)
    assert "\n" not in text and "\r" not in text and "\x1b" not in text
    return text


def expected_arrays(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """What the reader must return: torch's tensors as NumPy, bfloat16 widened to float32 (exact)."""
    return {k: (v.float() if v.dtype == torch.bfloat16 else v).detach().numpy() for k, v in state.items()}


def assert_same(got: dict[str, np.ndarray], path: Path, *, weights_only: bool = True) -> None:
    want = expected_arrays(torch.load(path, map_location="cpu", weights_only=weights_only))
    assert list(got) == list(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        assert np.array_equal(got[key], value, equal_nan=True), key
        assert got[key].flags.writeable and got[key].flags.c_contiguous, key


def saved(tmp_path: Path, obj: Any, name: str = "model.pt", **kwargs: Any) -> Path:
    path = tmp_path / name
    torch.save(obj, path, **kwargs)
    return path


class LanguageModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(11, 6)
        self.lstm = nn.LSTM(6, 8, num_layers=2, batch_first=True)
        self.proj = nn.Linear(8, 11)


# --- real checkpoints equal torch.load(weights_only=True) ------------------------------------------


class TestTorchSaveFiles:
    @pytest.mark.parametrize(
        "make",
        [
            lambda: nn.LSTM(4, 8),
            lambda: nn.LSTM(16, 32, num_layers=2, bidirectional=True),
            lambda: nn.LSTM(5, 3, num_layers=2, bias=False, batch_first=True),
            lambda: nn.LSTM(4, 8, bidirectional=True).half(),
            lambda: nn.LSTM(4, 8).to(torch.bfloat16),
            lambda: nn.LSTM(4, 8).double(),
            LanguageModel,
        ],
        ids=["1-layer", "2-layer-bidirectional", "no-bias", "float16", "bfloat16", "float64", "embedding-lstm-linear"],
    )
    def test_module_state_dict(self, tmp_path: Path, make: Callable[[], nn.Module]) -> None:
        torch.manual_seed(0)
        path = saved(tmp_path, make().state_dict())
        assert_same(read_state_dict(path, max_bytes=BUDGET), path)

    def test_views_offsets_and_shared_storage(self, tmp_path: Path) -> None:
        base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
        state = {
            "base": base,
            "rows": base[1:],  # offset 10 into the same storage
            "transposed": base.t(),  # strides (1, 10)
            "column": base[:, 3],  # offset 3, stride 10
            "expanded": torch.ones(3).expand(4, 3),  # stride 0
            "scalar": torch.tensor(2.5),
            "empty": torch.zeros(0, 4),
            "int64": torch.arange(5),
            "int32": torch.arange(5, dtype=torch.int32)[::2],
            "int16": torch.tensor([-3, 4], dtype=torch.int16),
            "int8": torch.tensor([-1, 2], dtype=torch.int8),
            "uint8": torch.tensor([0, 255], dtype=torch.uint8),
            "bool": torch.tensor([True, False, True]),
            "bf16_view": torch.randn(4, 5).to(torch.bfloat16).t(),
        }
        path = saved(tmp_path, state)
        got = read_state_dict(path, max_bytes=BUDGET)
        assert_same(got, path)
        got["base"][0, 0] = -1.0  # shared storage in the file, independent arrays here
        assert got["rows"][0, 0] == 10.0 and got["transposed"][0, 0] == 0.0

    def test_parameters_with_and_without_python_state(self, tmp_path: Path) -> None:
        lstm = nn.LSTM(3, 4)
        params = dict(lstm.named_parameters())  # Parameters: torch._utils._rebuild_parameter
        params["weight_ih_l0"].note = "has a Python attribute"  # type: ignore[attr-defined]  # ..._with_state
        path = saved(tmp_path, params)
        assert_same(read_state_dict(path, max_bytes=BUDGET), path)

    @pytest.mark.parametrize("wrapper", ["state_dict", "model_state_dict"])
    def test_wrapped_state_dict_siblings_ignored(self, tmp_path: Path, wrapper: str) -> None:
        state = nn.LSTM(4, 8).state_dict()
        path = saved(tmp_path, {wrapper: state, "epoch": 3, "note": "trained", "history": [0.5, 0.25]})
        got = read_state_dict(path, max_bytes=BUDGET)
        assert list(got) == list(state)
        for key, value in state.items():
            assert np.array_equal(got[key], value.numpy())

    def test_training_checkpoint_of_the_pytorch_tutorial(self, tmp_path: Path) -> None:
        """{"epoch", "model_state_dict", "optimizer_state_dict", "loss"}: the optimizer's records are never read."""
        lstm = nn.LSTM(4, 8)
        adam = torch.optim.Adam(lstm.parameters())
        lstm(torch.randn(3, 1, 4))[0].sum().backward()
        adam.step()
        path = saved(
            tmp_path,
            {"epoch": 3, "model_state_dict": lstm.state_dict(), "optimizer_state_dict": adam.state_dict(), "loss": 0.5},
        )
        model_bytes = sum(v.numel() * 4 for v in lstm.state_dict().values())
        got = read_state_dict(path, max_bytes=model_bytes)  # Adam's moments (2x the model) are not counted
        assert list(got) == list(lstm.state_dict())
        for key, value in lstm.state_dict().items():
            assert np.array_equal(got[key], value.numpy())

    @pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
    def test_pickle_protocol_4(self, tmp_path: Path) -> None:
        """STACK_GLOBAL, MEMOIZE, FRAME: torch's own weights_only loader refuses FRAME ("Unsupported operand 149")."""
        path = saved(tmp_path, nn.LSTM(4, 8).state_dict(), pickle_protocol=4)
        with pytest.raises(pickle.UnpicklingError, match="Unsupported operand 149"):
            torch.load(path, weights_only=True)
        assert_same(read_state_dict(path, max_bytes=BUDGET), path, weights_only=False)  # our own file: trusted

    def test_deflated_records(self, tmp_path: Path) -> None:
        path = saved(tmp_path, nn.LSTM(4, 8, num_layers=2).state_dict())
        squeezed = rewrite_zip(path, tmp_path / "deflated.pt", compression=zipfile.ZIP_DEFLATED)
        got = read_state_dict(squeezed, max_bytes=BUDGET)
        assert_same(got, path)

    def test_big_endian_checkpoint(self, tmp_path: Path) -> None:
        path = saved(tmp_path, {"w": torch.randn(3, 4), "n": torch.arange(4)})

        def swap(name: str, data: bytes) -> bytes:
            if name.endswith("/byteorder"):
                return b"big"
            if name.endswith("/data/0"):
                return np.frombuffer(data, "<f4").astype(">f4").tobytes()
            if name.endswith("/data/1"):
                return np.frombuffer(data, "<i8").astype(">i8").tobytes()
            return data

        got = read_state_dict(rewrite_zip(path, tmp_path / "big.pt", change=swap), max_bytes=BUDGET)
        assert_same(got, path)
        assert got["w"].dtype.isnative

    def test_reads_without_importing_torch(self, tmp_path: Path) -> None:
        path = saved(tmp_path, nn.LSTM(16, 32, num_layers=2, bidirectional=True).state_dict())
        child = run_limited(
            "import sys\nfrom conformance.checkpoint import read_state_dict\n"
            f"arrays = read_state_dict({str(path)!r}, max_bytes=1 << 30)\n"
            "print(len(arrays), sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.splitlines()[0] == "16 []"


# --- unsafe pickles: refused, and nothing runs -----------------------------------------------------


class Payload:
    """Unpickling this creates ``marker`` (what a hostile checkpoint would do instead)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class ExecPayload(Payload):
    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


class TestUnsafePickles:
    def test_payload_is_real(self, tmp_path: Path) -> None:
        """The control: plain pickle.loads of the same payload does create the marker."""
        marker = tmp_path / "control"
        pickle.loads(pickle.dumps(Payload(marker)))
        assert marker.exists()

    def test_os_system_in_a_torch_save_file(self, tmp_path: Path) -> None:
        marker = tmp_path / "pwned"
        path = saved(tmp_path, {"weight": torch.ones(2), "evil": Payload(marker)})
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET), UnsafeCheckpointError)
        assert line == (
            f"{path}: refused: the checkpoint needs 'posix.system', not a plain state_dict; nothing was executed"
        )
        assert not marker.exists()
        with pytest.raises(pickle.UnpicklingError):  # torch's own safe loader agrees
            torch.load(path, weights_only=True)
        assert not marker.exists()

    def test_stack_global_protocol_4(self, tmp_path: Path) -> None:
        marker = tmp_path / "pwned"
        data = pickle.dumps(ExecPayload(marker), protocol=4)  # STACK_GLOBAL: names come from the stack
        path = raw_zip(tmp_path / "evil.pt", [stored("archive/data.pkl", data)])
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET), UnsafeCheckpointError)
        assert (
            line
            == f"{path}: refused: the checkpoint needs 'builtins.exec', not a plain state_dict; nothing was executed"
        )
        assert not marker.exists()

    def test_inst_opcode_protocol_0(self, tmp_path: Path) -> None:
        marker = tmp_path / "pwned"
        data = b"(S'touch " + str(marker).encode() + b"'\nios\nsystem\n."
        path = raw_zip(tmp_path / "evil.pt", [stored("archive/data.pkl", data)])
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET), UnsafeCheckpointError)
        assert (
            line == f"{path}: refused: the checkpoint needs 'os.system', not a plain state_dict; nothing was executed"
        )
        assert not marker.exists()

    def test_global_in_wrapper_metadata(self, tmp_path: Path) -> None:
        """Metadata beside a wrapped state_dict is not special: torch.Size there refuses the file."""
        path = saved(tmp_path, {"state_dict": nn.LSTM(2, 3).state_dict(), "shape": torch.Size([2, 3])})
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET), UnsafeCheckpointError)
        assert (
            line == f"{path}: refused: the checkpoint needs 'torch.Size', not a plain state_dict; nothing was executed"
        )

    def test_copyreg_extension(self, tmp_path: Path) -> None:
        path = checkpoint(tmp_path / "ext.pt", Raw(b"\x82\x01"), {})
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET), UnsafeCheckpointError)
        assert line == (
            f"{path}: refused: the checkpoint needs copyreg extension 1, not a plain state_dict; nothing was executed"
        )

    def test_memo_bomb_refused_before_allocation(self, tmp_path: Path) -> None:
        """LONG_BINPUT 2**26: a 9-byte pickle that makes CPython's unpickler allocate and zero 1 GiB."""
        path = checkpoint(tmp_path / "memo.pt", Raw(b"Nr\x00\x00\x00\x04"), {})
        child = run_limited(
            "from conformance.checkpoint import CheckpointError, read_state_dict\n"
            f"try:\n    read_state_dict({str(path)!r}, max_bytes={BUDGET})\nexcept CheckpointError as exc:\n"
            "    print(exc)\n",
            limit=GiB,
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.splitlines()[0] == (
            f"{path}: data.pkl stores memo entry 67108864 after 3 opcodes; corrupt or hostile pickle"
        )
        assert peak_rss_mib(child.stdout) < 200

    def test_allowed_callable_misused(self, tmp_path: Path) -> None:
        bad = Call(Global("torch._utils", "_rebuild_tensor_v2"), ("not a storage", 0, (1,), (1,), False, Ordered(())))
        path = checkpoint(tmp_path / "misuse.pt", Ordered((("w", bad),)), {})
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET))
        assert line == (
            f"{path}: data.pkl rebuilds a tensor from something that is not a storage; not a torch.save checkpoint"
        )

    def test_build_cannot_shadow_dict_methods(self, tmp_path: Path) -> None:
        """BUILD on the OrderedDict sets an instance attribute ``items``; the reader uses dict's own."""
        shadow = {"items": Call(Global("collections", "OrderedDict"), ())}
        state = Ordered((("w", tensor("0", (2,))),), state=shadow)
        path = checkpoint(tmp_path / "shadow.pt", state, {"0": np.ones(2, "f4").tobytes()})
        assert list(read_state_dict(path, max_bytes=BUDGET)) == ["w"]

    def test_negative_stride(self, tmp_path: Path) -> None:
        path = checkpoint(tmp_path / "s.pt", Ordered((("w", tensor("0", (2,), (-1,), offset=1)),)), {"0": bytes(8)})
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET))
        assert line == f"{path}: data.pkl rebuilds a tensor with an invalid offset, size or stride; corrupt checkpoint"

    def test_corrupt_pickle(self, tmp_path: Path) -> None:
        path = raw_zip(tmp_path / "c.pt", [stored("archive/data.pkl", b"\x80\x02\xff")])
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET))
        assert line == f"{path}: corrupt data.pkl (ValueError: at position 2, opcode b'\\xff' unknown)"


# --- what a state_dict may hold --------------------------------------------------------------------


class TestStateDictContents:
    def test_non_tensor_value(self, tmp_path: Path) -> None:
        path = saved(tmp_path, {"weight": torch.ones(2), "epoch": 3})
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET))
        assert line == f"{path}: entry 'epoch' is an int, not a tensor; expected a plain state_dict (names -> tensors)"

    def test_nested_dict(self, tmp_path: Path) -> None:
        path = saved(tmp_path, {"lstm": nn.LSTM(2, 3).state_dict(), "head.weight": torch.ones(2)})
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET))
        assert line == f"{path}: entry 'lstm' is a dict, not a tensor; expected a plain state_dict (names -> tensors)"

    def test_not_a_mapping(self, tmp_path: Path) -> None:
        path = saved(tmp_path, [torch.ones(2)])
        assert refusal(lambda: read_state_dict(path, max_bytes=BUDGET)) == (
            f"{path}: holds a list, not a state_dict (a mapping of names to tensors)"
        )
        path = saved(tmp_path, torch.ones(2), "tensor.pt")
        assert refusal(lambda: read_state_dict(path, max_bytes=BUDGET)) == (
            f"{path}: holds a single tensor, not a state_dict (a mapping of names to tensors)"
        )

    def test_hostile_key_is_escaped_and_bounded(self, tmp_path: Path) -> None:
        key = "a\nb\x1b[31mc" + "x" * 5000
        path = saved(tmp_path, {key: "not a tensor"})
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET))
        assert line.startswith(f"{path}: entry 'a\\nb\\x1b[31mc") and "... (5009 characters) is a str" in line
        assert len(line) < 300

    def test_complex_tensor(self, tmp_path: Path) -> None:
        path = saved(tmp_path, {"w": torch.ones(2, dtype=torch.complex64)})
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET))
        assert line == f"{path}: tensor 'w' is complex64; complex weights are not supported"

    def test_empty_state_dict(self, tmp_path: Path) -> None:
        assert read_state_dict(saved(tmp_path, {}), max_bytes=BUDGET) == {}


# --- memory budget ---------------------------------------------------------------------------------

BIG = (786432, 1024)  # float32: 3 GiB


def big_tensor_checkpoint(path: Path, *, tensor_shape: tuple[int, ...], record_size: int) -> Path:
    """A checkpoint whose central directory declares ``record_size`` bytes for data/0 (none written)."""
    numel = int(np.prod(tensor_shape))
    state = Ordered((("lstm.weight_ih_l0", tensor("0", tensor_shape, numel=numel)),))
    return checkpoint(path, state, {"0": Member("archive/data/0", b"", record_size, 0)})


def limited_read(reader: str, path: Path, limit: int = 3 * GiB // 2) -> tuple[str, int]:
    """Run ``reader(path, max_bytes=2 GiB)`` in a child under RLIMIT_AS; its one-line refusal and peak RSS."""
    child = run_limited(
        f"from conformance.checkpoint import CheckpointError, {reader}\n"
        f"try:\n    {reader}({str(path)!r}, max_bytes={BUDGET})\n    print('read')\n"
        "except CheckpointError as exc:\n    print(exc)\n",
        limit=limit,
    )
    assert child.returncode == 0, child.stderr  # no MemoryError, no traceback
    return child.stdout.splitlines()[0], peak_rss_mib(child.stdout)


class TestMemoryBudget:
    def test_tensor_declaring_3_gib(self, tmp_path: Path) -> None:
        path = big_tensor_checkpoint(tmp_path / "big.pt", tensor_shape=BIG, record_size=3 * GiB)
        line, rss = limited_read("read_state_dict", path)
        assert line == (
            f"{path}: tensor 'lstm.weight_ih_l0' declares 3.0 GiB (shape [786432, 1024], float32), "
            "over the 2.0 GiB budget; refused"
        )
        assert rss < 200

    def test_record_declaring_3_gib_behind_a_small_tensor(self, tmp_path: Path) -> None:
        path = checkpoint(
            tmp_path / "big.pt",
            Ordered((("w", tensor("0", (4,), numel=3 * GiB // 4)),)),
            {"0": Member("archive/data/0", b"", 3 * GiB, 0)},
        )
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET), OverBudgetError)
        assert (
            line
            == f"{path}: zip member 'archive/data/0' declares 3.0 GiB uncompressed, over the 2.0 GiB budget; refused"
        )

    def test_deflate_bomb_in_a_checkpoint(self, tmp_path: Path) -> None:
        """3 GiB of zeros in a 3 MB record: refused from the declared size, never inflated."""
        bomb = Member("archive/data/0", zeros_deflate(3 * GiB), 3 * GiB, 0, zipfile.ZIP_DEFLATED)
        path = checkpoint(tmp_path / "bomb.pt", Ordered((("w", tensor("0", BIG)),)), {"0": bomb})
        assert path.stat().st_size < 4 << 20
        line, rss = limited_read("read_state_dict", path)
        assert line.startswith(f"{path}: tensor 'w' declares 3.0 GiB")
        assert rss < 200

    def test_deflate_bomb_lying_about_its_size(self, tmp_path: Path) -> None:
        """Declares 64 bytes, inflates to 3 GiB: reads stop at 64 bytes and the CRC fails the record."""
        bomb = Member("archive/data/0", zeros_deflate(3 * GiB), 64, 12345, zipfile.ZIP_DEFLATED)
        path = checkpoint(tmp_path / "liar.pt", Ordered((("w", tensor("0", (16,))),)), {"0": bomb})
        line, rss = limited_read("read_state_dict", path)
        assert (
            line == f"{path}: zip member 'archive/data/0' is corrupt (BadZipFile: Bad CRC-32 for file 'archive/data/0')"
        )
        assert rss < 200

    def test_the_bomb_is_real(self, tmp_path: Path) -> None:
        """The control: zipfile's own read() of the same member fails under the limit."""
        bomb = Member("x.npy", zeros_deflate(3 * GiB), 3 * GiB, 0, zipfile.ZIP_DEFLATED)
        path = raw_zip(tmp_path / "bomb.zip", [bomb])
        child = run_limited(f"import zipfile\nzipfile.ZipFile({str(path)!r}).read('x.npy')\n", limit=GiB // 2)
        assert child.returncode != 0 and "MemoryError" in child.stderr

    def test_total_over_budget(self, tmp_path: Path) -> None:
        path = saved(tmp_path, nn.LSTM(16, 32, num_layers=2, bidirectional=True).state_dict())
        largest = 128 * 64 * 4  # weight_ih_l1: [128, 64] float32
        line = refusal(lambda: read_state_dict(path, max_bytes=largest), OverBudgetError)
        assert line == f"{path}: the state_dict's tensors need 148.0 KiB in all, over the 32.0 KiB budget; refused"
        line = refusal(lambda: read_state_dict(path, max_bytes=largest - 1), OverBudgetError)
        assert line == (
            f"{path}: tensor 'weight_ih_l1' declares 32.0 KiB (shape [128, 64], float32), "
            "over the 32.0 KiB budget; refused"
        )

    def test_record_size_mismatch(self, tmp_path: Path) -> None:
        path = checkpoint(tmp_path / "m.pt", Ordered((("w", tensor("0", (12, 4))),)), {"0": bytes(100)})
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET))
        assert line == (
            f"{path}: storage record 'archive/data/0' holds 100 bytes, but its tensors need 192 "
            "(48 float32 values); corrupt checkpoint"
        )

    def test_tensor_beyond_its_storage(self, tmp_path: Path) -> None:
        state = Ordered((("w", tensor("0", (4, 4), offset=2, numel=16)),))
        path = checkpoint(tmp_path / "o.pt", state, {"0": bytes(64)})
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET))
        assert line == f"{path}: tensor 'w' reaches element 17 of storage '0', which holds 16; corrupt checkpoint"

    def test_missing_record(self, tmp_path: Path) -> None:
        path = checkpoint(tmp_path / "r.pt", Ordered((("w", tensor("0", (2,))),)), {})
        line = refusal(lambda: read_state_dict(path, max_bytes=BUDGET))
        assert line == f"{path}: storage record 'archive/data/0' is missing; truncated or corrupt checkpoint"

    def test_truncated_checkpoint(self, tmp_path: Path) -> None:
        path = saved(tmp_path, nn.LSTM(4, 8).state_dict())
        cut = tmp_path / "cut.pt"
        cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        line = refusal(lambda: read_state_dict(cut, max_bytes=BUDGET))
        assert line == f"{cut}: truncated or corrupt zip archive (BadZipFile: File is not a zip file)"


# --- .npz ------------------------------------------------------------------------------------------


class TestNpz:
    def test_matches_np_load(self, tmp_path: Path) -> None:
        arrays = {
            "W": np.random.default_rng(0).standard_normal((1, 32, 4)),
            "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
            "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
            "big_endian": np.arange(4, dtype=">f8"),
            "ints": np.arange(5, dtype=np.int16),
            "mask": np.array([True, False]),
            "__meta__": np.array('{"format": "x"}'),
            "empty": np.zeros((0, 3)),
        }
        for name, writer in (("plain.npz", np.savez), ("compressed.npz", np.savez_compressed)):
            writer(tmp_path / name, **arrays)  # type: ignore[operator]
            got = read_npz(tmp_path / name, max_bytes=BUDGET)
            with np.load(tmp_path / name, allow_pickle=False) as want:
                assert list(got) == list(want.files)
                for key in want.files:
                    assert got[key].dtype == want[key].dtype and np.array_equal(got[key], want[key]), key

    def test_weights_bundle(self, tmp_path: Path) -> None:
        path = tmp_path / "weights.npz"
        save(path, generate(LSTMConfig(4, 8, num_layers=2, direction="bidirectional"), seed=0))
        got = read_weights(path, max_bytes=BUDGET)
        with np.load(path) as want:
            assert {k: want[k].tolist() for k in want.files} == {k: v.tolist() for k, v in got.items()}

    def test_object_dtype(self, tmp_path: Path) -> None:
        path = raw_zip(tmp_path / "o.npz", [stored("o.npy", npy_bytes(np.array([{}, 1], dtype=object)))])
        line = refusal(lambda: read_npz(path, max_bytes=BUDGET))
        assert line == f"{path}: member 'o.npy' holds Python objects (object), which would need pickle; refused"

    def test_complex_dtype(self, tmp_path: Path) -> None:
        np.savez(tmp_path / "c.npz", W=np.ones(3, np.complex128))
        line = refusal(lambda: read_npz(tmp_path / "c.npz", max_bytes=BUDGET))
        assert line == f"{tmp_path / 'c.npz'}: member 'W.npy' is complex128; complex weights are not supported"

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (
                b"GARBAGE!" + bytes(80),
                "ValueError: the magic string is not correct; expected b'\\x93NUMPY', got b'GARBAG'",
            ),
            (b"\x93NUMPY\x09\x00" + bytes(20), "ValueError: .npy format version (9, 0) is not supported"),
            (b"\x93NUMPY\x01\x00\x0a\x00{'descr':1", "TokenError: ('EOF in multi-line statement', (2, 0))"),
            (
                b"\x93NUMPY\x01\x00\xff\xff" + bytes(50),
                "ValueError: EOF: reading array header, expected 65535 bytes got 50",
            ),
        ],
        ids=["magic", "version", "header", "header-length"],
    )
    def test_bad_header(self, tmp_path: Path, data: bytes, reason: str) -> None:
        path = raw_zip(tmp_path / "h.npz", [stored("x.npy", data)])
        line = refusal(lambda: read_npz(path, max_bytes=BUDGET))
        assert line == f"{path}: member 'x.npy' has a bad .npy header ({reason})"

    def test_negative_shape(self, tmp_path: Path) -> None:
        path = raw_zip(tmp_path / "n.npz", [stored("x.npy", npy_header((-1,), "<f8"))])
        assert refusal(lambda: read_npz(path, max_bytes=BUDGET)) == (
            f"{path}: member 'x.npy' declares an invalid shape (-1,); corrupt .npz"
        )

    def test_header_declares_more_than_the_member_holds(self, tmp_path: Path) -> None:
        data = npy_header((100,), "<f8") + bytes(80)
        path = raw_zip(tmp_path / "t.npz", [stored("x.npy", data)])
        line = refusal(lambda: read_npz(path, max_bytes=BUDGET))
        assert line == (
            f"{path}: member 'x.npy' holds 208 bytes, but its header declares shape [100] float64 (128 + 800 bytes); "
            "truncated or corrupt .npz"
        )

    def test_header_declaring_terabytes(self, tmp_path: Path) -> None:
        path = raw_zip(tmp_path / "t.npz", [stored("x.npy", npy_header((1 << 40,), "<f8"))])
        line = refusal(lambda: read_npz(path, max_bytes=BUDGET), OverBudgetError)
        assert line == (
            f"{path}: array 'x' declares 8192.0 GiB (shape [1099511627776], float64), over the 2.0 GiB budget; refused"
        )

    def test_deflate_bomb(self, tmp_path: Path) -> None:
        header = npy_header((3 * GiB // 8,), "<f8")
        bomb = Member("x.npy", zeros_deflate(3 * GiB), len(header) + 3 * GiB, 0, zipfile.ZIP_DEFLATED)
        path = raw_zip(tmp_path / "bomb.npz", [bomb])
        line, rss = limited_read("read_npz", path)
        assert line == f"{path}: zip member 'x.npy' declares 3.0 GiB uncompressed, over the 2.0 GiB budget; refused"
        assert rss < 200

    def test_truncated_zip(self, tmp_path: Path) -> None:
        np.savez(tmp_path / "w.npz", W=np.ones((64, 64)))
        data = (tmp_path / "w.npz").read_bytes()
        (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
        line = refusal(lambda: read_npz(tmp_path / "cut.npz", max_bytes=BUDGET))
        assert line == f"{tmp_path / 'cut.npz'}: truncated or corrupt zip archive (BadZipFile: File is not a zip file)"

    def test_corrupt_member(self, tmp_path: Path) -> None:
        data = npy_bytes(np.ones(4))
        path = raw_zip(tmp_path / "crc.npz", [Member("x.npy", data, len(data), 0)])
        line = refusal(lambda: read_npz(path, max_bytes=BUDGET))
        assert line == f"{path}: zip member 'x.npy' is corrupt (BadZipFile: Bad CRC-32 for file 'x.npy')"

    def test_other_members_and_formats(self, tmp_path: Path) -> None:
        path = raw_zip(tmp_path / "o.npz", [stored("notes.txt", b"hi")])
        assert refusal(lambda: read_npz(path, max_bytes=BUDGET)) == (
            f"{path}: member 'notes.txt' is not an .npy array; not an .npz of arrays"
        )
        pt = saved(tmp_path, {"w": torch.ones(1)})
        assert refusal(lambda: read_npz(pt, max_bytes=BUDGET)) == f"{pt}: is a PyTorch checkpoint, not an .npz archive"
        np.savez(tmp_path / "w.npz", W=np.ones(2))
        assert refusal(lambda: read_state_dict(tmp_path / "w.npz", max_bytes=BUDGET)) == (
            f"{tmp_path / 'w.npz'}: is an .npz archive, not a PyTorch checkpoint"
        )


# --- other files ------------------------------------------------------------------------------------


class TestOtherFormats:
    def test_empty_file(self, tmp_path: Path) -> None:
        path = tmp_path / "W"
        path.write_bytes(b"")
        for read in (read_state_dict, read_npz, read_weights):
            assert refusal(lambda: read(path, max_bytes=BUDGET)) == (  # noqa: B023
                f"{path}: empty file; expected a PyTorch state_dict or .npz"
            )

    def test_legacy_format_falls_back_to_torch(self, tmp_path: Path) -> None:
        state = nn.LSTM(4, 8).state_dict()
        path = saved(tmp_path, state, _use_new_zipfile_serialization=False)
        with pytest.raises(NotAZipCheckpointError) as info:
            read_weights(path, max_bytes=BUDGET)
        assert info.value.kind == "legacy"
        assert str(info.value) == (
            f"{path}: is in the legacy PyTorch format (before 1.6, or _use_new_zipfile_serialization=False), "
            "which this reader does not parse; torch.load(weights_only=True) can read it"
        )
        assert list(torch.load(path, weights_only=True)) == list(state)  # the caller's fallback works

    @pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace/save are deprecated, still shipped
    def test_torchscript_archive(self, tmp_path: Path) -> None:
        path = tmp_path / "scripted.pt"
        torch.jit.save(torch.jit.trace(nn.Linear(2, 3), torch.ones(1, 2)), path)
        with pytest.raises(NotAZipCheckpointError) as info:
            read_state_dict(path, max_bytes=BUDGET)
        assert info.value.kind == "torchscript"
        assert str(info.value) == (
            f"{path}: is a TorchScript archive (torch.jit.save), not a state_dict; "
            "save model.state_dict() with torch.save"
        )

    def test_exported_program_archive(self, tmp_path: Path) -> None:
        path = raw_zip(tmp_path / "m.pt2", [stored("m/archive_format", b"pt2"), stored("m/models/model.json", b"{}")])
        with pytest.raises(NotAZipCheckpointError) as info:
            read_state_dict(path, max_bytes=BUDGET)
        assert info.value.kind == "exported-program"

    @pytest.mark.parametrize(
        ("data", "what"),
        [
            (pickle.dumps({"w": 1}, protocol=2), "a bare pickle (unpickling it could run code; refused)"),
            (npy_bytes(np.ones(2)), "a single .npy array"),
            (b'\x10\x00\x00\x00\x00\x00\x00\x00{"w": {}}      ', "a safetensors file"),
            (b"hello world", "not a zip archive (it starts with b'hello wo')"),
        ],
        ids=["pickle", "npy", "safetensors", "text"],
    )
    def test_not_a_checkpoint(self, tmp_path: Path, data: bytes, what: str) -> None:
        path = tmp_path / "w.pt"
        path.write_bytes(data)
        assert (
            refusal(lambda: read_state_dict(path, max_bytes=BUDGET)) == f"{path}: is {what}, not a PyTorch checkpoint"
        )

    def test_missing_file_and_folder(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope.pt"
        assert refusal(lambda: read_weights(missing, max_bytes=BUDGET)) == f"{missing}: no such file"
        assert refusal(lambda: read_weights(tmp_path, max_bytes=BUDGET)) == f"{tmp_path}: is not a file"

    def test_errors_are_bad_input(self) -> None:
        from exporters.errors import BadInputError

        assert issubclass(CheckpointError, BadInputError) and issubclass(CheckpointError, ValueError)


# --- non-finite values ------------------------------------------------------------------------------


class TestRefuseNonFinite:
    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_refused(self, bad: float) -> None:
        weights = np.zeros((3, 4), np.float32)
        weights[1, 2] = bad
        weights[2, 0] = bad
        line = refusal(lambda: refuse_non_finite("w.pt", {"ok": np.ones(2), "lstm.W": weights}), NonFiniteWeightsError)
        assert (
            line == "w.pt: tensor 'lstm.W' contains NaN or Inf (2 value(s), first at index (1, 2)); refusing to compare"
        )

    def test_finite_and_integer_arrays_pass(self) -> None:
        refuse_non_finite("w.pt", {"w": np.ones(3, np.float16), "n": np.arange(3), "m": np.array([True])})


# --- fuzzing: any mutation is read or refused in one line, never a traceback -----------------------


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("fuzz")
    torch.manual_seed(0)
    torch.save({**nn.LSTM(2, 3).state_dict(), "t": torch.ones(2, 3).t(), "h": torch.ones(2).half()}, folder / "a.pt")
    np.savez_compressed(folder / "b.npz", W=np.ones((2, 3)), n=np.arange(3))
    with zipfile.ZipFile(folder / "a.pt") as zf:
        pickled = zf.read("a/data.pkl")
    return {"pt": (folder / "a.pt").read_bytes(), "npz": (folder / "b.npz").read_bytes(), "pkl": pickled}


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, bytes]:
    """A byte flip, a splice of random bytes, or a truncation of a checkpoint, an .npz, or data.pkl."""
    target = draw(st.sampled_from(["pt", "npz", "pkl"]))
    kind = draw(st.sampled_from(["flip", "splice", "truncate"]))
    return target + ":" + kind, draw(st.binary(min_size=1, max_size=8)) + draw(st.binary(max_size=4))


def mutate(data: bytes, kind: str, noise: bytes, where: int) -> bytes:
    at = where % len(data)
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ (noise[0] or 1)]) + data[at + 1 :]
    if kind == "splice":
        return data[:at] + noise + data[at + len(noise) :]
    return data[:at]


class TestFuzz:
    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(mutation=mutations(), where=st.integers(min_value=0, max_value=1 << 16))
    def test_read_or_one_line_refusal(
        self, tmp_path: Path, small_files: dict[str, bytes], mutation: tuple[str, bytes], where: int
    ) -> None:
        (label, noise) = mutation
        target, kind = label.split(":")
        data = mutate(small_files[target], kind, noise, where)
        path = tmp_path / "w"
        if target == "pkl":  # a valid zip around a mutated pickle: the unpickler sees the damage, not the CRC
            raw_zip(path, [stored("a/data.pkl", data), stored("a/data/0", bytes(4 * 24))])
        else:
            path.write_bytes(data)
        try:
            arrays = read_weights(path, max_bytes=64 << 20)
        except CheckpointError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(f"{path}: ")
        else:
            assert all(isinstance(v, np.ndarray) for v in arrays.values())
