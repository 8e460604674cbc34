"""Latency: adaptive repetitions until the median is known well enough, and slowdowns between runs.

``measure`` calls a function a few times untimed (first-call allocations,
lazy initialisation, caches), then times one call per sample with
``time.perf_counter_ns`` until the 95% confidence interval of the median is
narrower than ``target_rel_ci`` of the median, the time budget ends, or
``max_samples`` is reached. The timed region is exactly what a bare
``t0 = perf_counter_ns(); run(); t1 = perf_counter_ns()`` loop times (with
``sync``, one small wrapper call: ``run(); sync()``); bookkeeping happens
between samples and the statistics after the last one.

The median's confidence interval is distribution-free: the order statistics
whose ranks bracket n/2 with binomial probability >= 95%. Latency
distributions are skewed with a long right tail (interrupts, page faults,
other tenants), so no normal approximation is used anywhere.

``compare_latency`` judges two sets of samples (base, head) by the ratio of
their medians and a bootstrap percentile interval of that ratio. The
bootstrap median is drawn exactly without materialising resamples (see
``_bootstrap_medians``), so it costs O(n_boot) whatever the sample count.

Standard library and NumPy only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

CONFIDENCE = 0.95  # of the median's interval that ``measure`` stops on
_CHECK_MIN_STEP = 5  # samples between two convergence checks, at least ...
_CHECK_GROWTH = 4  # ... and n // 4 (checks at geometric intervals keep sorting cost ~O(n log n) in all)
_NS_PER_MS = 1_000_000

Samples = Sequence[float] | NDArray[Any]  # latency samples in one unit: a list, a tuple or a NumPy array


@lru_cache(maxsize=4096)
def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """0-based ranks ``(lo, hi)`` of the sorted samples that bound the median with ``confidence``.

    ``lo`` is the largest k with P(Binomial(n, 1/2) <= k) <= (1 - confidence) / 2 and
    ``hi = n - 1 - lo`` (the binomial is symmetric), so the interval covers the true median
    with probability >= ``confidence`` whatever the distribution. ``None`` when ``n`` is too
    small for any interval to reach ``confidence`` (n < 6 at 95%).
    """
    if n < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"median_ci_ranks: need n >= 1 and 0 < confidence < 1, got n={n}, confidence={confidence}")
    k = np.arange(n // 2 + 1, dtype=np.float64)
    # log P(B = k) by the recurrence P(k + 1) / P(k) = (n - k) / (k + 1): no huge binomial coefficients;
    # far-tail terms too small for a float64 vanish, harmlessly.
    log_pmf = -n * math.log(2.0) + np.concatenate(([0.0], np.cumsum(np.log((n - k[:-1]) / (k[:-1] + 1.0)))))
    cdf = np.cumsum(np.exp(log_pmf))
    alpha = (1.0 - confidence) / 2.0
    below = np.flatnonzero(cdf <= alpha * (1.0 + 1e-12))
    if below.size == 0:
        return None
    # P(B <= k) <= alpha, B = samples below the median: the (k + 1)-th smallest (0-based rank k) lies at or
    # below the median with probability >= 1 - alpha, and the (k + 1)-th largest above it.
    lo = int(below[-1])
    return lo, n - 1 - lo


def _rel_ci_width(samples: list[int], n: int) -> float:
    """Relative width of the median's 95% interval over the first ``n`` samples; inf if undetermined."""
    ranks = median_ci_ranks(n)
    if ranks is None:
        return math.inf
    ordered = sorted(samples[:n])
    median = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
    if median <= 0:
        return math.inf
    return (ordered[ranks[1]] - ordered[ranks[0]]) / median


@dataclass(frozen=True)
class Latency:
    """Timed samples of one callable and their summary, in milliseconds.

    ``ci_low_ms``/``ci_high_ms`` bound the median with 95% confidence; ``converged`` says
    whether that interval met the target relative width. ``samples_ns`` holds every sample
    in call order, or, after a round trip through a subsampled ``to_dict``, evenly spaced
    order statistics (sorted).
    """

    samples_ns: tuple[int, ...]
    count: int
    min_ms: float
    median_ms: float
    mean_ms: float
    p90_ms: float
    p99_ms: float
    stdev_ms: float
    ci_low_ms: float
    ci_high_ms: float
    converged: bool
    budget_s: float
    warmup: int

    @classmethod
    def from_samples(
        cls,
        samples_ns: Sequence[int] | NDArray[np.integer[Any]],
        *,
        converged: bool = False,
        budget_s: float = 0.0,
        warmup: int = 0,
    ) -> Latency:
        """Summarise raw samples (nanoseconds); the median interval is the 95% order-statistic one."""
        if len(samples_ns) == 0:
            raise ValueError("Latency.from_samples: no samples")
        values = np.asarray(samples_ns, dtype=np.int64)
        ordered = np.sort(values).astype(np.float64) / _NS_PER_MS
        n = ordered.size
        ranks = median_ci_ranks(n)
        lo, hi = (ordered[ranks[0]], ordered[ranks[1]]) if ranks else (ordered[0], ordered[-1])
        p90, p99 = np.percentile(ordered, [90.0, 99.0])
        return cls(
            samples_ns=tuple(int(v) for v in values),
            count=n,
            min_ms=float(ordered[0]),
            median_ms=float(np.median(ordered)),
            mean_ms=float(ordered.mean()),
            p90_ms=float(p90),
            p99_ms=float(p99),
            stdev_ms=float(ordered.std(ddof=1)) if n > 1 else 0.0,
            ci_low_ms=float(lo),
            ci_high_ms=float(hi),
            converged=converged,
            budget_s=budget_s,
            warmup=warmup,
        )

    @property
    def samples_ms(self) -> list[float]:
        return [v / _NS_PER_MS for v in self.samples_ns]

    @property
    def rel_ci(self) -> float:
        """Width of the median's interval relative to the median (0.02 = +-1%)."""
        return (self.ci_high_ms - self.ci_low_ms) / self.median_ms if self.median_ms > 0 else math.inf

    def tokens_per_s(self, tokens: int) -> float:
        """Throughput at the median latency: ``tokens`` processed per call (e.g. steps x batch)."""
        return tokens / (self.median_ms / 1e3) if self.median_ms > 0 else math.inf

    def to_dict(self, max_samples: int = 500, *, tokens: int | None = None) -> dict[str, Any]:
        """JSON-friendly form: the summary and the samples in ms (1 ns precision).

        More than ``max_samples`` samples are reduced to ``max_samples`` evenly spaced order
        statistics (min and max included), flagged by ``samples_subsampled``: enough to compare
        distributions, at a bounded file size. ``tokens`` adds ``tokens`` and ``tokens_per_s``.
        """
        samples = self.samples_ns
        subsampled = len(samples) > max_samples
        if subsampled:
            ordered = np.sort(np.asarray(samples, dtype=np.int64))
            picks = np.round(np.linspace(0, ordered.size - 1, max(max_samples, 2))).astype(np.int64)
            samples = tuple(int(v) for v in ordered[picks])
        document: dict[str, Any] = {
            "count": self.count,
            "converged": self.converged,
            "budget_s": self.budget_s,
            "warmup": self.warmup,
            "samples_subsampled": subsampled,
            "samples_ms": [round(v / _NS_PER_MS, 6) for v in samples],
        }
        for name in ("min_ms", "median_ms", "mean_ms", "p90_ms", "p99_ms", "stdev_ms", "ci_low_ms", "ci_high_ms"):
            document[name] = round(getattr(self, name), 6)
        if tokens is not None:
            document["tokens"] = tokens
            document["tokens_per_s"] = round(self.tokens_per_s(tokens), 3)
        return document

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Latency:
        """Inverse of ``to_dict``; a malformed record raises ``ValueError`` naming the key."""
        samples = data.get("samples_ms") if isinstance(data, dict) else None
        if not isinstance(samples, list) or not samples:
            raise ValueError("latency record: 'samples_ms' must be a non-empty list")
        if not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and MIN_SAMPLE_MS <= v <= MAX_SAMPLE_MS
            for v in samples
        ):
            raise ValueError(
                f"latency record: every sample must be a number of ms in [{MIN_SAMPLE_MS:g}, {MAX_SAMPLE_MS:g}]"
            )
        try:
            return cls(
                samples_ns=tuple(round(float(v) * _NS_PER_MS) for v in data["samples_ms"]),
                count=int(data["count"]),
                min_ms=float(data["min_ms"]),
                median_ms=float(data["median_ms"]),
                mean_ms=float(data["mean_ms"]),
                p90_ms=float(data["p90_ms"]),
                p99_ms=float(data["p99_ms"]),
                stdev_ms=float(data["stdev_ms"]),
                ci_low_ms=float(data["ci_low_ms"]),
                ci_high_ms=float(data["ci_high_ms"]),
                converged=bool(data["converged"]),
                budget_s=float(data["budget_s"]),
                warmup=int(data["warmup"]),
            )
        except KeyError as exc:
            raise ValueError(f"latency record: missing key {exc.args[0]!r}") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"latency record: {exc}") from None


MAX_SAMPLE_MS = 1e9  # about 11.6 days: a sample past it is not a measurement
MIN_SAMPLE_MS = 1e-6  # one nanosecond, the resolution samples are kept at


def measure(
    run: Callable[[], object],
    *,
    warmup: int = 3,
    min_samples: int = 10,
    max_samples: int = 10_000,
    budget_s: float = 0.5,
    target_rel_ci: float = 0.02,
    min_time_s: float = 0.0,
    sync: Callable[[], None] | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> Latency:
    """Time ``run`` until the median is stable, the budget ends or ``max_samples`` are taken.

    - ``warmup`` untimed calls first; they are not part of ``budget_s``.
    - ``sync`` (device synchronisation) runs inside the timed region, after each call.
    - The convergence check (95% interval of the median narrower than ``target_rel_ci`` of the
      median) starts at ``min_samples`` samples and ``min_time_s`` seconds, and repeats at
      geometric intervals. ``target_rel_ci=0`` never converges: it samples the whole budget.
    - The budget is checked after each sample, so a slow callable overruns it by at most one
      call; at least one sample is always taken.
    - ``clock`` returns integer nanoseconds; tests inject a fake one.

    A run that converges in a few milliseconds is a snapshot of the machine's state. Shared
    machines change speed in episodes (1.2-1.3x slower for 20-600 ms, traced on a 2-core
    cloud VM), which no interval from within one run can see; ``min_time_s`` spreads the
    samples over time, and results meant for comparison across runs want 0.2 s or more.
    """
    if warmup < 0 or min_samples < 1 or max_samples < 1 or budget_s < 0 or target_rel_ci < 0 or min_time_s < 0:
        raise ValueError(
            "measure: warmup >= 0, min_samples >= 1, max_samples >= 1 and non-negative budget_s, "
            f"target_rel_ci, min_time_s required (got warmup={warmup}, min_samples={min_samples}, "
            f"max_samples={max_samples}, budget_s={budget_s}, target_rel_ci={target_rel_ci}, min_time_s={min_time_s})"
        )
    call = run if sync is None else _then(run, sync)
    for _ in range(warmup):
        call()
    samples = [0] * max_samples
    n = 0
    next_check = min_samples
    min_time_ns = int(min_time_s * 1e9)
    start = clock()
    deadline = start + int(budget_s * 1e9)
    while n < max_samples:
        t0 = clock()
        call()
        t1 = clock()
        samples[n] = t1 - t0
        n += 1
        if t1 >= deadline:
            break
        if n >= next_check:
            if t1 - start >= min_time_ns and _rel_ci_width(samples, n) < target_rel_ci:
                break
            next_check = n + max(_CHECK_MIN_STEP, n // _CHECK_GROWTH)
    del samples[n:]
    converged = n >= min_samples and _rel_ci_width(samples, n) < target_rel_ci
    return Latency.from_samples(samples, converged=converged, budget_s=budget_s, warmup=warmup)


def _then(run: Callable[[], object], sync: Callable[[], None]) -> Callable[[], None]:
    def run_and_sync() -> None:
        run()
        sync()

    return run_and_sync


# --- comparing two runs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyChange:
    """Head against base: the ratio of medians (> 1 is slower) and its bootstrap interval."""

    ratio: float
    ci_low: float
    ci_high: float
    regression: bool  # significantly slower than max_slowdown: the interval lies above it
    improvement: bool  # significantly faster than 1 / max_slowdown
    base_median: float
    head_median: float

    @property
    def verdict(self) -> str:
        return "slower" if self.regression else "faster" if self.improvement else "unchanged"

    def __str__(self) -> str:
        return f"x{self.ratio:.2f} [{self.ci_low:.2f}, {self.ci_high:.2f}] {self.verdict}"


def compare_latency(
    base: Samples,
    head: Samples,
    *,
    max_slowdown: float = 1.10,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> LatencyChange:
    """Is ``head`` slower than ``base``? Samples in any one unit (both the same).

    ``regression`` needs the whole ``confidence`` interval of median(head) / median(base)
    above ``max_slowdown``: a slowdown that is both real (not sampling noise) and larger
    than the threshold (run-to-run drift of a shared machine is not sampled by either run;
    the threshold absorbs it). ``improvement`` mirrors it below ``1 / max_slowdown``. With
    too few samples for a distribution-free interval of a median (fewer than 6 on a side at
    95%) there is no verdict, and the interval is the range of ratios the samples allow.
    """
    if max_slowdown <= 1.0:
        raise ValueError(f"max_slowdown must be > 1 (e.g. 1.10 for 10%), got {max_slowdown}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    b = _positive_sorted(base, "base")
    h = _positive_sorted(head, "head")
    base_median, head_median = float(np.median(b)), float(np.median(h))
    if median_ci_ranks(b.size, confidence) is None or median_ci_ranks(h.size, confidence) is None:
        # Too few samples for any distribution-free statement about a median (n < 6 at 95%):
        # report every ratio the samples allow, and no verdict.
        return LatencyChange(
            ratio=head_median / base_median,
            ci_low=float(h[0] / b[-1]),
            ci_high=float(h[-1] / b[0]),
            regression=False,
            improvement=False,
            base_median=base_median,
            head_median=head_median,
        )
    rng = np.random.default_rng(seed)
    ratios = _bootstrap_medians(h, n_boot, rng) / _bootstrap_medians(b, n_boot, rng)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail])
    return LatencyChange(
        ratio=head_median / base_median,
        ci_low=float(low),
        ci_high=float(high),
        regression=bool(low > max_slowdown),
        improvement=bool(high < 1.0 / max_slowdown),
        base_median=base_median,
        head_median=head_median,
    )


def _positive_sorted(samples: Samples, name: str) -> NDArray[np.float64]:
    values = np.sort(np.asarray(samples, dtype=np.float64))
    if values.size == 0:
        raise ValueError(f"compare_latency: no {name} samples")
    if not np.all(np.isfinite(values)) or values[0] <= 0:
        raise ValueError(f"compare_latency: {name} samples must be positive and finite")
    return values


def _bootstrap_medians(ordered: NDArray[np.float64], n_boot: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """``n_boot`` medians of resamples (with replacement, size n) of the sorted ``ordered``.

    Exact in distribution without drawing n values per resample: a resample is
    ``ordered[ceil(n * U_i) - 1]`` for n uniforms U_i, so its m-th smallest value is
    ``ordered[ceil(n * U_(m)) - 1]`` with ``U_(m) ~ Beta(m, n - m + 1)``; for even n the
    next order statistic is ``U_(m) + (1 - U_(m)) * Beta(1, n - m)`` (the least of the n - m
    uniforms above U_(m)). Memory and time O(n_boot) instead of O(n_boot * n).
    """
    n = ordered.size
    m = (n + 1) // 2
    u = rng.beta(m, n - m + 1, size=n_boot)
    lower = ordered[np.clip(np.ceil(n * u).astype(np.int64) - 1, 0, n - 1)]
    if n % 2:
        return lower
    u_next = u + (1.0 - u) * rng.beta(1, n - m, size=n_boot)
    upper = ordered[np.clip(np.ceil(n * u_next).astype(np.int64) - 1, 0, n - 1)]
    return (lower + upper) / 2.0
