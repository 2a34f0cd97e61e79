"""Small problems: the per-call cost of the ``T×T`` step and of ``combine`` on a small matrix.

For a small model the library's Python, not the arithmetic, is the cost. Goals on the CPU,
single-threaded:

- the ``T×T`` step (``weights`` on ``[S, T, T]`` Gramians) at most 100 µs at ``T = 3`` and
  300 µs at ``T = 8`` for every built-in, and batched over segments: ``S = 20`` Gramians cost
  far less than 20 times one where the method batches (PCGrad, GradVac, UPGrad, MGDA, IMTL-G,
  Aligned-MTL, Nash-MTL, FairGrad, CAGrad: every built-in);
- ``combine`` on a ``[3, 100_000]`` float32 matrix within 3× of ``G.sum(0)``, timed side by side.

These sizes are cheap, so CI runs them as they are. Per-call times are a low percentile of
many calls; the assertions allow :data:`MARGIN` over the goal for a noisy shared machine, and
each test prints (and records in the benchmark's ``extra_info``) the measured value against
the exact goal. Combiners measured over that margin are marked ``xfail`` with the value
measured when the mark was set.

    pytest benchmarks/test_small_combine.py -s
"""

from __future__ import annotations

import statistics

import pytest
import torch

import gradbalance

from timing import FULL, interleaved_samples, paired_ratio, per_call_seconds

#: Goals in seconds per ``weights`` call, by number of tasks.
STEP_GOALS = {3: 100e-6, 8: 300e-6}
#: Goal for ``combine`` on [3, 100_000] against ``G.sum(0)``.
COMBINE_GOAL = 3.0
#: How far over a goal a measurement may be before a test fails: 15% with
#: ``GRADBALANCE_BENCH_FULL=1`` (a machine to yourself: the spread of two runs there), 3× in the
#: default run, which shares a 2-core CI machine with the rest of the suite and still catches a
#: per-segment loop or a stall.
MARGIN = 1.15 if FULL else 3.0
#: Segments for the batching check, and the most their step may cost relative to one segment.
SEGMENTS = 20
BATCHED_LIMIT = SEGMENTS / 2
BATCHED = (
    "pcgrad",
    "gradvac",
    "imtl-g",
    "aligned-mtl",
    "upgrad",
    "mgda",
    "nash-mtl",
    "fairgrad",
    "fairgrad α=2",
    "cagrad",
)


@pytest.fixture(autouse=True)
def one_thread():
    """The goals are single-threaded: with torch's second thread ``G.sum(0)`` on ``[3, 100_000]``
    runs faster while the step does not, and the ratios grow by about a quarter."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: name in the tests: (registry name, options)
CONFIGS = {
    "pcgrad": ("pcgrad", {"seed": 0}),
    "gradvac": ("gradvac", {"seed": 0}),
    "imtl-g": ("imtl-g", {}),
    "mgda": ("mgda", {}),
    "aligned-mtl": ("aligned-mtl", {}),
    "upgrad": ("upgrad", {}),
    "cagrad": ("cagrad", {}),
    "nash-mtl": ("nash-mtl", {}),
    "fairgrad": ("fairgrad", {}),
    "fairgrad α=2": ("fairgrad", {"alpha": 2.0}),
}


def short_of(names: dict[str, str], candidates: object = CONFIGS) -> list[object]:
    """Parameters for the built-ins, the ones in ``names`` marked as short of the goal."""
    return [
        pytest.param(name, marks=pytest.mark.xfail(reason=names[name], strict=False))
        if name in names
        else name
        for name in candidates
    ]


def gramians(S: int, T: int) -> torch.Tensor:
    """``[S, T, T]`` float64 Gramians of 64 random columns with one conflicting pair."""
    G = torch.randn(S, T, 64, generator=torch.Generator().manual_seed(T), dtype=torch.float64)
    G[:, 1] = -0.5 * G[:, 0] + G[:, 1]
    return G @ G.mT


def combiner(name: str) -> gradbalance.GramianCombiner:
    registered, options = CONFIGS[name]
    made = gradbalance.create(registered, **options)
    assert isinstance(made, gradbalance.GramianCombiner)
    return made


# Over MARGIN × goal when the marks were set (10th percentile of 300 calls, one thread, the
# 2-core development machine). Alone on 2026-12-05 (run S4) every built-in met both goals:
# at most 33 µs at T = 3 (CAGrad) and 232 µs at T = 8 (GradVac).
STEP_SHORT: dict[int, dict[str, str]] = {3: {}, 8: {}}


@pytest.mark.parametrize("name", short_of(STEP_SHORT[3]))
def test_step_at_3_tasks(benchmark, name):
    check_step(benchmark, name, 3)


@pytest.mark.parametrize("name", short_of(STEP_SHORT[8]))
def test_step_at_8_tasks(benchmark, name):
    check_step(benchmark, name, 8)


def check_step(benchmark, name: str, T: int) -> None:
    K = gramians(1, T)
    c = combiner(name)
    seconds = per_call_seconds(lambda: c.weights(K), repeats=300)
    goal = STEP_GOALS[T]
    print(f"\n{name} T×T step, T={T}: {seconds * 1e6:.0f} µs (goal {goal * 1e6:.0f} µs)")
    benchmark.extra_info.update({"p10 µs": seconds * 1e6, "goal µs": goal * 1e6})
    benchmark(lambda: c.weights(K))
    assert seconds <= MARGIN * goal, f"{name}: {seconds * 1e6:.0f} µs > {MARGIN} × {goal * 1e6:.0f} µs"


@pytest.mark.parametrize("name", BATCHED)
@pytest.mark.parametrize("T", [3, 8])
def test_step_is_batched_over_segments(name, T):
    one, many = gramians(1, T), gramians(SEGMENTS, T)
    c = combiner(name)
    # GradVac keeps targets per segment: one instance per shape.
    c_many = combiner(name)
    single = per_call_seconds(lambda: c.weights(one), repeats=200)
    batched = per_call_seconds(lambda: c_many.weights(many), repeats=200)
    ratio = batched / single
    print(f"\n{name} T={T}: {SEGMENTS} segments cost {ratio:.1f}× one ({single * 1e6:.0f} µs)")
    assert ratio <= BATCHED_LIMIT, f"{name}: {SEGMENTS} segments cost {ratio:.1f}× one segment"


# Over MARGIN × goal when the marks were set, median of 300 paired ratios. The two passes over
# G and the fixed costs take ~2.25× G.sum(0), so a step fits in 3× only at ≲ 30 µs alone. Alone
# on 2026-12-05 (run S4) every built-in was within 3×, CAGrad the closest (2.92-2.96×).
COMBINE_SHORT: dict[str, str] = {}


def small_matrix() -> torch.Tensor:
    """The ``[3, 100_000]`` float32 task matrix of the ``combine`` goal, one conflicting pair."""
    G = torch.randn(3, 100_000, generator=torch.Generator().manual_seed(3))
    G[1] = -0.5 * G[0] + G[1]
    return G


class ConstantWeights(gradbalance.GramianCombiner):
    """A Gramian combiner whose step costs nothing: the mean's weights, returned at once. Its
    ``combine`` is the fixed cost every Gramian combiner pays (both passes, the checks)."""

    name = "constant-weights"

    def weights(self, gramian: torch.Tensor) -> torch.Tensor:
        return torch.full(gramian.shape[:2], 1 / gramian.shape[1], dtype=torch.float64)


#: The most the fixed cost of a Gramian combiner's ``combine`` on [3, 100_000] may take, in
#: ``G.sum(0)``: 2.25× measured alone (run S2); a regression in the passes or checks fails here.
FIXED_COST_LIMIT = 2.5


def test_combine_fixed_cost(benchmark):
    """What is left of the 3× goal for the ``T×T`` step: the goal less the fixed cost."""
    G = small_matrix()
    c = ConstantWeights()
    samples = interleaved_samples({"G.sum(0)": lambda: G.sum(0), "fixed": lambda: c.combine(G)}, repeats=300)
    ratio = paired_ratio(samples, "fixed", "G.sum(0)")
    left = (COMBINE_GOAL - ratio) * statistics.median(samples["G.sum(0)"])
    print(
        f"\nfixed cost of combine [3, 100000]: {ratio:.2f}× G.sum(0); left for the step: {left * 1e6:.0f} µs"
    )
    benchmark.extra_info.update({"ratio to G.sum(0)": ratio, "µs left for the step": left * 1e6})
    benchmark(lambda: c.combine(G))
    limit = FIXED_COST_LIMIT if FULL else MARGIN * FIXED_COST_LIMIT
    assert ratio <= limit, f"fixed cost {ratio:.2f}× G.sum(0) > {limit}×"


@pytest.mark.parametrize("name", short_of(COMBINE_SHORT, ["sum", "mean", *CONFIGS]))
def test_combine_small_matrix_against_sum(benchmark, name):
    G = small_matrix()
    c = gradbalance.create(name) if name in ("sum", "mean") else combiner(name)
    samples = interleaved_samples({"G.sum(0)": lambda: G.sum(0), name: lambda: c.combine(G)}, repeats=300)
    ratio = paired_ratio(samples, name, "G.sum(0)")
    print(f"\n{name} combine [3, 100000]: {ratio:.2f}× G.sum(0) (goal {COMBINE_GOAL}×)")
    benchmark.extra_info.update({"ratio to G.sum(0)": ratio, "goal": COMBINE_GOAL})
    benchmark(lambda: c.combine(G))
    assert ratio <= MARGIN * COMBINE_GOAL, f"{name}: {ratio:.2f}× > {MARGIN} × {COMBINE_GOAL}×"
