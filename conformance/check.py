"""``conformance check``: gate a user's exported LSTM model against the float64 reference.

The weights come from the model's own LSTM initializers, or from the
weights the user trained (``.npz`` from ``reference.weights.save`` or a
PyTorch checkpoint loaded with ``weights_only=True``). With trained weights
given, the initializers are first compared with them, and a difference is
named (gate order, swapped directions, a dropped bias half, single weights).
The model then runs on every available ONNX runtime at several sequence
lengths and batch sizes (and on inputs the user supplies), and every output
is compared with the reference. Torch is imported only for checkpoints and
``--against-torch``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conformance import evaluate
from conformance.diffs import Tolerance
from conformance.interface import Interface, InterfaceError, read_interface
from conformance.records import Result, model_result, shape_label, weights_result
from conformance.status import ERROR, FAIL, FAILING, PASS, SKIP, nothing_checked
from conformance.trained_weights import diagnose_weights, load_weights
from exporters.base import describe_error
from exporters.errors import BadInputError
from exporters.importers import ImportedModel, UnmappableGraphError, import_onnx, load_onnx
from reference.activations import lookup
from reference.config import LMConfig, LSTMConfig
from reference.models import lm_log_probs, run_stack
from reference.weights import LMWeights, LSTMWeights

DEFAULT_SEQ_LENS = (1, 7, 16)
DEFAULT_BATCHES = (1, 3)


def onnx_runtime_ids() -> list[str]:
    """Every runtime that runs ONNX files: what ``check`` uses unless ``--runtime`` narrows it."""
    from conformance.runtimes import all_runtimes

    return [r.id for r in all_runtimes() if r.consumes == "onnx"]


@dataclass(frozen=True)
class CheckOptions:
    seq_lens: Sequence[int] = DEFAULT_SEQ_LENS
    batches: Sequence[int] = DEFAULT_BATCHES
    runtimes: Sequence[str] | None = None  # None: every ONNX runtime (onnx_runtime_ids)
    tolerance: Tolerance | None = None
    weights: Path | None = None
    inputs: Sequence[Path] = ()
    seed: int = 0


@dataclass
class CheckReport:
    model: Path
    config: LSTMConfig | LMConfig
    interface: Interface
    weight_findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.weight_findings) or any(r.status in FAILING for r in self.results)

    @property
    def checked_nothing(self) -> bool:
        """Every lane was skipped: a gate that ran nothing must not pass."""
        return nothing_checked(r.status for r in self.results)


# --- running -------------------------------------------------------------------------------------


def _feeds(
    config: LSTMConfig | LMConfig, iface: Interface, steps: int, batch: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Random inputs for every mapped graph input, in the dtypes the graph declares."""
    feeds = _random_feeds(config, iface, steps, batch, rng)
    return {name: value.astype(iface.input_types.get(name, value.dtype), copy=False) for name, value in feeds.items()}


def _random_feeds(
    config: LSTMConfig | LMConfig, iface: Interface, steps: int, batch: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    lstm = config.lstm if isinstance(config, LMConfig) else config
    for name, role in iface.roles.items():
        if role == "tokens":
            assert isinstance(config, LMConfig)
            ids = rng.integers(0, config.vocab_size, size=(steps, batch), dtype=np.int64)
            feeds[name] = np.ascontiguousarray(ids.T) if iface.batch_first else ids
        elif role == "X":
            shape = (batch, steps, lstm.input_size) if iface.batch_first else (steps, batch, lstm.input_size)
            feeds[name] = rng.uniform(-1, 1, shape).astype(np.float32)
        elif role in ("initial_h", "initial_c"):
            state = (lstm.num_layers * lstm.num_directions, batch, lstm.hidden_size)
            feeds[name] = rng.uniform(-1, 1, state).astype(np.float32)
        elif role == "sequence_lens":
            lens = rng.integers(1, steps + 1, size=batch)
            lens[0] = steps
            if batch > 1 and steps > 1:
                lens[-1] = rng.integers(1, steps)  # at least one padded sequence
            feeds[name] = lens.astype(np.int32)
    return feeds


def expected_outputs(
    config: LSTMConfig | LMConfig, weights: LSTMWeights | LMWeights, iface: Interface, feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The reference's value for each mapped graph output, in the output's convention."""
    if isinstance(config, LMConfig):
        assert isinstance(weights, LMWeights)
        lm = LMConfig(config.vocab_size, _with_batch_first(config.lstm, iface.batch_first))
        log_probs = lm_log_probs(lm, weights, feeds[iface.data_input])
        values = {"log_probs": log_probs, "probs": np.exp(log_probs)}
    else:
        assert isinstance(weights, LSTMWeights)
        cfg = _with_batch_first(config, iface.batch_first)
        role = {r: n for n, r in iface.roles.items()}
        out = run_stack(
            cfg,
            weights,
            feeds[iface.data_input],
            initial_h=feeds.get(role.get("initial_h", "")),
            initial_c=feeds.get(role.get("initial_c", "")),
            sequence_lens=feeds.get(role.get("sequence_lens", "")),
        )
        values = {"Y": out.output, "Y_h": out.h_n, "Y_c": out.c_n}
    return {name: values[role] for name, role in iface.outputs.items()}


def _with_batch_first(config: LSTMConfig, batch_first: bool) -> LSTMConfig:
    return dataclasses.replace(config, batch_first=batch_first)


def _raw_y(expected: np.ndarray, actual: np.ndarray, config: LSTMConfig, batch_first: bool) -> np.ndarray:
    """Expected Y in the operator's own rank-4 layout when the model outputs an LSTM node's Y directly."""
    d, h = config.num_directions, config.hidden_size
    if actual.ndim != 4 or expected.ndim != 3:
        return expected
    a, b, _ = expected.shape
    split = expected.reshape(a, b, d, h)
    return split.transpose(0, 2, 1, 3) if not batch_first else split  # [T, D, B, H] or [B, T, D, H]


def run_check(model_path: Path, options: CheckOptions) -> CheckReport:
    """Everything ``conformance check`` does, as data."""
    start = time.perf_counter()
    if options.runtimes is None:
        options = dataclasses.replace(options, runtimes=onnx_runtime_ids())
    _onnx_runtimes_only(options.runtimes or ())
    try:
        imported = import_onnx(model_path)
        iface = read_interface(load_onnx(model_path))
        _pattern_matches(model_path, imported, iface)
    except (UnmappableGraphError, InterfaceError) as exc:
        raise BadInputError(
            f"{model_path}: cannot map the graph to an LSTM stack or language model ({exc}); "
            f"compare against your PyTorch module instead: conformance check {model_path} --against-torch "
            "package.module:attr"
        ) from None
    report = CheckReport(model_path, imported.config, iface)
    weights = imported.weights
    if options.weights is not None:
        trained = load_weights(options.weights, imported)
        report.weight_findings = diagnose_weights(imported.weights, trained)
        weights = trained
    for name, dims in iface.input_dims.items():
        static = [d for d in dims[:2] if isinstance(d, int)]
        if static and iface.roles.get(name) in ("X", "tokens"):
            report.notes.append(f"input {name!r} declares fixed dims {dims}: only those sizes can be checked")
    shapes = _shapes(iface, options)
    baked = _baked_sequence_length(iface)
    if baked is not None:
        name, steps = baked
        report.notes.append(
            f"output {name!r} declares a fixed sequence length {steps} while input {iface.data_input!r} is dynamic; "
            f"also checking T={steps}"
        )
        batches = sorted({b for _, b in shapes})
        shapes += [(steps, b) for b in batches if (steps, b) not in shapes]
    rng = np.random.default_rng(options.seed)
    cases = [(Shape({"T": t, "B": b}), _feeds(imported.config, iface, t, b, rng)) for t, b in shapes]
    cases += [(Shape(label=f"inputs:{p.name}"), _user_feeds(p, iface)) for p in options.inputs]
    report.results = _run_runtimes(model_path, imported, weights, iface, cases, options)
    if report.weight_findings:
        message = "the model's LSTM initializers differ from the trained weights (--weights):\n" + "\n".join(
            f"- {finding}" for finding in report.weight_findings
        )
        report.results.insert(0, weights_result(model_path.name, FAIL, message))
    report.seconds = time.perf_counter() - start
    return report


@dataclass(frozen=True)
class Shape:
    """The input one check ran at: sizes (``{"T": 7, "B": 3}``) or a label (``inputs:batch.npz``)."""

    sizes: dict[str, int] | None = None
    label: str = ""

    def __str__(self) -> str:
        return shape_label(self.sizes) if self.sizes else self.label


def _onnx_runtimes_only(runtime_ids: Sequence[str]) -> None:
    from conformance.runtimes import get_runtime

    for runtime_id in runtime_ids:
        if get_runtime(runtime_id).consumes != "onnx":
            onnx_ids = onnx_runtime_ids()
            raise BadInputError(
                f"--runtime {runtime_id}: it does not run ONNX files; check runs on: {', '.join(onnx_ids)}"
            )


def _pattern_matches(model_path: Path, imported: ImportedModel, iface: Interface) -> None:
    """The traced outputs must fit what the importer recognised (stack vs language model)."""
    lm = isinstance(imported.config, LMConfig)
    softmax = [name for name, role in iface.outputs.items() if role in ("log_probs", "probs")]
    if softmax and not lm:
        raise InterfaceError(
            f"output {softmax[0]!r} is a (Log)Softmax after the LSTMs, but no embedding Gather feeds them: "
            "neither a bare LSTM stack nor the language-model pattern"
        )
    if lm and iface.tokens is False:
        raise InterfaceError("an embedding feeds the LSTMs but no graph input holds the token ids")


def _blind_spot(runtime_id: str, config: LSTMConfig, iface: Interface) -> str | None:
    """Why onnx.reference cannot judge this model: it ignores these LSTM features (reference/SEMANTICS.md)."""
    if runtime_id != "onnx-reference":
        return None
    ignored = []
    if "sequence_lens" in iface.roles.values():
        ignored.append("sequence_lens")
    if config.clip is not None:
        ignored.append("clip")
    if config.input_forget:
        ignored.append("input_forget")
    defaults = ["Sigmoid", "Tanh", "Tanh"] * config.num_directions
    if config.activations is not None and [lookup(a).name for a in config.activations] != defaults:
        ignored.append("activations")
    if config.activation_alpha or config.activation_beta:
        ignored.append("activation_alpha/beta")
    if not ignored:
        return None
    return f"onnx.reference's LSTM ignores {', '.join(ignored)}, which this model uses (reference/SEMANTICS.md)"


def _baked_sequence_length(iface: Interface) -> tuple[str, int] | None:
    """A time-axis output dim fixed to a number while the sequence input's is symbolic."""
    t_axis = 1 if iface.batch_first else 0
    dims = iface.input_dims.get(iface.data_input, [])
    if len(dims) <= t_axis or isinstance(dims[t_axis], int):
        return None
    for name, role in iface.outputs.items():
        out = iface.output_dims.get(name, [])
        fixed = out[t_axis] if len(out) > t_axis else None
        if role in ("Y", "log_probs", "probs") and isinstance(fixed, int):
            return name, fixed
    return None


def _shapes(iface: Interface, options: CheckOptions) -> list[tuple[int, int]]:
    dims = iface.input_dims.get(iface.data_input, [])
    t_axis, b_axis = (1, 0) if iface.batch_first else (0, 1)
    fixed_t, fixed_b = (dims[a] if len(dims) > a else None for a in (t_axis, b_axis))
    seq_lens = [fixed_t] if isinstance(fixed_t, int) else list(options.seq_lens)
    batches = [fixed_b] if isinstance(fixed_b, int) else list(options.batches)
    return [(t, b) for t in seq_lens for b in batches]


def _user_feeds(path: Path, iface: Interface) -> dict[str, np.ndarray]:
    """Inputs from an ``.npz`` (keys = input names) or an ONNX test-data folder of ``input_N.pb``."""
    if path.is_dir():
        import onnx
        from onnx import numpy_helper

        feeds = {}
        for pb in sorted(path.glob("input_*.pb")):
            tensor = onnx.TensorProto()
            tensor.ParseFromString(pb.read_bytes())
            feeds[tensor.name] = numpy_helper.to_array(tensor)
    elif path.is_file():
        with np.load(path, allow_pickle=False) as data:
            feeds = {k: data[k] for k in data.files}
    else:
        raise BadInputError(f"{path}: no such file or folder")
    missing = [n for n in iface.roles if n not in feeds]
    if missing:
        raise BadInputError(f"{path}: no data for model input(s) {missing} (found: {sorted(feeds)})")
    _check_user_feeds(path, iface, feeds)
    return {name: feeds[name] for name in iface.roles}


def _check_user_feeds(path: Path, iface: Interface, feeds: dict[str, np.ndarray]) -> None:
    for name, dims in iface.input_dims.items():
        if name not in feeds:
            continue
        value = feeds[name]
        want = "an integer" if iface.roles.get(name) in ("tokens", "sequence_lens") else "a float"
        kind_ok = value.dtype.kind in "iu" if want == "an integer" else value.dtype.kind == "f"
        if not kind_ok:
            raise BadInputError(f"{path}: input {name!r} has dtype {value.dtype}, the model takes {want} tensor")
        declared = iface.input_types.get(name)
        if declared is not None and value.dtype != declared:  # runtimes do not cast: float64 into float32 errors
            raise BadInputError(f"{path}: input {name!r} has dtype {value.dtype}, the model takes {declared}")
        if len(dims) != value.ndim or any(
            isinstance(d, int) and d != s for d, s in zip(dims, value.shape, strict=False)
        ):
            raise BadInputError(f"{path}: input {name!r} has shape {list(value.shape)}, the model declares {dims}")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise BadInputError(f"{path}: input {name!r} contains NaN or Inf; refusing to compare")


def _run_runtimes(
    model_path: Path,
    imported: ImportedModel,
    weights: LSTMWeights | LMWeights,
    iface: Interface,
    cases: list[tuple[Shape, dict[str, np.ndarray]]],
    options: CheckOptions,
) -> list[Result]:
    from conformance.runtimes import get_runtime
    from exporters.base import OK, Artifact

    artifact = Artifact("user", OK, path=model_path)
    lstm = imported.config.lstm if isinstance(imported.config, LMConfig) else imported.config
    expected = [expected_outputs(imported.config, weights, iface, feeds) for _, feeds in cases]
    results = []
    for runtime_id in options.runtimes or ():
        runtime = get_runtime(runtime_id)
        reason = runtime.unavailable() or _blind_spot(runtime_id, lstm, iface)
        if reason:
            results.append(model_result(model_path.name, runtime_id, SKIP, reason))
            continue
        try:
            session = runtime.open(artifact, imported.config, weights)
        except Exception as exc:
            message = f"{runtime_id} could not load the model: {describe_error(exc)}"
            results.append(model_result(model_path.name, runtime_id, ERROR, message))
            continue
        settings = runtime.settings()
        try:
            lanes = [
                _one(session, runtime_id, shape, feeds, want, lstm, iface, options, model_path.name, settings)
                for (shape, feeds), want in zip(cases, expected, strict=True)
            ]
            problem = evaluate.placement_problem(runtime_id, runtime.required_provider, session.placement())
        finally:
            session.close()
        if problem:  # the LSTM ran on another provider: none of these lanes is a result of this runtime
            lanes = [r.with_status(FAIL, f"{problem}\n\n{r.message}") for r in lanes]
        results += lanes
    return results


def _one(
    session: Any,
    runtime_id: str,
    shape: Shape,
    feeds: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    lstm: LSTMConfig,
    iface: Interface,
    options: CheckOptions,
    model: str,
    settings: dict[str, Any],
) -> Result:
    """One input on one runtime, through the evaluator."""
    start = time.perf_counter()
    facts: dict[str, Any] = {"shape": shape.sizes, "settings": settings}
    actual = evaluate.run(session, feeds, runtime_id, where=str(shape))
    if isinstance(actual, evaluate.Verdict):
        return model_result(model, runtime_id, actual.status, actual.message, label=str(shape), **facts)
    if "Y" in expected and "Y" in actual:
        expected = {**expected, "Y": _raw_y(expected["Y"], np.asarray(actual["Y"]), lstm, iface.batch_first)}
    axes = {
        n: (1 if iface.batch_first else 0) if r in ("Y", "log_probs", "probs") else None
        for n, r in iface.outputs.items()
    }
    verdict = evaluate.judge(
        actual,
        expected,
        evaluate.tolerances(expected, actual, lambda name: options.tolerance),
        time_axes=axes,
        padding_masks=_padding(iface, feeds, expected),
        where=f"at {shape}",
    )
    facts["duration_s"] = round(time.perf_counter() - start, 4)
    return model_result(
        model, runtime_id, verdict.status, verdict.message, label=str(shape), outputs=verdict.outputs, **facts
    )


def _padding(iface: Interface, feeds: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Where Y must be exactly zero: time steps past each sequence's length."""
    lens_input = iface.input_for("sequence_lens")
    if lens_input is None or lens_input not in feeds:
        return {}
    lens = np.asarray(feeds[lens_input], dtype=np.int64)
    masks = {}
    for name, role in iface.outputs.items():
        if role != "Y" or name not in expected:
            continue
        value = expected[name]
        t_axis = 1 if iface.batch_first else 0
        b_axis = 0 if iface.batch_first else (2 if value.ndim == 4 else 1)
        steps = value.shape[t_axis]
        padded = np.arange(steps)[:, None] >= lens[None, :]  # [T, B]
        shape = [1] * value.ndim
        shape[t_axis], shape[b_axis] = steps, len(lens)
        masks[name] = (padded.T if t_axis > b_axis else padded).reshape(shape)
    return masks


def diagnose(report: CheckReport) -> list[str]:
    """Causes worth naming, read off the weights and the pattern of failures across shapes.

    A baked sequence length is blamed only when every runtime that ran fails at
    the same lengths and passes at the others.
    """
    causes = list(report.weight_findings)
    per_runtime: dict[str, dict[int, bool]] = {}
    for record in report.results:
        if record.shape is None or "T" not in record.shape or record.status == SKIP:
            continue
        steps = record.shape["T"]
        passed_at = per_runtime.setdefault(record.runtime, {})
        passed_at[steps] = passed_at.get(steps, True) and record.status == PASS
    patterns = {
        (tuple(sorted(t for t, ok in p.items() if ok)), tuple(sorted(t for t, ok in p.items() if not ok)))
        for p in per_runtime.values()
    }
    if len(patterns) == 1:
        good, bad = next(iter(patterns))
        if good and bad:
            causes.append(
                f"fails at sequence length(s) {', '.join(map(str, bad))} but passes at {', '.join(map(str, good))} "
                "on every runtime: the export likely baked its example sequence length into the graph (a known "
                "torch.onnx dynamo exporter bug: a Reshape to the example length)"
            )
    return causes
