"""Side-by-side timing: medians of interleaved repetitions, so machine noise hits every
candidate alike. Absolute times on a shared CPU mean little; the ratios are the result."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping

#: ``GRADBALANCE_BENCH_FULL=1`` runs the published sizes and asserts the goals; the default is a
#: small smoke size so CI exercises every benchmark quickly.
FULL = os.environ.get("GRADBALANCE_BENCH_FULL") == "1"


def interleaved_samples(
    candidates: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Seconds per run of each candidate, running them round-robin ``repeats`` times."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return samples


def interleaved_medians(
    candidates: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 2
) -> dict[str, float]:
    """Median seconds per candidate, running them round-robin ``repeats`` times."""
    samples = interleaved_samples(candidates, repeats, warmup)
    return {name: statistics.median(ts) for name, ts in samples.items()}


def paired_ratio(samples: Mapping[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over rounds of ``numerator / denominator`` timed in the same round: slow drifts
    of a shared machine's speed (other tenants, clock changes) cancel within each pair."""
    return statistics.median(n / d for n, d in zip(samples[numerator], samples[denominator]))


def report(title: str, medians: Mapping[str, float], floor: str) -> dict[str, float]:
    """Print each candidate's ratio to ``floor`` and return the ratios."""
    ratios = {name: t / medians[floor] for name, t in medians.items()}
    print(f"\n{title} (floor: {floor} = {medians[floor] * 1e3:.2f} ms median)")
    for name, r in ratios.items():
        print(f"  {name:<34} {r:6.2f}x")
    return ratios


def per_call_seconds(fn: Callable[[], object], repeats: int, quantile: float = 0.1, warmup: int = 3) -> float:
    """A low quantile of the seconds per call of ``fn`` over ``repeats`` calls: for calls of
    microseconds, what a call costs when no other tenant interrupts it (the median mostly
    measures the interruptions)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.quantiles(samples, n=100, method="inclusive")[round(quantile * 100) - 1]
