"""The one result record: every verdict of every command, typed, frozen and versioned. NumPy-free.

A :class:`Result` is a lane of ``run``, a shape or a node of ``check``, a whole-model verdict, or the
trained-weights comparison. It carries everything a renderer needs (the case's features, the shape that
ran, the runtime's settings, the expected divergence it was settled against), so no renderer reloads a
suite or parses an id. Each kind has one builder below; nothing else writes result dicts.

Files: ``results.json`` is a :class:`ResultDocument` with ``schema_version`` 2. Version-1 files (before
the record model) still load: their records become lane results whose features are read from the id.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from conformance.diffs import OutputDiff
from conformance.status import STATUSES
from exporters.errors import BadInputError

__all__ = [
    "KINDS",
    "LANE",
    "MODEL",
    "NODE",
    "READABLE_VERSIONS",
    "SCHEMA_VERSION",
    "WEIGHTS",
    "Expected",
    "Result",
    "ResultDocument",
    "lane_result",
    "model_result",
    "node_result",
    "shape_label",
    "weights_result",
]

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
LANE, MODEL, NODE, WEIGHTS = "lane", "model", "node", "weights"
KINDS = (LANE, MODEL, NODE, WEIGHTS)
MAX_DEPTH = 64  # nesting a result file may have; deeper is not ours (and would exhaust the stack)


@dataclass(frozen=True)
class Expected:
    """The expected divergence a verdict was settled against (from the case file)."""

    reason: str
    status: str = "fail"
    reference: str | None = None
    output: str = "*"

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "status": self.status, "reference": self.reference, "output": self.output}


@dataclass(frozen=True)
class Result:
    """One verdict. ``id`` is stable across runs (no timestamps); ``kind`` is one of :data:`KINDS`."""

    id: str
    kind: str
    suite: str
    case: str
    exporter: str
    runtime: str
    status: str
    message: str
    features: tuple[str, ...] = ()
    shape: Mapping[str, int] | None = None  # the shape that ran, e.g. {"T": 7, "B": 3}
    node: str | None = None  # the LSTM node's path, for node results
    settings: Mapping[str, Any] = field(default_factory=dict)  # runtime configuration and versions
    artifact: Mapping[str, Any] | None = None  # exporter metadata (status, cached, opset, ops, ...)
    expected: Expected | None = None
    outputs: tuple[OutputDiff, ...] = ()
    placement: Mapping[str, str] = field(default_factory=dict)  # node -> execution provider
    latency: Mapping[str, Any] | None = None  # conformance.timing.Latency.to_dict() + "includes"
    duration_s: float | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)  # kind-specific facts (causes, traceback, ...)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"result {self.id!r}: unknown status {self.status!r}")
        if self.kind not in KINDS:
            raise ValueError(f"result {self.id!r}: unknown kind {self.kind!r}")

    def output(self, name: str) -> OutputDiff | None:
        return next((d for d in self.outputs if d.name == name), None)

    def with_status(self, status: str, message: str) -> Result:
        return replace(self, status=status, message=message)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; empty optional fields are left out."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "outputs":
                value = {d.name: d.to_dict() for d in value}
            elif f.name == "expected":
                value = None if value is None else value.to_dict()
            elif f.name == "features":
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            if value is None or (f.name not in _ALWAYS and value in ({}, [])):
                continue
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "result") -> Result:
        """Inverse of :meth:`to_dict`; also reads version-1 records. Bad data raises :class:`BadInputError`."""
        if not isinstance(data, Mapping):
            raise BadInputError(f"{where}: expected an object, got {type(data).__name__}")
        for key in ("id", "status"):
            if not isinstance(data.get(key), str):
                raise BadInputError(f"{where}: {key!r} must be a string, got {_kind(data.get(key))}")
        where = f"{where} {data['id']!r}"
        if data["status"] not in STATUSES:
            raise BadInputError(f"{where}: unknown status {data['status']!r} (known: {', '.join(STATUSES)})")
        values: dict[str, Any] = {"id": data["id"], "status": data["status"]}
        for key in ("suite", "case", "exporter", "runtime", "message"):
            values[key] = _typed(data, key, str, where, default="")
        values["kind"] = _typed(data, "kind", str, where, default=LANE)
        if values["kind"] not in KINDS:
            raise BadInputError(f"{where}: unknown kind {values['kind']!r} (known: {', '.join(KINDS)})")
        features = _typed(data, "features", list, where, default=None)
        values["features"] = (
            tuple(str(f) for f in features) if features is not None else (feature_from_id(values["case"]),)
        )
        shape = _typed(data, "shape", Mapping, where, default=None)
        if shape is not None:
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in shape.values()):
                raise BadInputError(f"{where}: 'shape' must map names to integers")
            values["shape"] = dict(shape)
        values["node"] = _typed(data, "node", str, where, default=None)
        for key in ("settings", "placement", "detail", "artifact", "latency"):
            if _deeper_than(data.get(key), MAX_DEPTH):
                raise BadInputError(f"{where}: {key!r} is nested more than {MAX_DEPTH} levels deep")
        for key in ("settings", "placement", "detail"):
            values[key] = dict(_typed(data, key, Mapping, where, default={}))
        for key in ("artifact", "latency"):
            value = _typed(data, key, Mapping, where, default=None)
            values[key] = None if value is None else dict(value)
        if "traceback" in data:  # version 1 kept it beside the message
            values["detail"] = {**values["detail"], "traceback": str(data["traceback"])}
        duration = _typed(data, "duration_s", (int, float), where, default=None)
        values["duration_s"] = None if duration is None else float(duration)
        expected = _typed(data, "expected", Mapping, where, default=None)
        if expected is not None:
            reason = expected.get("reason")
            if not isinstance(reason, str):
                raise BadInputError(f"{where}: 'expected.reason' must be a string, got {_kind(reason)}")
            values["expected"] = Expected(
                reason,
                str(expected.get("status", "fail")),
                None if expected.get("reference") is None else str(expected["reference"]),
                str(expected.get("output", "*")),
            )
        outputs = _typed(data, "outputs", Mapping, where, default={})
        try:
            values["outputs"] = tuple(OutputDiff.from_dict(v) for v in outputs.values())
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BadInputError(f"{where}: 'outputs' is not a comparison record ({exc})") from None
        return cls(**values)


# Fields of a document's "run" that decide an exit code or a title, with their type.
_RUN_FIELDS: dict[str, Any] = {
    "interrupted": bool,
    "latency_only": bool,
    "lanes": int,
    "completed": int,
    "wall_seconds": (int, float),
    "command": str,
    "model": str,
}

# "features" is always written: a version-2 record without features (check's) must not read back as a
# version-1 record, whose features are read from its id.
_ALWAYS = frozenset({"id", "kind", "suite", "case", "exporter", "runtime", "status", "message", "features"})


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _typed(data: Mapping[str, Any], key: str, kind: Any, where: str, *, default: Any) -> Any:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        wanted = kind.__name__ if isinstance(kind, type) else "a number"
        raise BadInputError(f"{where}: {key!r} must be {wanted}, got {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadInputError(f"{where}: {key!r} must be finite, got {value}")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects or lists more than ``limit`` levels (iteratively: no stack to exhaust)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (Mapping, list)):
            if depth >= limit:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, Mapping) else item))
    return False


def feature_from_id(case_id: str) -> str:
    """``activation-elu`` -> ``activation``, ``shapes-1l[9-1]`` -> ``shapes``: a version-1 case id's first word."""
    return case_id.split("[", 1)[0].split("-", 1)[0] or case_id


def shape_label(shape: Mapping[str, int]) -> str:
    """``{"T": 7, "B": 3}`` -> ``T=7,B=3``: how ids and messages name a shape."""
    return ",".join(f"{k}={v}" for k, v in shape.items())


# --- builders: one per kind -------------------------------------------------------------------------


def lane_result(
    *, suite: str, case: str, exporter: str, runtime: str, status: str, message: str, **facts: Any
) -> Result:
    """A lane of ``run``: (case, exporter, runtime)."""
    return Result(f"{case}/{exporter}/{runtime}", LANE, suite, case, exporter, runtime, status, message, **facts)


def model_result(
    model: str,
    runtime: str,
    status: str,
    message: str,
    *,
    exporter: str = "user",
    label: str | None = None,
    suite: str = "check",
    **facts: Any,
) -> Result:
    """The whole model on one runtime, at one input (``label``, e.g. ``T=7,B=3``) or before any input ran."""
    case = model if label is None else f"{model}[{label}]"
    return Result(f"{case}/{exporter}/{runtime}", MODEL, suite, case, exporter, runtime, status, message, **facts)


def node_result(
    model: str, node: str, runtime: str, status: str, message: str, *, label: str | None = None, **facts: Any
) -> Result:
    """One LSTM node of a checked graph on one runtime (at one input, when ``label`` is given)."""
    case = model if label is None else f"{model}[{label}]"
    return Result(
        f"{case}/{node.strip('/')}/{runtime}", NODE, "check", case, "user", runtime, status, message, node=node, **facts
    )


def weights_result(model: str, status: str, message: str, **facts: Any) -> Result:
    """The model's weights held against the trained ones (``--weights``)."""
    return Result(f"{model}/user/weights", WEIGHTS, "check", model, "user", "weights", status, message, **facts)


# --- the document -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultDocument:
    """A whole result file: what ran (``run``), where (``environment``), and the verdicts, sorted by id."""

    results: tuple[Result, ...]
    run: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def of(cls, results: Iterable[Result], *, run: Mapping[str, Any], environment: Mapping[str, Any]) -> ResultDocument:
        return cls(tuple(sorted(results, key=lambda r: r.id)), dict(run), dict(environment))

    @property
    def summary(self) -> dict[str, int]:
        return dict(sorted(Counter(r.status for r in self.results).items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "run": dict(self.run),
            "environment": dict(self.environment),
            "summary": self.summary,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str) -> ResultDocument:
        """Read a parsed result file (version 1 or 2); bad structure raises :class:`BadInputError`."""
        version = data.get("schema_version") if isinstance(data, Mapping) else None
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise BadInputError(
                f"{source}: not a conformance result file (schema_version {version!r}, expected "
                f"{' or '.join(map(str, READABLE_VERSIONS))})"
            )
        for key in ("run", "environment"):
            if not isinstance(data.get(key, {}), Mapping):
                raise BadInputError(f"{source}: {key!r} must be an object, got {_kind(data.get(key))}")
        run = data.get("run") or {}
        for key, kind in _RUN_FIELDS.items():  # the fields a verdict or a title is read from
            if run.get(key) is not None:
                _typed(run, key, kind, f"{source}: run", default=None)
        raw = data.get("results")  # an empty run has an empty list; a file without one is not a result file
        if not isinstance(raw, list):
            raise BadInputError(f"{source}: 'results' must be a list, got {_kind(raw)}")
        results = [Result.from_dict(r, where=f"{source}: results[{i}]") for i, r in enumerate(raw)]
        seen: set[str] = set()
        for r in results:
            if r.id in seen:
                raise BadInputError(f"{source}: result {r.id!r} appears twice")
            seen.add(r.id)
        return cls(tuple(results), dict(data.get("run") or {}), dict(data.get("environment") or {}), version)
