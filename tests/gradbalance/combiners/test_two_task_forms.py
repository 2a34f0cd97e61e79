"""The two-task closed forms (CAGrad, Nash-MTL/FairGrad at α = 1, MGDA, UPGrad) against the
general solvers they shortcut, segment by segment, on the hard families of two-row matrices."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradbalance.combiners import MGDA, CAGrad, FairGrad, NashMTL, UPGrad
from gradbalance.combiners._cagrad import conflict_averse_weights, two_task_weights
from gradbalance.combiners._solvers import (
    batched_min_norm_weights,
    fair_weights,
    min_norm_weights,
    nonzero_row_weights,
    two_task_bargaining_weights,
)
from gradbalance.combiners._upgrad import projection_weights

KINDS = (
    "normal",
    "zero-first",
    "zero-second",
    "zero-both",
    "parallel",
    "antiparallel",
    "nearly-parallel",
    "nearly-antiparallel",
    "tiny",
    "huge",
    "far-apart",
)


@st.composite
def two_row_segments(draw):
    """``[S, 2, 2]`` Gramians of two-row segments, each of a drawn kind, and each segment's
    cosine (NaN where a row is zero)."""
    S = draw(st.integers(1, 6))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    grams, cosines = [], []
    for _ in range(S):
        P = draw(st.integers(1, 12))
        g = torch.randn(2, P, generator=gen, dtype=torch.float64)
        kind = draw(st.sampled_from(KINDS))
        scale = draw(st.floats(0.1, 10.0))
        if kind.startswith("zero"):
            g[{"zero-first": [0], "zero-second": [1], "zero-both": [0, 1]}[kind]] = 0
        elif kind in ("parallel", "antiparallel"):
            g[1] = g[0] * (scale if kind == "parallel" else -scale)
        elif kind.startswith("nearly"):
            eps = draw(st.sampled_from([1e-4, 1e-7, 1e-10]))
            sign = 1 if kind == "nearly-parallel" else -1
            g[1] = sign * scale * g[0] + eps * torch.randn(P, generator=gen, dtype=torch.float64)
        elif kind == "tiny":
            g[draw(st.integers(0, 1))] *= 1e-10
        elif kind == "huge":
            g *= 1e15
        elif kind == "far-apart":
            g[draw(st.integers(0, 1))] *= draw(st.sampled_from([1e-8, 1e8, 1e-150]))
        K = g @ g.T
        grams.append(K)
        cosines.append(float(K[0, 1] / (K[0, 0].sqrt() * K[1, 1].sqrt())))
    return torch.stack(grams), np.array(cosines)


def _conditioning(cosines):
    """Per segment, how much the problem magnifies rounding: ~1/(1 − |ρ|), as an ulp in the
    cosine ``ρ`` of two nearly (anti-)parallel rows moves ``1 ∓ ρ`` by ε/(1 ∓ ρ) relative and
    every solver's weights with it (1 where a row is zero)."""
    return np.where(np.isnan(cosines), 1.0, 1 + 1e-2 / np.maximum(1 - np.abs(cosines), 1e-300))


def _assert_same_update(fast, reference, gramian, cosines, tol=1e-12):
    """The updates ``Σ_t w_t g_t`` agree: each task's contribution ``w_t ‖g_t‖`` to within
    ``tol`` times the segment's :func:`_conditioning` of the segment's largest contribution; a
    zero row's weight is 0 in both (``Combination.weights`` reports it)."""
    norms = np.sqrt(np.diagonal(gramian.numpy(), axis1=1, axis2=2))
    zero = norms == 0
    assert (fast.numpy()[zero] == 0).all() and (reference.numpy()[zero] == 0).all()  # as reported
    fast, reference = fast.numpy() * norms, reference.numpy() * norms
    size = np.maximum(np.abs(fast).max(1), np.abs(reference).max(1))
    bound = tol * size * _conditioning(cosines)
    bad = np.abs(fast - reference).max(1) > bound
    assert not bad.any(), (fast[bad], reference[bad], gramian.numpy()[bad])


@pytest.mark.parametrize("c", [0.5, 0.1, 1.0, 3.0, 0.0])
@given(segments=two_row_segments())
@settings(max_examples=150, deadline=None)
def test_cagrad_closed_form_equals_the_general_solver(c, segments):
    K, cosines = segments
    combiner = CAGrad(c=c, rescale=False)
    general = nonzero_row_weights(K, lambda k: conflict_averse_weights(k, 2, c))
    _assert_same_update(combiner.weights(K), general, K, cosines)


@pytest.mark.parametrize("combiner", [NashMTL(), FairGrad()], ids=["nash-mtl", "fairgrad"])
@given(segments=two_row_segments())
@settings(max_examples=200, deadline=None)
def test_bargaining_closed_form_equals_the_general_solver(combiner, segments):
    K, cosines = segments
    general = nonzero_row_weights(K, lambda k: fair_weights(k, 1.0))
    _assert_same_update(combiner.weights(K), general, K, cosines)


@given(segments=two_row_segments())
@settings(max_examples=200, deadline=None)
def test_mgda_closed_form_equals_both_general_solvers(segments):
    K, cosines = segments
    fast = MGDA().weights(K)
    rows = np.diagonal(K.numpy(), axis1=1, axis2=2) > 0
    _assert_same_update(fast, torch.from_numpy(batched_min_norm_weights(K.numpy(), rows)), K, cosines)
    _assert_same_update(fast, nonzero_row_weights(K, min_norm_weights), K, cosines)
    torch.testing.assert_close(MGDA(reduction="sum").weights(K), 2 * fast)


@given(segments=two_row_segments())
@settings(max_examples=200, deadline=None)
def test_upgrad_closed_form_equals_the_general_solver(segments):
    K, cosines = segments
    general = torch.from_numpy(projection_weights(K.numpy()).sum(1) / 2)
    _assert_same_update(UPGrad().weights(K), general, K, cosines)


def test_the_closed_forms_settle_segments_in_general_position():
    # Two rows in general position never reach the general solver, nor do nearly opposed ones
    # while the ball is small enough for both to progress: the fallback is for the general
    # solver's special cases only (a hull through the origin, zero progress), or the tests above
    # would compare the general solver with itself.
    g = torch.randn(2000, 2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g[:200, 1] = -g[:200, 0] * 3 + 1e-3 * g[:200, 1]  # 1 + ρ ~ 1e-7
    K = (g @ g.transpose(1, 2)).numpy()
    for c in (0.1, 0.5, 1.0, 3.0):
        settled = two_task_weights(K, c)[1]
        assert settled[200:].all(), c
        assert settled[:200].all() or c >= 1, c
    assert two_task_bargaining_weights(K)[1].all()
