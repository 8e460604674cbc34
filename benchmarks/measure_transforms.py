"""Measure what each deployment transform costs in accuracy: the error distributions its budget is set from.

Usage: ``python benchmarks/measure_transforms.py [--quick] [--margin 2] [--json OUT]``

Every configuration is exported by ``onnx-native`` at opset 21, transformed through the registry exactly as a
lane does (``onnx-native+fp16`` ...), run on ONNX Runtime's CPU provider, and compared with the float64
reference on the *original* weights. Opset 21: at the newest opset (28) ONNX Runtime 1.32 has no
DequantizeLinear kernel, which int8-dynamic puts after a language model's embedding; the numbers are the
transform's, not the exporter's. The grid:

- LSTM stacks: (input, hidden) in (4, 8), (16, 32), (64, 128); 1 and 2 layers; forward, reverse and
  bidirectional; torch-default and saturating weights; with and without initial states; T = 16 and 64,
  B = 3; the weights' seed is the configuration's index mod 5 (0-4).
- Language models: (vocab, embedding, hidden) (28, 16, 32) and (64, 32, 64); 1 and 2 layers; torch-default
  and saturating weights; random and corpus tokens; T = 24 and 64, B = 3; and the trained model
  (cases/data/lm-trained.npz) on random and corpus tokens at T = 24 and 256 with input seeds 0-4.

Printed per transform and output: the runs, then the median, p99 and max over runs of each run's max abs
error ``max |a - e|``, of its max rel error ``max |a - e| / |e|`` over elements with ``|e| >= 0.01``, and of
``need = max |a - e| / (1 + |e|)``, the smallest atol = rtol that run passes at; the worst run; and the
budget ``margin x max need`` rounded up to 1, 2 or 5 x 10^k (the BUDGETS table of exporters/transforms.py).
A script, not a test: it prints.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from conformance import corpus
from conformance.lane import as_the_model_takes
from exporters.base import ExportOptions
from exporters.registry import export
from exporters.transforms import TRANSFORMS
from reference.config import LMConfig, LSTMConfig
from reference.models import lm_log_probs, run_stack
from reference.weights import LMWeights, LSTMWeights, generate, generate_lm, load

OPSET = 21
REL_FLOOR = 0.01  # max rel error is taken over elements with |expected| >= this (near 0 it means nothing)
# The budgets come from these recipes. Saturating weights (U(-4, 4)) are ill-conditioned: float32 rounding
# alone moves their log_probs by 1.9e-4 (cases/lm.toml), and a transform's rounding changes their outputs
# wholesale; they are measured and printed against the budget, not used to set it.
BUDGET_RECIPES = ("torch-default", "trained")
BUDGETED = "torch-default and trained weights (the budget)"


@dataclass(frozen=True)
class Config:
    label: str
    model: LSTMConfig | LMConfig
    weights: LSTMWeights | LMWeights
    feeds: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    recipe: str
    initial_states: bool = False


def stack_configs(quick: bool) -> Iterator[Config]:
    sizes = [(4, 8), (16, 32)] if quick else [(4, 8), (16, 32), (64, 128)]
    grid = itertools.product(
        sizes, (1, 2), ("forward", "reverse", "bidirectional"), ("torch-default", "saturating"), (False, True), (16, 64)
    )
    for index, ((i, h), layers, direction, recipe, states, steps) in enumerate(grid):
        if quick and index % 4:
            continue
        seed, batch = index % 5, 3
        config = LSTMConfig(input_size=i, hidden_size=h, num_layers=layers, direction=direction)
        weights = generate(config, seed=seed, recipe=recipe)
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1, 1, (steps, batch, i)).astype(np.float32)
        feeds = {"X": x}
        if states:
            shape = (layers * config.num_directions, batch, h)
            feeds["initial_h"] = rng.uniform(-1, 1, shape).astype(np.float32)
            feeds["initial_c"] = rng.uniform(-1, 1, shape).astype(np.float32)
        out = run_stack(config, weights, x, initial_h=feeds.get("initial_h"), initial_c=feeds.get("initial_c"))
        label = f"stack I={i} H={h} L={layers} {direction} {recipe}{' states' if states else ''} T={steps} seed={seed}"
        expected = {"Y": out.output, "Y_h": out.h_n, "Y_c": out.c_n}
        yield Config(label, config, weights, feeds, expected, recipe, states)


def _tokens(kind: str, vocab: int, steps: int, batch: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "random":
        return rng.integers(0, vocab, size=(steps, batch), dtype=np.int64)
    ids = np.array(corpus.encode(corpus.text()), dtype=np.int64)
    starts = rng.integers(0, len(ids) - steps, size=batch)
    return np.stack([ids[s : s + steps] for s in starts], axis=1)


def lm_configs(quick: bool) -> Iterator[Config]:
    grid = itertools.product(
        ((28, 16, 32), (64, 32, 64)), (1, 2), ("torch-default", "saturating"), ("random", "corpus"), (24, 64)
    )
    for index, ((vocab, embed, hidden), layers, recipe, tokens, steps) in enumerate(grid):
        if quick and index % 4:
            continue
        seed = index % 5
        config = LMConfig(vocab, LSTMConfig(input_size=embed, hidden_size=hidden, num_layers=layers))
        weights = generate_lm(config, seed=seed, recipe=recipe)
        ids = _tokens(tokens, vocab, steps, 3, np.random.default_rng(seed))
        label = f"lm V={vocab} E={embed} H={hidden} L={layers} {recipe} {tokens} T={steps} seed={seed}"
        yield Config(label, config, weights, {"tokens": ids}, {"log_probs": lm_log_probs(config, weights, ids)}, recipe)
    with resources.as_file(resources.files("cases") / "data" / "lm-trained.npz") as path:
        trained = load(path)
    assert isinstance(trained, LMWeights)
    config = LMConfig(28, LSTMConfig(input_size=16, hidden_size=32))
    for tokens, steps, seed in itertools.product(("random", "corpus"), (24, 256), range(2 if quick else 5)):
        batch = 1 if steps > 64 else 3
        ids = _tokens(tokens, 28, steps, batch, np.random.default_rng(seed))
        label = f"lm trained {tokens} T={steps} B={batch} seed={seed}"
        expected = {"log_probs": lm_log_probs(config, trained, ids)}
        yield Config(label, config, trained, {"tokens": ids}, expected, "trained")


def errors(actual: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    diff = np.abs(a - e)
    big = np.abs(e) >= REL_FLOOR
    return {
        "max_abs": float(diff.max()),
        "max_rel": float((diff[big] / np.abs(e[big])).max()) if big.any() else 0.0,
        "need": float((diff / (1.0 + np.abs(e))).max()),
    }


def run_one(config: Config, transform: str, cache: Path) -> dict[str, dict[str, float]] | str:
    import onnxruntime as ort

    options = ExportOptions(opset=OPSET, initial_states=config.initial_states)
    artifact = export(config.model, config.weights, f"onnx-native+{transform}", options, cache_dir=cache)
    if not artifact.ok or artifact.path is None:
        return f"{artifact.status}: {artifact.reason}"
    session = ort.InferenceSession(str(artifact.path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    feeds = as_the_model_takes(config.feeds, artifact.meta)
    try:
        values = dict(zip(names, session.run(names, feeds), strict=True))
    except Exception as exc:
        return f"run failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    return {name: errors(values[name], expected) for name, expected in config.expected.items()}


def round_up(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^k that is >= value."""
    if value <= 0:
        return 0.0
    exponent = math.floor(math.log10(value))
    for mantissa in (1, 2, 5, 10):
        candidate = float(f"{mantissa}e{exponent}")
        if candidate >= value * (1 - 1e-12):
            return candidate
    raise AssertionError(value)


def summarise(runs: list[tuple[str, dict[str, float]]]) -> str:
    line = f"{len(runs):4d}"
    for key in ("max_abs", "max_rel", "need"):
        values = np.array([numbers[key] for _, numbers in runs])
        median, p99, top = np.median(values), np.percentile(values, 99), values.max()
        line += f"  {median:{12 if key == 'need' else 15}.3g} {p99:8.3g} {top:8.3g}"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the grid, for a smoke run")
    parser.add_argument("--margin", type=float, default=2.0, help="budget = margin x the greatest need (default 2)")
    parser.add_argument("--transform", action="append", choices=list(TRANSFORMS), help="only these transforms")
    parser.add_argument("--json", type=Path, help="also write every run's numbers here")
    args = parser.parse_args(argv)
    transforms = args.transform or list(TRANSFORMS)
    configs = [*stack_configs(args.quick), *lm_configs(args.quick)]
    # (group, transform, output) -> [(configuration, numbers)]; the budget comes from BUDGET_RECIPES only
    rows: dict[tuple[str, str, str], list[tuple[str, dict[str, float]]]] = defaultdict(list)
    failures: list[str] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="measure-transforms-") as cache:
        for transform in transforms:
            for config in configs:
                result = run_one(config, transform, Path(cache))
                if isinstance(result, str):
                    failures.append(f"{transform} {config.label}: {result}")
                    continue
                group = BUDGETED if config.recipe in BUDGET_RECIPES else config.recipe
                for output, numbers in result.items():
                    rows[(group, transform, output)].append((config.label, numbers))
    seconds = time.perf_counter() - start
    print(f"{len(configs)} configurations x {len(transforms)} transforms on ONNX Runtime CPU in {seconds:.0f} s")
    print(f"max rel over |e| >= {REL_FLOOR}; need = max |a-e| / (1+|e|); budget = {args.margin:g} x max need, 1-2-5")
    header = f"{'transform':13} {'output':9} {'runs':>4}  {'max abs: median':>15} {'p99':>8} {'max':>8}"
    header += f"  {'max rel: median':>15} {'p99':>8} {'max':>8}  {'need: median':>12} {'p99':>8} {'max':>8}"
    budgets: dict[str, dict[str, float]] = defaultdict(dict)
    worst: list[str] = []
    for group in dict.fromkeys(g for g, _, _ in rows):
        print(f"\n{group}:")
        print(header + ("  budget" if group == BUDGETED else "  of budget"))
        for (g, transform, output), runs in rows.items():
            if g != group:
                continue
            need = max(numbers["need"] for _, numbers in runs)
            if group == BUDGETED:
                budgets[transform][output] = round_up(args.margin * need)
                tail = f"  {budgets[transform][output]:g}"
            else:
                budget = budgets.get(transform, {}).get(output)
                tail = f"  {need / budget:.2g}x" if budget else ""
            print(f"{transform:13} {output:9} {summarise(runs)}{tail}")
            label, numbers = max(runs, key=lambda run: run[1]["need"])
            worst.append(
                f"  {transform} {output}: need {numbers['need']:.3g} (max abs {numbers['max_abs']:.3g}) at {label}"
            )
    print("\nworst run per transform and output:")
    print("\n".join(worst))
    print(f"\nBUDGETS (atol = rtol = {args.margin:g} x the greatest need of {BUDGETED}, rounded up to 1-2-5):")
    for transform, outputs in budgets.items():
        print(f'    "{transform}": {{' + ", ".join(f'"{o}": ({b:g}, {b:g})' for o, b in outputs.items()) + "},")
    if failures:
        print(f"\n{len(failures)} runs did not produce outputs:")
        print("\n".join(f"  {f}" for f in failures))
    if args.json:
        data: dict[str, Any] = {
            "runs": {"/".join(key): [{"config": c, **n} for c, n in runs] for key, runs in rows.items()},
            "budgets": budgets,
            "failures": failures,
        }
        args.json.write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
