"""The α-fair allocation over every segment at once (Nash-MTL; FairGrad) against the solver it
shortcuts, :func:`fair_weights` run on each segment's non-zero rows, the ways its batched
Newton hands a segment back to that solver, and its steps in Python floats for one segment of
a few tasks against the same steps in numpy."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradbalance.combiners import FairGrad, NashMTL
from gradbalance.combiners._solvers import (
    SMALL_TASKS,
    _fair_batched,
    batched_fair_weights,
    fair_weights,
    nonzero_row_weights,
)
from gradbalance.testing.strategies import draw_rows

ALPHAS = st.sampled_from([0.25, 0.5, 1.0, 2.0, 5.0, 8.0])
# Every degenerate family but nearly parallel rows (their accuracy is test_nearly_parallel.py's).
KINDS = ("normal", "normal", "zero", "parallel", "antiparallel", "tiny", "huge")


@st.composite
def segment_gramians(draw):
    """``[S, T, T]`` float64 Gramians of ``S`` segments of ``T`` rows each, every row of a drawn
    kind: zero rows (a task absent from a segment), rows parallel or opposed to an earlier one
    (groups of alike tasks, Pareto-stationary segments), rows 1e-10 and 1e15 in size."""
    S, T = draw(st.integers(1, 6)), draw(st.integers(1, 8))
    segments = [draw_rows(draw, T, draw(st.integers(1, 12)), KINDS, torch.float64) for _ in range(S)]
    return torch.stack([G @ G.T for G in segments])


def per_segment(K: torch.Tensor, alpha: float) -> torch.Tensor:
    """Each segment alone through the per-segment solver, on its non-zero rows."""
    return nonzero_row_weights(K, lambda k: fair_weights(k, alpha))


def conditioning(K: np.ndarray) -> np.ndarray:
    """Per segment, the condition number of its non-zero rows' cosine matrix (a zero row counts
    as a unit row orthogonal to the others): how far an ulp moves any solver's weights, as
    nearly opposed rows do (infinite for parallel rows, which both solvers group alike)."""
    norms = np.sqrt(K.diagonal(0, 1, 2))
    safe = np.where(norms > 0, norms, 1.0)
    C = K / (safe[:, :, None] * safe[:, None, :])
    C[:, range(K.shape[1]), range(K.shape[1])] = 1.0
    with np.errstate(divide="ignore"):
        return np.minimum(np.linalg.cond(C), 1e100)  # finite: times a zero contribution is 0


def assert_same_allocation(ours: torch.Tensor, theirs: torch.Tensor, K: torch.Tensor, tol: float) -> None:
    """Zero exactly where the reference is (zero rows, Pareto-stationary segments); elsewhere
    each task's contribution to the update, ``w_t ‖g_t‖``, to ``tol`` of the segment's largest,
    plus 1e-15 times its :func:`conditioning` (both solve every equation to its rounding)."""
    assert ((ours == 0) == (theirs == 0)).all(), (ours, theirs)
    norms = K.diagonal(0, 1, 2).sqrt()
    ours, theirs = ours * norms, theirs * norms
    largest = torch.maximum(ours.abs().amax(1), theirs.abs().amax(1))[:, None]
    bound = torch.from_numpy(tol + 1e-15 * conditioning(K.numpy()))[:, None] * largest
    assert ((ours - theirs).abs() <= bound).all(), (ours, theirs)


@settings(max_examples=300, deadline=None)
@given(K=segment_gramians(), alpha=ALPHAS)
def test_every_segment_at_once_equals_each_segment_alone(K, alpha):
    combiner = NashMTL() if alpha == 1.0 else FairGrad(alpha=alpha)
    assert_same_allocation(combiner.weights(K), per_segment(K, alpha), K, 1e-10)


def _handed_back(monkeypatch):
    """Records the segments :func:`batched_fair_weights` hands to :func:`fair_weights`."""
    calls = []
    monkeypatch.setattr(
        _fair_batched, "fair_weights", lambda K, alpha: calls.append(K) or fair_weights(K, alpha)
    )
    return calls


@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("T", [3, 5, 8])
def test_segments_in_general_position_are_solved_together(monkeypatch, alpha, T):
    # 20 segments with a conflicting pair each (the benchmark's Gramians): for some of them the
    # sum of the unit gradients conflicts with a task, so only the solution's direction shows
    # their hull is off the origin; none goes back to the per-segment solver.
    G = torch.randn(20, T, 64, generator=torch.Generator().manual_seed(T), dtype=torch.float64)
    G[:, 1] = -0.5 * G[:, 0] + G[:, 1]
    K = (G @ G.mT).numpy()
    calls = _handed_back(monkeypatch)
    weights = batched_fair_weights(K, alpha)
    assert not calls
    for k, w in zip(K, weights):
        terms = np.abs(k) @ w + w ** (-1 / alpha)
        assert (np.abs(k @ w - w ** (-1 / alpha)) <= 1e-14 * terms).all()
        np.testing.assert_allclose(w, fair_weights(k, alpha), rtol=1e-12)


def test_a_hull_clear_of_the_origin_only_along_the_solution(monkeypatch):
    # Unit gradients at 0°, 80° and 175°: all in one half-plane, so the allocation exists, but
    # the third task loses along Σ_t u_t (fair_weights' shortcut fails and it runs the
    # min-norm test); the solution's own direction Σ_t β_t u_t clears the hull for it.
    angles = np.radians([0.0, 80.0, 175.0])
    G = np.stack([np.cos(angles), np.sin(angles)], 1) * np.array([[1.0], [3.0], [0.5]])
    K = (G @ G.T)[None]
    assert (K[0] / np.sqrt(np.outer(K[0].diagonal(), K[0].diagonal()))).sum(1).min() < 0
    calls = _handed_back(monkeypatch)
    for alpha in (1.0, 2.0):
        np.testing.assert_allclose(batched_fair_weights(K, alpha)[0], fair_weights(K[0], alpha), rtol=1e-12)
    assert not calls


@pytest.mark.parametrize("gap, stationary", [(1e-5, False), (3e-6, False), (1e-6, True)])
def test_nearly_opposed_segments_go_back_to_the_per_segment_solver(monkeypatch, gap, stationary):
    # Two tasks nearly opposed and a third orthogonal: the hull passes within gap/2 of the
    # origin, inside fair_weights' stationarity threshold (√1e-12) at the last gap. Newton from
    # the ray does not reach the rounding in its steps; those segments get fair_weights' answer
    # exactly (zero where it finds them Pareto-stationary), the general one beside them not.
    G = torch.tensor([[[1.0, 0.0, 0.0], [-1.0, gap, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    general = torch.randn(1, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    K = torch.cat([G, general]) @ torch.cat([G, general]).mT
    calls = _handed_back(monkeypatch)
    weights = NashMTL().weights(K)
    assert len(calls) == 1
    assert torch.equal(weights[0], torch.from_numpy(fair_weights(K[0].numpy(), 1.0)))
    assert bool((weights[0] == 0).all()) == stationary
    torch.testing.assert_close(
        weights[1], torch.from_numpy(fair_weights(K[1].numpy(), 1.0)), rtol=1e-12, atol=0
    )


@pytest.mark.parametrize("together", [True, False], ids=["two segments", "one at a time"])
def test_tasks_alike_and_spread_norms_keep_the_per_segment_solver(monkeypatch, together):
    # Two rows in one direction (fair_weights solves them as one task), and at α = 30 norms
    # 1e25 apart (its continuation from α = 1): both segments are handed back whole, by the
    # numpy steps (two segments) and by the Python-float ones (one segment of 3 tasks).
    G = torch.randn(2, 3, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    G[0, 2] = 2 * G[0, 0]
    G[1, 0] *= 1e-10
    G[1, 2] *= 1e15
    K = G @ G.mT
    calls = _handed_back(monkeypatch)
    combiner = FairGrad(alpha=30.0)
    weights = (
        combiner.weights(K) if together else torch.cat([combiner.weights(K[:1]), combiner.weights(K[1:])])
    )
    assert len(calls) == 2
    assert torch.equal(weights, per_segment(K, 30.0))
    if not together:  # the alike pair at α = 1 too, where the c_t do not matter
        calls.clear()
        assert torch.equal(NashMTL().weights(K[:1]), per_segment(K[:1], 1.0))
        assert len(calls) == 1


@st.composite
def small_segments(draw):
    """One ``[1, T, T]`` Gramian of at most ``SMALL_TASKS`` rows of the non-zero kinds."""
    T = draw(st.integers(1, SMALL_TASKS))
    kinds = [kind for kind in KINDS if kind != "zero"]
    G = draw_rows(draw, T, draw(st.integers(1, 12)), kinds, torch.float64)
    return (G @ G.T).numpy()[None]


@settings(max_examples=300, deadline=None)
@given(K=small_segments(), alpha=ALPHAS)
def test_one_small_segment_in_python_floats_equals_the_numpy_steps(K, alpha):
    # One segment of up to 4 tasks takes the Newton steps in Python floats (numpy's calls would
    # cost more than its arithmetic); two copies of it take them in numpy.
    small = torch.from_numpy(batched_fair_weights(K, alpha))
    numpy = torch.from_numpy(batched_fair_weights(np.concatenate([K, K]), alpha)[:1])
    assert_same_allocation(small, numpy, torch.from_numpy(K), 1e-12)


@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("T", [1, 2, 3, 4])
def test_small_segments_in_general_position_stay_in_python_floats(monkeypatch, alpha, T):
    calls = []
    newton = _fair_batched._batched_newton
    monkeypatch.setattr(_fair_batched, "_batched_newton", lambda *args: calls.append(1) or newton(*args))
    G = torch.randn(T, 64, generator=torch.Generator().manual_seed(T), dtype=torch.float64)
    if T > 1:
        G[1] = -0.5 * G[0] + G[1]
    K = (G @ G.T).numpy()
    w = batched_fair_weights(K[None], alpha)[0]
    assert not calls
    assert (np.abs(K @ w - w ** (-1 / alpha)) <= 1e-14 * (np.abs(K) @ w + w ** (-1 / alpha))).all()
    np.testing.assert_allclose(w, fair_weights(K, alpha), rtol=1e-12)


@pytest.mark.parametrize("T", [1, 2, 3, 5])
def test_no_segments_no_weights(T):
    K = torch.zeros(0, T, T, dtype=torch.float64)
    for combiner in (NashMTL(), FairGrad(), FairGrad(alpha=2.0)):
        assert combiner.weights(K).shape == (0, T)


def test_a_diverged_newton_step_is_handed_back_not_kept():
    # Rows 1e15 times the first, two of them nearly parallel: at α = 3 the undamped steps
    # overflowed β to inf, and |p − Cβ| ≤ rounding · (|C|β + p) read inf ≤ inf as passing.
    gen = torch.Generator().manual_seed(47)
    G = torch.randn(4, 33, generator=gen, dtype=torch.float64)
    G[1:] *= 1e15
    G[3] = 3.3 * G[1] + 1e-3 * G[3]
    K = (G @ G.T).numpy()
    for S in (1, 2):
        got = batched_fair_weights(np.repeat(K[None], S, 0), 3.0)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got[0], fair_weights(K, 3.0), rtol=1e-9)
