"""``conformance export``: one case's model + reference data in the ONNX backend test layout.

The folder holds ``model.onnx`` and ``test_data_set_0/input_N.pb`` /
``output_N.pb`` (TensorProto, in the model's input/output order), the form
ONNX Runtime's ``onnx_test_runner`` and other runtimes' backend-test runners
consume. Outputs are the float64 reference cast to the model's output types.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporters.errors import BadInputError

if TYPE_CHECKING:
    import numpy as np

    from conformance.cases import Case


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write a model + reference test data folder (ONNX backend test layout)",
        description="Export one case's model with one exporter into a self-contained folder: model.onnx and "
        "test_data_set_0/input_*.pb, output_*.pb holding the float64 reference outputs (as float32).",
    )
    p.add_argument("case", help="case id (see `conformance list cases`)")
    p.add_argument("--suite", action="append", help="suite(s) to look the case up in (default: all packaged)")
    p.add_argument("--exporter", default="onnx-native", help="exporter id (default onnx-native)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--no-cache", action="store_true", help="export again instead of using the export cache")


def find_case(case_id: str, suites: list[str] | None) -> Case:
    from conformance.cases import available_suites, load_suite

    names = suites or available_suites()
    for name in names:
        for case in load_suite(name).cases:
            if case.id == case_id:
                return case
    import difflib

    ids = [c.id for name in names for c in load_suite(name).cases]
    close = difflib.get_close_matches(case_id, ids, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise BadInputError(f"unknown case {case_id!r}{hint}; `conformance list cases` shows them")


def write_test_folder(
    model_path: Path, feeds: dict[str, np.ndarray], expected: dict[str, np.ndarray], out: Path
) -> Path:
    """Copy the model and write its inputs/outputs as TensorProto files; return the data-set folder."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path), load_external_data=False)
    data_dir = out / "test_data_set_0"
    for own in (out / "model.onnx", data_dir):  # written in the folder only, never through a link out of it
        if own.is_symlink():
            raise BadInputError(f"{own}: a symbolic link; export writes only its own files, not through links")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_path, out / "model.onnx")
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir()
    initializers = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]
    for k, value_info in enumerate(graph_inputs):
        if value_info.name not in feeds:
            raise BadInputError(f"model input {value_info.name!r} has no data (have: {', '.join(feeds)})")
        tensor = numpy_helper.from_array(np.ascontiguousarray(feeds[value_info.name]), value_info.name)
        (data_dir / f"input_{k}.pb").write_bytes(tensor.SerializeToString())
    for k, value_info in enumerate(model.graph.output):
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type)
        value = np.ascontiguousarray(expected[value_info.name].astype(dtype))
        tensor = numpy_helper.from_array(value, value_info.name)
        (data_dir / f"output_{k}.pb").write_bytes(tensor.SerializeToString())
    return data_dir


def main(args: argparse.Namespace) -> int:
    from conformance.inputs import build, case_weights
    from conformance.lane import export_options
    from exporters.registry import export, get_exporter

    case = find_case(args.case, args.suite)
    exporter = get_exporter(args.exporter)
    if exporter.produces != "onnx":
        raise BadInputError(f"exporter {args.exporter!r} produces a torch module, not an ONNX file")
    weights = case_weights(case)
    artifact = export(case.model, weights, args.exporter, export_options(case), use_cache=not args.no_cache)
    if not artifact.ok:
        print(f"{args.exporter}: {artifact.status}: {artifact.reason}")
        return 1
    assert artifact.path is not None
    data = build(case, weights)
    out = Path(args.out)
    from conformance.lane import as_the_model_takes

    feeds = as_the_model_takes(dict(data.feeds), artifact.meta)  # float16 inputs for a +fp16 model
    data_dir = write_test_folder(artifact.path, feeds, data.expected, out)
    print(f"wrote {out / 'model.onnx'} and {data_dir}/ ({len(list(data_dir.iterdir()))} tensors)")
    return 0
