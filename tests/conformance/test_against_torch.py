"""``check --against-torch``: real PyTorch modules and their ONNX exports, right and wrong.

Which axis is time and which batch, fixed-shape exports, token inputs across the whole vocabulary, and
the three ways to name the module (``module:attr``, a TorchScript ``.pt``, an ExportedProgram ``.pt2``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conformance.against_torch import against_torch, plan
from conformance.cli import main
from exporters.errors import BadInputError

REPO = Path(__file__).resolve().parents[2]
INPUT, HIDDEN, VOCAB, STEPS = 4, 6, 40, 5
ORT = ["ort-cpu"]

# Importable as ``at_models`` (module:attr). The factories' modules record the shape of every input they get.
MODELS = f"""
import torch

SEEN = []


class Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM({INPUT}, {HIDDEN}, batch_first=True)
        self.out = torch.nn.Linear({HIDDEN}, 3)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.out(y)


class LM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding({VOCAB}, 5)
        self.lstm = torch.nn.LSTM(5, {HIDDEN}, batch_first=True)
        self.out = torch.nn.Linear({HIDDEN}, {VOCAB})

    def forward(self, tokens):
        y, _ = self.lstm(self.embed(tokens))
        return torch.log_softmax(self.out(y), dim=-1)


class Recorder(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        SEEN.append(tuple(x.shape))
        return self.inner(x)


def tagger():
    torch.manual_seed(0)
    return Recorder(Tagger())


def lm():
    torch.manual_seed(1)
    return Recorder(LM())
"""


def export(module: Any, path: Path, example: Any, dynamic: dict[int, str] | None) -> Path:
    """``torch.onnx.export(dynamo=False)``; ``dynamic`` names the input's (and output's) dynamic axes."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": dynamic, "y": dynamic} if dynamic else None,
        )
    return path


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModuleType, Path]]:
    """``at_models`` importable, and a folder of exports of its modules."""
    import importlib

    import torch

    folder = tmp_path_factory.mktemp("against_torch")
    (folder / "at_models.py").write_text(MODELS)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        models = importlib.import_module("at_models")
        batch_first = {0: "d0", 1: "d1"}  # names that say nothing: the module must tell the layout
        export(models.tagger(), folder / "tagger.onnx", torch.randn(2, STEPS, INPUT), batch_first)
        export(models.tagger(), folder / "fixed.onnx", torch.randn(2, STEPS, INPUT), None)
        tokens = torch.zeros(2, STEPS, dtype=torch.long)
        export(models.lm(), folder / "lm.onnx", tokens, {0: "batch", 1: "seq"})
        yield models, folder
        patch.delitem(sys.modules, "at_models")


@pytest.fixture
def seen(zoo: tuple[ModuleType, Path]) -> list[tuple[int, ...]]:
    """The input shapes the modules are called with from now on."""
    recorded: list[tuple[int, ...]] = zoo[0].SEEN
    recorded.clear()
    return recorded


def summary(results: list[Any]) -> list[tuple[str, str]]:
    return [(r.id, r.status) for r in results]


class TestLayout:
    def test_batch_first_module_is_fed_batch_first_and_labelled_as_fed(
        self, zoo: tuple[ModuleType, Path], seen: list[tuple[int, ...]]
    ) -> None:
        path = zoo[1] / "tagger.onnx"
        results = against_torch(path, "at_models:tagger", seq_lens=(16, 7), batches=(1, 3), runtimes=ORT)
        assert summary(results) == [
            ("tagger.onnx[T=16,B=1]/torch/ort-cpu", "pass"),
            ("tagger.onnx[T=16,B=3]/torch/ort-cpu", "pass"),
            ("tagger.onnx[T=7,B=1]/torch/ort-cpu", "pass"),
            ("tagger.onnx[T=7,B=3]/torch/ort-cpu", "pass"),
        ]
        assert seen == [(1, 16, INPUT), (3, 16, INPUT), (1, 7, INPUT), (3, 7, INPUT)]
        layout = "batch-first (the module's nn.LSTM has batch_first=True)"
        assert {r.detail["layout"] for r in results} == {layout}
        assert results[0].message == f"matches the PyTorch module; inputs {layout}"
        assert [r.shape for r in results[:2]] == [{"T": 16, "B": 1}, {"T": 16, "B": 3}]

    def test_without_a_module_rnn_the_dim_names_tell(self, zoo: tuple[ModuleType, Path]) -> None:
        planned = plan(onnx.load(str(zoo[1] / "lm.onnx")), None, (7,), (3,))
        assert str(planned.layout) == "batch-first (x's axis 0 is named 'batch')"
        [(shape, feeds)] = planned.cases
        assert shape == {"T": 7, "B": 3} and feeds["x"].shape == (3, 7)

    def test_without_module_or_names_the_graphs_lstm_node_tells(self, zoo: tuple[ModuleType, Path]) -> None:
        planned = plan(onnx.load(str(zoo[1] / "tagger.onnx")), None, (7,), (3,))
        assert str(planned.layout) == "batch-first (the graph's LSTM node)"
        assert planned.cases[0][1]["x"].shape == (3, 7, INPUT)


class TestFixedShape:
    def test_a_fixed_shape_runs_once_labelled_as_it_ran(
        self, zoo: tuple[ModuleType, Path], seen: list[tuple[int, ...]]
    ) -> None:
        path = zoo[1] / "fixed.onnx"
        results = against_torch(path, "at_models:tagger", seq_lens=(1, 7, 16), batches=(1, 3), runtimes=ORT)
        assert summary(results) == [("fixed.onnx[T=5,B=2]/torch/ort-cpu", "pass")]
        assert seen == [(2, STEPS, INPUT)]


def corrupt_embedding_row(source: Path, target: Path, row: int) -> Path:
    model = onnx.load(str(source))
    tables = {t.name: t for t in model.graph.initializer}
    [gather] = [n for n in model.graph.node if n.op_type == "Gather" and n.input[0] in tables]
    table = tables[gather.input[0]]
    values = numpy_helper.to_array(table).copy()
    values[row] += 0.5
    table.CopyFrom(numpy_helper.from_array(values, table.name))
    onnx.save(model, str(target))
    return target


class TestTokens:
    def test_the_right_lm_passes(self, zoo: tuple[ModuleType, Path]) -> None:
        results = against_torch(zoo[1] / "lm.onnx", "at_models:lm", seq_lens=(1, 7, 16), batches=(1, 3), runtimes=ORT)
        assert {r.status for r in results} == {"pass"} and len(results) == 6

    @pytest.mark.parametrize("row", [0, 23, VOCAB - 1])
    def test_one_corrupted_embedding_row_fails(self, zoo: tuple[ModuleType, Path], tmp_path: Path, row: int) -> None:
        path = corrupt_embedding_row(zoo[1] / "lm.onnx", tmp_path / "lm.onnx", row)
        results = against_torch(path, "at_models:lm", seq_lens=(1, 7, 16), batches=(1, 3), runtimes=ORT)
        assert "fail" in {r.status for r in results}
        assert "Tensor-likes are not close!" in next(r.message for r in results if r.status == "fail")

    def test_feeds_cover_the_vocabulary_and_each_holds_its_ends(self, zoo: tuple[ModuleType, Path]) -> None:
        models, folder = zoo
        planned = plan(onnx.load(str(folder / "lm.onnx")), models.lm(), (1, 7, 16), (1, 3))
        tokens = [feeds["x"] for _, feeds in planned.cases]
        assert set(np.concatenate([t.ravel() for t in tokens]).tolist()) == set(range(VOCAB))
        assert all({0, VOCAB - 1} <= set(t.ravel().tolist()) for t in tokens if t.size >= 2)
        assert all(t.dtype == np.int64 for t in tokens)

    def test_the_vocabulary_comes_from_the_graph_without_a_module(self, zoo: tuple[ModuleType, Path]) -> None:
        planned = plan(onnx.load(str(zoo[1] / "lm.onnx")), None, (16,), (3,))
        assert set(planned.cases[0][1]["x"].ravel().tolist()) == set(range(VOCAB))


class TestFiles:
    def test_torchscript_file(self, zoo: tuple[ModuleType, Path], tmp_path: Path) -> None:
        import torch

        models, folder = zoo
        with warnings.catch_warnings():  # torch.jit.script is deprecated; users' files are still TorchScript
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.script(models.tagger().inner), str(tmp_path / "tagger.pt"))
        results = against_torch(folder / "tagger.onnx", str(tmp_path / "tagger.pt"), seq_lens=(7,), batches=(1, 3),
                                runtimes=ORT)  # fmt: skip
        assert [r.status for r in results] == ["pass", "pass"]
        assert results[0].detail["layout"] == "batch-first (the module's nn.LSTM has batch_first=True)"

    def test_exported_program_file(self, zoo: tuple[ModuleType, Path], tmp_path: Path) -> None:
        import torch

        models, folder = zoo
        example = (torch.zeros(2, STEPS, dtype=torch.long),)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(models.lm().inner, example, dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, str(tmp_path / "lm.pt2"))
        results = against_torch(folder / "lm.onnx", str(tmp_path / "lm.pt2"), seq_lens=(STEPS, 7), batches=(1, 3),
                                runtimes=ORT)  # fmt: skip
        assert summary(results) == [
            ("lm.onnx[T=5,B=1]/torch/ort-cpu", "pass"),
            ("lm.onnx[T=5,B=3]/torch/ort-cpu", "pass"),
            ("lm.onnx[T=7,B=1]/torch/ort-cpu", "error"),  # the program was exported for 5 steps only
            ("lm.onnx[T=7,B=3]/torch/ort-cpu", "error"),
        ]
        assert results[2].message.startswith("the PyTorch module failed at T=7,B=1: ")
        assert results[0].detail["layout"] == "batch-first (x's axis 0 is named 'batch')"

    def test_a_state_dict_is_not_a_module(self, zoo: tuple[ModuleType, Path], tmp_path: Path) -> None:
        import torch

        path = tmp_path / "weights.pt"
        torch.save(zoo[0].tagger().state_dict(), str(path))
        with pytest.raises(BadInputError) as info:
            against_torch(zoo[1] / "tagger.onnx", str(path), seq_lens=(1,), batches=(1,), runtimes=ORT)
        assert str(info.value) == f"{path}: a state_dict, not a module: pass it with --weights, or give module:attr"

    def test_a_file_that_is_not_torchscript(self, zoo: tuple[ModuleType, Path], tmp_path: Path) -> None:
        path = tmp_path / "junk.pt"
        path.write_bytes(b"not a zip")
        with pytest.raises(BadInputError) as info:
            against_torch(zoo[1] / "tagger.onnx", str(path), seq_lens=(1,), batches=(1,), runtimes=ORT)
        assert str(info.value) == (
            f"{path}: not a TorchScript module saved by torch.jit.save (RuntimeError: PytorchStreamReader failed "
            "reading zip archive: not a ZIP archive); for a pickled module, give module:attr"
        )

    def test_a_file_that_is_not_an_exported_program(self, zoo: tuple[ModuleType, Path], tmp_path: Path) -> None:
        path = tmp_path / "junk.pt2"
        path.write_bytes(b"not a zip")
        with pytest.raises(BadInputError, match=r"^\S*junk\.pt2: not an ExportedProgram saved by torch\.export\.save"):
            against_torch(zoo[1] / "tagger.onnx", str(path), seq_lens=(1,), batches=(1,), runtimes=ORT)

    def test_a_missing_file(self, zoo: tuple[ModuleType, Path], tmp_path: Path) -> None:
        path = tmp_path / "missing.pt"
        with pytest.raises(BadInputError) as info:
            against_torch(zoo[1] / "tagger.onnx", str(path), seq_lens=(1,), batches=(1,), runtimes=ORT)
        assert str(info.value) == f"--against-torch: {path}: no such file"


class TestCli:
    def test_json_report_is_written(
        self, zoo: tuple[ModuleType, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        report = tmp_path / "check.json"
        argv = ["check", str(zoo[1] / "fixed.onnx"), "--against-torch", "at_models:tagger", "--json", str(report)]
        assert main([*argv, "--runtime", "ort-cpu"]) == 0, capsys.readouterr().out
        document = json.loads(report.read_text())
        assert document["run"]["against_torch"] == "at_models:tagger"
        [result] = document["results"]
        assert (result["id"], result["status"], result["shape"]) == (
            "fixed.onnx[T=5,B=2]/torch/ort-cpu",
            "pass",
            {"T": 5, "B": 2},
        )
        assert result["detail"] == {"layout": "batch-first (the module's nn.LSTM has batch_first=True)"}

    def test_importing_it_does_not_import_torch(self) -> None:
        script = "import sys, conformance.against_torch; assert 'torch' not in sys.modules"
        proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
