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
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conformance.compare import Tolerance, compare_outputs, default_tolerance, format_mismatch
from conformance.interface import Interface, InterfaceError, read_interface
from conformance.lane import ERROR, FAIL, PASS, SKIP, nothing_checked, placement_problem
from exporters.base import describe_error
from exporters.importers import ImportedModel, import_onnx, load_onnx
from reference.activations import lookup
from reference.config import LMConfig, LSTMConfig
from reference.models import lm_log_probs, run_stack
from reference.weights import (
    IFGO_TO_IOFC,
    IOFC_TO_IFGO,
    LMWeights,
    LSTMWeights,
    from_torch_state_dict,
    load,
    permute_gates,
)

DEFAULT_SEQ_LENS = (1, 7, 16)
DEFAULT_BATCHES = (1, 3)
DEFAULT_RUNTIMES = ("ort-cpu", "ort-cpu-noopt", "ort-cuda", "onnx-reference")


@dataclass(frozen=True)
class CheckOptions:
    seq_lens: Sequence[int] = DEFAULT_SEQ_LENS
    batches: Sequence[int] = DEFAULT_BATCHES
    runtimes: Sequence[str] = DEFAULT_RUNTIMES
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
    results: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.weight_findings) or any(r["status"] in (FAIL, ERROR) for r in self.results)

    @property
    def checked_nothing(self) -> bool:
        """Every lane was skipped: a gate that ran nothing must not pass."""
        return nothing_checked(self.results)


# --- weights -------------------------------------------------------------------------------------


def load_weights(path: Path, imported: ImportedModel) -> LSTMWeights | LMWeights:
    """The user's trained weights: a weights ``.npz`` or a PyTorch checkpoint (``weights_only=True``)."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.suffix == ".npz":
        weights = load(path)
        _refuse_non_finite(path, weights.arrays())
        return _same_kind(path, weights, imported)
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's first line advises weights_only=False (arbitrary code execution); name the actual refusal.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), lines[0] if lines else "")
        reason = reason.split(". ")[0].rstrip(".") + "."  # not the advice to allowlist globals that follows
        raise ValueError(
            f"{path}: refused by torch.load(weights_only=True) (not a plain state_dict): {reason}"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict (a mapping of tensors), got {type(state).__name__}")
    floats = {k: v for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()}
    _refuse_non_finite(path, {k: v.detach().double().numpy() for k, v in floats.items()})
    prefixes = sorted({k[: -len("weight_ih_l0")] for k in state if k.endswith("weight_ih_l0")})
    if len(prefixes) != 1:
        raise ValueError(f"{path}: expected one nn.LSTM in the checkpoint, found {len(prefixes)} ({prefixes})")
    lstm = from_torch_state_dict(state, prefix=prefixes[0])
    if not isinstance(imported.weights, LMWeights):
        return lstm
    vocab = imported.weights.embedding.shape[0]
    arrays = {k: v.detach().double().numpy() for k, v in state.items() if hasattr(v, "detach")}
    # The projection is a [V, D*H] weight with a [V] bias beside it; the embedding is a [V, E] table
    # without one. When E == D*H the shapes alone cannot tell them apart; the bias can.
    proj = [
        k for k, v in arrays.items()
        if v.shape == imported.weights.proj_weight.shape and arrays.get(_bias_key(k), np.empty(0)).shape == (vocab,)
    ]  # fmt: skip
    embedding = [k for k, v in arrays.items() if v.shape == imported.weights.embedding.shape and k not in proj]
    if len(proj) != 1 or len(embedding) != 1:
        raise ValueError(
            f"{path}: cannot tell the embedding [{vocab}, E] and the projection [{vocab}, D*H] (with a [{vocab}] bias) "
            f"apart in the checkpoint (candidates: embedding {embedding}, projection {proj}); "
            "save the weights with reference.weights.save and pass the .npz"
        )
    return LMWeights(arrays[embedding[0]], lstm, arrays[proj[0]], arrays[_bias_key(proj[0])])


def _bias_key(weight_key: str) -> str:
    return weight_key[: -len("weight")] + "bias" if weight_key.endswith("weight") else weight_key + ".bias"


def _same_kind(path: Path, weights: LSTMWeights | LMWeights, imported: ImportedModel) -> LSTMWeights | LMWeights:
    kinds = {LSTMWeights: "an LSTM stack", LMWeights: "a language model"}
    if type(weights) is not type(imported.weights):
        raise ValueError(
            f"{path}: holds the weights of {kinds[type(weights)]}, but the model is {kinds[type(imported.weights)]}"
        )
    return weights


def _refuse_non_finite(path: Path, arrays: dict[str, Any]) -> None:
    """Trained weights holding NaN or Inf make every comparison meaningless: bad input, named."""
    for name, value in arrays.items():
        bad = ~np.isfinite(np.asarray(value, dtype=np.float64))
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{path}: tensor {name!r} contains NaN or Inf ({int(bad.sum())} value(s), first at "
                             f"index {index}); refusing to compare")  # fmt: skip


def diagnose_weights(found: LSTMWeights | LMWeights, trained: LSTMWeights | LMWeights) -> list[str]:
    """How the model's initializers differ from the trained weights, one finding per line."""
    found_stack = found.lstm if isinstance(found, LMWeights) else found
    trained_stack = trained.lstm if isinstance(trained, LMWeights) else trained
    problem = trained_stack.matches(_config_of(found_stack))
    if problem:
        return [f"the model's LSTM does not have the trained weights' shape: {problem}"]
    findings = []
    for k, (a, b) in enumerate(zip(found_stack.layers, trained_stack.layers, strict=True)):
        for name in ("W", "R", "B", "P"):
            x, y = getattr(a, name), getattr(b, name)
            if x is None or y is None:
                if (x is None) != (y is None):
                    findings.append(f"layer {k} {name}: present in only one of model and trained weights")
                continue
            x32, y32 = x.astype(np.float32), y.astype(np.float32)
            if np.array_equal(x32, y32):
                continue
            findings.append(f"layer {k} {name}: {_explain(name, x32, y32)}")
    if isinstance(found, LMWeights) and isinstance(trained, LMWeights):
        for name in ("embedding", "proj_weight", "proj_bias"):
            x, y = getattr(found, name).astype(np.float32), getattr(trained, name).astype(np.float32)
            if x.shape != y.shape or not np.array_equal(x, y):
                findings.append(f"{name}: differs from the trained weights")
    return findings


def _config_of(weights: LSTMWeights) -> LSTMConfig:
    direction = "bidirectional" if weights.num_directions == 2 else "forward"
    return LSTMConfig(
        weights.input_size, weights.hidden_size, weights.num_layers, direction, peepholes=weights.peepholes
    )


def _explain(name: str, found: np.ndarray, trained: np.ndarray) -> str:
    if name in ("W", "R", "B"):
        halves = (
            [(found, trained)]
            if name != "B"
            else [
                (found[:, : found.shape[1] // 2], trained[:, : trained.shape[1] // 2]),
                (found[:, found.shape[1] // 2 :], trained[:, trained.shape[1] // 2 :]),
            ]
        )
        for order, label in ((IOFC_TO_IFGO, "IFGO (PyTorch's order)"), (IFGO_TO_IOFC, "a permuted order")):
            if all(np.array_equal(f, permute_gates(t, order, axis=1)) for f, t in halves):
                return f"gate blocks are in {label}, not ONNX's IOFC: the export did not reorder the gates"
        for perm in itertools.permutations(range(4)):
            if perm != (0, 1, 2, 3) and all(np.array_equal(f, permute_gates(t, perm, axis=1)) for f, t in halves):
                return f"gate blocks permuted {perm} relative to IOFC"
        if name == "B" and np.array_equal(halves[0][0], halves[0][1]) and not np.any(halves[1][0]):
            return "the recurrence bias half Rb is all zero: only one of bias_ih/bias_hh was exported"
    if found.shape[0] == 2 and np.array_equal(found[::-1], trained):
        return "forward and reverse directions are swapped"
    if np.allclose(found, trained.astype(np.float16).astype(np.float32), rtol=0, atol=0):
        return "values are the trained weights rounded to float16"
    diff = np.abs(found.astype(np.float64) - trained.astype(np.float64))
    count = int(np.count_nonzero(diff))
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
    return f"{count} of {diff.size} values differ, greatest by {diff.max():.3g} at index {index}"


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
    _onnx_runtimes_only(options.runtimes)
    imported = import_onnx(model_path)
    iface = read_interface(load_onnx(model_path))
    _pattern_matches(model_path, imported, iface)
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
    cases = [(f"T={t},B={b}", _feeds(imported.config, iface, t, b, rng)) for t, b in shapes]
    cases += [(f"inputs:{p.name}", _user_feeds(p, iface)) for p in options.inputs]
    report.results = _run_runtimes(model_path, imported, weights, iface, cases, options)
    if report.weight_findings:
        report.results.insert(0, _weights_record(model_path, report.weight_findings))
    report.seconds = time.perf_counter() - start
    return report


def _weights_record(model_path: Path, findings: list[str]) -> dict[str, Any]:
    """The initializer comparison as a lane of its own, so every report format shows it."""
    return {
        "id": f"{model_path.name}/user/weights",
        "suite": "check",
        "case": model_path.name,
        "exporter": "user",
        "runtime": "weights",
        "status": FAIL,
        "message": "the model's LSTM initializers differ from the trained weights (--weights):\n"
        + "\n".join(f"- {finding}" for finding in findings),
    }


def _onnx_runtimes_only(runtime_ids: Sequence[str]) -> None:
    from conformance.runtimes import all_runtimes, get_runtime

    for runtime_id in runtime_ids:
        if get_runtime(runtime_id).consumes != "onnx":
            onnx_ids = [r.id for r in all_runtimes() if r.consumes == "onnx"]
            raise ValueError(
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
        raise ValueError(f"{path}: no such file or folder")
    missing = [n for n in iface.roles if n not in feeds]
    if missing:
        raise ValueError(f"{path}: no data for model input(s) {missing} (found: {sorted(feeds)})")
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
            raise ValueError(f"{path}: input {name!r} has dtype {value.dtype}, the model takes {want} tensor")
        declared = iface.input_types.get(name)
        if declared is not None and value.dtype != declared:  # runtimes do not cast: float64 into float32 errors
            raise ValueError(f"{path}: input {name!r} has dtype {value.dtype}, the model takes {declared}")
        if len(dims) != value.ndim or any(
            isinstance(d, int) and d != s for d, s in zip(dims, value.shape, strict=False)
        ):
            raise ValueError(f"{path}: input {name!r} has shape {list(value.shape)}, the model declares {dims}")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise ValueError(f"{path}: input {name!r} contains NaN or Inf; refusing to compare")


def _run_runtimes(
    model_path: Path,
    imported: ImportedModel,
    weights: LSTMWeights | LMWeights,
    iface: Interface,
    cases: list[tuple[str, dict[str, np.ndarray]]],
    options: CheckOptions,
) -> list[dict[str, Any]]:
    from conformance.runtimes import get_runtime
    from exporters.base import OK, Artifact

    artifact = Artifact("user", OK, path=model_path)
    lstm = imported.config.lstm if isinstance(imported.config, LMConfig) else imported.config
    expected = {label: expected_outputs(imported.config, weights, iface, feeds) for label, feeds in cases}
    results = []
    for runtime_id in options.runtimes:
        runtime = get_runtime(runtime_id)
        reason = runtime.unavailable() or _blind_spot(runtime_id, lstm, iface)
        base = {"suite": "check", "exporter": "user", "runtime": runtime_id}
        if reason:
            results.append(model_record(model_path, runtime_id, SKIP, reason))
            continue
        try:
            session = runtime.open(artifact, imported.config, weights)
        except Exception as exc:
            message = f"{runtime_id} could not load the model: {describe_error(exc)}"
            results.append(model_record(model_path, runtime_id, ERROR, message))
            continue
        try:
            lanes = [
                _one(session, runtime_id, label, feeds, expected[label], lstm, iface, options, base, model_path)
                for label, feeds in cases
            ]
            problem = placement_problem(runtime_id, runtime.required_provider, session.placement())
        finally:
            session.close()
        if problem:  # the LSTM ran on another provider: none of these lanes is a result of this runtime
            lanes = [{**r, "status": FAIL, "message": f"{problem}\n\n{r['message']}"} for r in lanes]
        results += lanes
    return results


def model_record(model_path: Path, runtime_id: str, status: str, message: str, *, kind: str = "user") -> dict[str, Any]:
    """A result for the whole model on one runtime (skipped, or not loadable), before any shape ran."""
    return {
        "id": f"{model_path.name}/{kind}/{runtime_id}",
        "suite": "check",
        "case": model_path.name,
        "exporter": "user",
        "runtime": runtime_id,
        "status": status,
        "message": message,
    }


def _one(
    session: Any,
    runtime_id: str,
    label: str,
    feeds: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    lstm: LSTMConfig,
    iface: Interface,
    options: CheckOptions,
    base: dict[str, str],
    model_path: Path,
) -> dict[str, Any]:
    case = f"{model_path.name}[{label}]"
    record: dict[str, Any] = {**base, "id": f"{case}/user/{runtime_id}", "case": case}
    start = time.perf_counter()
    try:
        actual = session.run(feeds)
    except Exception as exc:
        return {**record, "status": ERROR, "message": f"{runtime_id} failed at {label}: {describe_error(exc)}"}
    if "Y" in expected and "Y" in actual:
        expected = {**expected, "Y": _raw_y(expected["Y"], np.asarray(actual["Y"]), lstm, iface.batch_first)}
    tolerances = {
        n: options.tolerance or default_tolerance(str(np.asarray(actual.get(n, 0.0)).dtype)) for n in expected
    }
    axes = {
        n: (1 if iface.batch_first else 0) if r in ("Y", "log_probs", "probs") else None
        for n, r in iface.outputs.items()
    }
    diffs = compare_outputs(
        actual, expected, tolerances, time_axes=axes, padding_masks=_padding(iface, feeds, expected)
    )
    failing = [d for d in diffs if not d.passed]
    record["outputs"] = {d.name: d.to_dict() for d in diffs}
    record["duration_s"] = round(time.perf_counter() - start, 4)
    if failing:
        message = "\n\n".join(format_mismatch(d) for d in failing)
        return {**record, "status": FAIL, "message": f"at {label}:\n{message}"}
    worst = max(diffs, key=lambda d: d.headroom)
    return {**record, "status": PASS, "message": f"worst headroom {worst.headroom:.3g} on {worst.name}"}


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
        case = record["case"]
        if "[T=" not in case or record["status"] == SKIP:
            continue
        steps = int(case.split("[T=", 1)[1].split(",")[0])
        passed_at = per_runtime.setdefault(record["runtime"], {})
        passed_at[steps] = passed_at.get(steps, True) and record["status"] == PASS
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
