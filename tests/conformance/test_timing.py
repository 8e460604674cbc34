"""Tests for conformance.timing: adaptive measurement, the median's interval, the JSON form, slowdowns."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import pytest

from conformance.timing import Latency, _bootstrap_medians, compare_latency, measure, median_ci_ranks

MS = 1_000_000  # nanoseconds


class FakeClock:
    """Integer nanoseconds that move only when a fake workload says so."""

    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now

    def work(self, durations: Callable[[int], int]) -> Callable[[], None]:
        """A callable whose k-th call (warm-up included) takes ``durations(k)`` ns."""
        calls = [0]

        def run() -> None:
            self.now += durations(calls[0])
            calls[0] += 1

        return run


def sort_work(size: int = 8000) -> Callable[[], object]:
    """Real single-threaded work (a sort, ~0.2 ms): no BLAS threads to disturb."""
    values = np.random.default_rng(0).standard_normal(size)
    return lambda: np.sort(values)


def interleaved(*runs: Callable[[], object], rounds: int = 10, slice_s: float = 0.005) -> list[Latency]:
    """Real measurements of ``runs`` taken in alternating slices (ABAB...), samples pooled per run.

    On a shared machine the speed of the whole machine changes: episodes of 20-600 ms at 1.2-1.3x
    slower were traced on the 2-core test machine. Two runs taken one after the other can land in
    different episodes, which no interval computed from within each run can see; slices that
    alternate every few milliseconds put both runs in the same episodes.
    """
    pooled: list[list[int]] = [[] for _ in runs]
    for _ in range(rounds):
        for i, run in enumerate(runs):
            pooled[i] += measure(run, warmup=1, budget_s=slice_s, target_rel_ci=0.0).samples_ns
    return [Latency.from_samples(samples) for samples in pooled]


class TestMeasure:
    def test_constant_time_converges_at_min_samples(self) -> None:
        clock = FakeClock()
        latency = measure(clock.work(lambda k: 1000), clock=clock, min_samples=10)
        assert latency.count == 10
        assert latency.converged
        assert latency.samples_ns == (1000,) * 10
        assert latency.median_ms == latency.ci_low_ms == latency.ci_high_ms == 0.001

    def test_noisy_samples_keep_sampling_until_the_interval_is_narrow(self) -> None:
        clock = FakeClock()
        rng = np.random.default_rng(1)
        noise = rng.lognormal(0.0, 0.3, 100_000)
        latency = measure(clock.work(lambda k: int(1e6 * noise[k])), clock=clock, budget_s=1e9, target_rel_ci=0.05)
        assert latency.converged
        assert latency.rel_ci < 0.05
        assert 100 < latency.count < 2000  # ~ (2 * 1.96 * 1.25 * 0.3 / 0.05)^2 = 860 for a lognormal(0, 0.3)

    def test_a_slow_callable_stops_at_the_budget(self) -> None:
        clock = FakeClock()
        latency = measure(clock.work(lambda k: 100 * MS), clock=clock, budget_s=0.5)
        assert latency.count == 5  # the fifth sample ends exactly at the deadline
        assert not latency.converged  # fewer than min_samples
        assert latency.budget_s == 0.5

    def test_the_budget_holds_in_real_time(self) -> None:
        started = time.perf_counter()
        latency = measure(lambda: time.sleep(0.02), warmup=1, budget_s=0.1)
        elapsed = time.perf_counter() - started
        assert 3 <= latency.count <= 6
        assert elapsed < 0.02 + 0.1 + 0.02 + 0.1  # warm-up + budget + one call of overrun + slack
        assert latency.median_ms >= 20

    def test_at_least_one_sample_even_with_no_budget(self) -> None:
        clock = FakeClock()
        assert measure(clock.work(lambda k: 1000), clock=clock, budget_s=0.0).count == 1

    def test_max_samples_caps_a_run_that_never_converges(self) -> None:
        clock = FakeClock()
        latency = measure(clock.work(lambda k: 1000 + k % 7), clock=clock, target_rel_ci=0.0, max_samples=50)
        assert latency.count == 50
        assert not latency.converged

    def test_min_time_keeps_a_converged_run_going(self) -> None:
        clock = FakeClock()
        latency = measure(clock.work(lambda k: 1000), clock=clock, min_time_s=50e-6)
        assert 50 <= latency.count < 70
        assert latency.converged

    def test_warmup_calls_are_untimed(self) -> None:
        clock = FakeClock()
        latency = measure(clock.work(lambda k: 10**9 if k < 3 else 1000), clock=clock, warmup=3)
        assert max(latency.samples_ns) == 1000
        assert latency.warmup == 3

    def test_sync_runs_once_per_call_inside_the_timed_region(self) -> None:
        clock = FakeClock()
        calls = {"run": 0, "sync": 0}

        def run() -> None:
            calls["run"] += 1
            clock.now += 1000

        def sync() -> None:
            calls["sync"] += 1
            clock.now += 500  # the device finishing the work

        latency = measure(run, sync=sync, clock=clock, warmup=2)
        assert calls["sync"] == calls["run"] == 2 + latency.count
        assert set(latency.samples_ns) == {1500}

    def test_samples_keep_call_order(self) -> None:
        clock = FakeClock()
        latency = measure(clock.work(lambda k: 1000 + k), clock=clock, warmup=0, min_samples=6, target_rel_ci=0.1)
        assert list(latency.samples_ns) == sorted(latency.samples_ns)
        assert latency.samples_ns[0] == 1000

    @pytest.mark.parametrize(
        "kwargs", [{"warmup": -1}, {"min_samples": 0}, {"max_samples": 0}, {"budget_s": -1.0}, {"target_rel_ci": -0.1}]
    )
    def test_bad_settings_are_refused(self, kwargs: dict[str, float]) -> None:
        with pytest.raises(ValueError, match="measure"):
            measure(lambda: None, **kwargs)  # type: ignore[arg-type]


class TestMedianInterval:
    @pytest.mark.parametrize(("n", "ranks"), [(6, (0, 5)), (10, (1, 8)), (20, (5, 14)), (100, (39, 60))])
    def test_ranks_match_the_published_table(self, n: int, ranks: tuple[int, int]) -> None:
        # 1-based (2, 9) for n = 10, (6, 15) for 20, (40, 61) for 100: Conover, Practical Nonparametric Statistics.
        assert median_ci_ranks(n) == ranks

    @pytest.mark.parametrize("n", [6, 7, 11, 30, 57, 200, 1001])
    def test_the_ranks_are_the_narrowest_with_95_percent_coverage(self, n: int) -> None:
        ranks = median_ci_ranks(n)
        assert ranks is not None

        def coverage(lo: int) -> float:  # 1 - 2 P(B <= lo), exactly, B ~ Binomial(n, 1/2)
            return 1 - 2 * sum(math.comb(n, k) for k in range(lo + 1)) / (1 << n)

        assert coverage(ranks[0]) >= 0.95
        assert coverage(ranks[0] + 1) < 0.95

    @pytest.mark.parametrize("n", [1, 2, 5])
    def test_too_few_samples_have_no_95_percent_interval(self, n: int) -> None:
        assert median_ci_ranks(n) is None

    def test_the_interval_covers_the_true_median(self) -> None:
        rng = np.random.default_rng(7)
        true_median = 1.0 * MS  # lognormal(log 1e6, 0.5): median 1e6 ns, long right tail like latencies
        trials = 400
        hits = 0
        for _ in range(trials):
            samples = rng.lognormal(math.log(true_median), 0.5, 61).astype(np.int64)
            latency = Latency.from_samples(samples)
            hits += latency.ci_low_ms * MS <= true_median <= latency.ci_high_ms * MS
        assert hits / trials >= 0.93  # nominal >= 95% (96.7% exactly for n = 61); binomial slack for 400 trials


class TestStatistics:
    def test_summary_of_known_samples(self) -> None:
        values_ms = list(range(1, 101))  # 1 .. 100 ms, shuffled
        order = np.random.default_rng(0).permutation(100)
        latency = Latency.from_samples([values_ms[i] * MS for i in order], converged=True, budget_s=0.5, warmup=3)
        assert latency.count == 100
        assert latency.min_ms == 1.0
        assert latency.median_ms == 50.5
        assert latency.mean_ms == 50.5
        assert latency.p90_ms == pytest.approx(90.1)
        assert latency.p99_ms == pytest.approx(99.01)
        assert latency.stdev_ms == pytest.approx(statistics.stdev(values_ms))
        assert (latency.ci_low_ms, latency.ci_high_ms) == (40.0, 61.0)  # ranks 39 and 60, 0-based
        assert latency.tokens_per_s(64) == pytest.approx(64 / 0.0505)

    def test_one_sample(self) -> None:
        latency = Latency.from_samples([2 * MS])
        assert (latency.median_ms, latency.stdev_ms, latency.ci_low_ms, latency.ci_high_ms) == (2.0, 0.0, 2.0, 2.0)

    def test_no_samples_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="no samples"):
            Latency.from_samples([])


class TestJsonForm:
    def test_round_trip(self) -> None:
        samples = np.random.default_rng(3).integers(100_000, 900_000, 200)
        latency = Latency.from_samples(samples, converged=True, budget_s=0.5, warmup=3)
        document = latency.to_dict()
        back = Latency.from_dict(json.loads(json.dumps(document, allow_nan=False)))
        assert back.samples_ns == latency.samples_ns  # 1 ns precision survives
        assert document["samples_subsampled"] is False
        for name in ("min_ms", "median_ms", "mean_ms", "p90_ms", "p99_ms", "stdev_ms", "ci_low_ms", "ci_high_ms"):
            assert getattr(back, name) == pytest.approx(getattr(latency, name), abs=1e-6)
        assert (back.count, back.converged, back.budget_s, back.warmup) == (200, True, 0.5, 3)

    def test_many_samples_keep_evenly_spaced_order_statistics(self) -> None:
        samples = np.random.default_rng(4).lognormal(math.log(MS), 0.3, 10_000).astype(np.int64)
        latency = Latency.from_samples(samples)
        document = latency.to_dict(max_samples=500)
        assert document["samples_subsampled"] is True
        assert document["count"] == 10_000
        kept = document["samples_ms"]
        assert len(kept) == 500
        assert kept == sorted(kept)
        assert kept[0] == latency.min_ms and kept[-1] == samples.max() / MS
        back = Latency.from_dict(document)
        assert back.count == 10_000
        assert np.median(back.samples_ms) == pytest.approx(latency.median_ms, rel=0.01)
        assert np.percentile(back.samples_ms, 90) == pytest.approx(latency.p90_ms, rel=0.01)

    def test_tokens_add_throughput(self) -> None:
        document = Latency.from_samples([2 * MS] * 10).to_dict(tokens=64)
        assert (document["tokens"], document["tokens_per_s"]) == (64, 32_000.0)

    def test_a_malformed_record_names_the_key(self) -> None:
        document = Latency.from_samples([MS] * 10).to_dict()
        del document["median_ms"]
        with pytest.raises(ValueError, match="median_ms"):
            Latency.from_dict(document)


class TestCompareLatency:
    @staticmethod
    def noise(seed: int, n: int = 200, scale: float = 1.0) -> np.ndarray:
        """Latency-like samples: 1 ms lognormal with a 5% tail of 2-5x outliers."""
        rng = np.random.default_rng(seed)
        values = rng.lognormal(0.0, 0.1, n)
        outliers = rng.random(n) < 0.05
        values[outliers] *= rng.uniform(2, 5, outliers.sum())
        return values * scale

    def test_a_1_5x_slower_head_is_a_regression(self) -> None:
        change = compare_latency(self.noise(1), self.noise(2, scale=1.5))
        assert change.regression and not change.improvement
        assert change.verdict == "slower"
        assert change.ci_low > 1.1
        assert change.ci_low < 1.5 < change.ci_high
        assert change.ratio == pytest.approx(1.5, rel=0.05)
        assert str(change).startswith("x1.5")

    def test_a_1_5x_faster_head_is_an_improvement(self) -> None:
        change = compare_latency(self.noise(1), self.noise(2, scale=1 / 1.5))
        assert change.improvement and not change.regression
        assert change.verdict == "faster"

    def test_noise_alone_is_never_flagged(self) -> None:
        covered = 0
        for seed in range(20):
            change = compare_latency(self.noise(2 * seed), self.noise(2 * seed + 1), seed=seed)
            assert change.verdict == "unchanged", (seed, change)
            covered += change.ci_low <= 1.0 <= change.ci_high
        assert covered >= 16  # a 95% interval misses the true ratio 1 in about 1 trial of 20

    def test_a_real_but_small_slowdown_stays_below_the_threshold(self) -> None:
        change = compare_latency(self.noise(1, n=5000), self.noise(2, n=5000, scale=1.05))
        assert change.ci_low > 1.0  # significant ...
        assert not change.regression  # ... but not beyond max_slowdown

    def test_two_real_runs_of_the_same_function_are_not_flagged(self) -> None:
        work = sort_work()
        for seed in range(10):
            base, head = interleaved(work, work)
            change = compare_latency(base.samples_ns, head.samples_ns, seed=seed)
            assert change.verdict == "unchanged", (seed, change)

    def test_a_real_slowdown_is_flagged(self) -> None:
        fast, slow = sort_work(8000), sort_work(12_000)  # 1.5x the elements: ~1.6x the time
        base, head = interleaved(fast, slow, rounds=4)
        assert compare_latency(base.samples_ns, head.samples_ns).verdict == "slower"

    def test_deterministic_for_a_seed(self) -> None:
        base, head = self.noise(1), self.noise(2, scale=1.2)
        assert compare_latency(base, head, seed=5) == compare_latency(base, head, seed=5)

    def test_too_few_samples_give_no_verdict(self) -> None:
        change = compare_latency([1.0, 1.1, 1.0], [2.0, 2.1, 2.2])
        assert change.verdict == "unchanged"
        assert (change.ci_low, change.ci_high) == pytest.approx((2.0 / 1.1, 2.2))

    def test_large_samples_are_cheap(self) -> None:
        change = compare_latency(self.noise(1, n=200_000), self.noise(2, n=200_000))
        assert change.ci_high - change.ci_low < 0.01

    @pytest.mark.parametrize(
        ("base", "head", "kwargs", "message"),
        [
            ([], [1.0], {}, "no base samples"),
            ([1.0], [0.0], {}, "head samples must be positive"),
            ([1.0], [1.0], {"max_slowdown": 1.0}, "max_slowdown"),
            ([1.0], [1.0], {"confidence": 1.5}, "confidence"),
        ],
    )
    def test_bad_input(self, base: list[float], head: list[float], kwargs: dict[str, float], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            compare_latency(base, head, **kwargs)  # type: ignore[arg-type]


class TestBootstrapMedians:
    @pytest.mark.parametrize("n", [40, 41])
    def test_same_distribution_as_resampling(self, n: int) -> None:
        ordered = np.sort(np.random.default_rng(0).lognormal(0, 0.5, n))
        direct = _bootstrap_medians(ordered, 40_000, np.random.default_rng(1))
        resamples = np.random.default_rng(2).choice(ordered, size=(40_000, n), replace=True)
        naive = np.median(resamples, axis=1)
        quantiles = [2.5, 10, 25, 50, 75, 90, 97.5]
        spacing = np.median(np.diff(ordered))
        assert np.percentile(direct, quantiles) == pytest.approx(np.percentile(naive, quantiles), abs=spacing)
        assert direct.mean() == pytest.approx(naive.mean(), abs=spacing / 10)
