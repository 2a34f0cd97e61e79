import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gradbalance.combiners._upgrad as upgrad_module
from gradbalance import UPGrad
from gradbalance.testing import strategies

from _matrices import reference_pcgrad, scale_of, segment_pieces, task_matrices


def reference_projection(G: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The projection of ``x`` onto {y : G y ≥ 0} by brute force in vector space: for every
    subset of constraints, project x onto the subspace where they hold with equality (least
    squares); of the candidates that meet every constraint, the one nearest to x."""
    T = G.shape[0]
    scale = float(G.norm(dim=1).max()) * float(x.norm())
    best = None
    for k in range(T + 1):
        for subset in itertools.combinations(range(T), k):
            y = x
            if subset:
                A = G[list(subset)].T  # [P, k]
                coefficients = torch.linalg.lstsq(A, x.unsqueeze(1), driver="gelsd").solution[:, 0]
                y = x - A @ coefficients
            if float((G @ y).min()) >= -1e-9 * scale and (best is None or (y - x).norm() < (best - x).norm()):
                best = y
    assert best is not None  # y = 0 always qualifies
    return best


def reference_upgrad(G: torch.Tensor) -> torch.Tensor:
    """Quinton & Rey 2024: the mean over the rows of their projections onto the dual cone."""
    return torch.stack([reference_projection(G, g) for g in G]).mean(0)


@settings(max_examples=100, deadline=None)
@given(G=task_matrices(max_tasks=5, max_columns=300, kinds=("normal", "zero", "parallel", "antiparallel")))
def test_matches_brute_force_projections(G):
    d = UPGrad().combine(G)
    want = reference_upgrad(G)
    assert (d - want).norm() <= 1e-8 * scale_of(G)


@settings(max_examples=100, deadline=None)
@given(G=task_matrices(max_tasks=2, kinds=("normal", "parallel", "antiparallel", "tiny")))
def test_two_tasks_are_pcgrads_mean(G):
    # With two rows the dual cone's projection of g1 is g1 itself or g1 with its component
    # along g2 removed: PCGrad's projection, whatever the order.
    d = UPGrad().combine(G)
    want = reference_pcgrad(G, seed=0, reduction="mean")
    assert (d - want).norm() <= 1e-9 * scale_of(G)


@settings(max_examples=200, deadline=None)
@given(G=task_matrices(), reduction=st.sampled_from(["sum", "mean"]))
def test_never_conflicts_and_keeps_every_task(G, reduction):
    # Every projection lies in the dual cone, so their mean does: g_j · d ≥ 0 for every task.
    # Each row's own projection carries weight 1 on it and the others add ≥ 0, so an active
    # task's weight is at least 1/T (1 for "sum"); a zero row gets 0.
    info = UPGrad(reduction=reduction).combine_with_info(G)
    weights, d = info.weights[0], info.direction
    T = G.shape[0]
    norms = G.norm(dim=1)
    active = norms > 0
    assert (weights[~active] == 0).all()
    floor = 1.0 if reduction == "sum" else 1.0 / T
    if active.any():
        assert float(weights[active].min()) >= floor * (1 - 1e-12)
    # Rounding allowance: the constraint values are sums of terms up to ‖g_j‖ Σ_k w_k ‖g_k‖.
    allowance = 1e-10 * norms * float(weights @ norms)
    assert bool((G @ d >= -allowance).all())


def test_examples():
    e1, e2 = torch.eye(2, dtype=torch.float64)
    # Orthogonal: no conflict, the mean.
    torch.testing.assert_close(
        UPGrad().combine(torch.stack([e1, 3 * e2])), torch.tensor([0.5, 1.5], dtype=torch.float64)
    )
    # Opposed: the dual cone of g and -g is g's orthogonal complement, both project to 0.
    g = torch.tensor([3.0, 4.0], dtype=torch.float64)
    assert UPGrad().combine(torch.stack([g, -2 * g])).abs().max() <= 1e-15
    # 135°: each drops its component along the other.
    a, b = e1, torch.tensor([-1.0, 1.0], dtype=torch.float64)
    want = ((a - (a @ b) / (b @ b) * b) + (b - (a @ b) / (a @ a) * a)) / 2
    torch.testing.assert_close(UPGrad().combine(torch.stack([a, b])), want)
    # A zero row (a task that sat out the step) gets weight 0 and leaves the others alone.
    info = UPGrad().combine_with_info(torch.stack([e1, torch.zeros(2, dtype=torch.float64), e2]))
    torch.testing.assert_close(info.weights[0], torch.tensor([1 / 3, 0.0, 1 / 3], dtype=torch.float64))


def test_three_tasks_where_one_projection_needs_two_constraints():
    # g1 conflicts with g2 and g3; projecting onto g2's complement alone still conflicts with
    # g3, so the active-set method has to add both (and the reference agrees).
    G = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, -1.0, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(UPGrad().combine(G), reference_upgrad(G), rtol=1e-12, atol=1e-12)
    assert bool((G @ UPGrad().combine(G) >= -1e-12).all())


@settings(max_examples=100, deadline=None)
@given(G=task_matrices(max_columns=40), cuts=st.lists(st.integers(1, 39), max_size=5))
def test_segments_solved_side_by_side_match_one_at_a_time(G, cuts):
    # Every segment's T programs run in one batched active-set loop with the other segments'.
    pieces = segment_pieces(G.shape[1], cuts)
    got = UPGrad().combine(G, [b - a for a, b in pieces])
    for a, b in pieces:
        assert (got[a:b] - UPGrad().combine(G[:, a:b])).norm() <= 1e-9 * scale_of(G[:, a:b])


@st.composite
def segment_gramians(draw, min_tasks=3, max_tasks=8):
    """Gramians ``[S, T, T]`` of segments of every row kind, each scaled by 1e-150 to 1e150."""
    T, S = draw(st.integers(min_tasks, max_tasks)), draw(st.integers(1, 4))
    out = []
    for _ in range(S):
        G = strategies.draw_rows(draw, T, draw(st.integers(1, 40)), strategies.ROW_KINDS, torch.float64)
        out.append((G @ G.T) * 10.0 ** draw(st.integers(-150, 150)))
    return torch.stack(out).numpy()


@settings(max_examples=300, deadline=None)
@given(K=segment_gramians())
def test_passive_sets_match_the_walk(K):
    # The fast paths (every passive set at once up to four tasks, guesses above) against the
    # general one (the active-set walk), forced, on random and degenerate segments.
    T = K.shape[1]
    fast = upgrad_module.passive_set_weights(K)
    walked = upgrad_module.projection_weights(K).sum(1) / T
    np.testing.assert_allclose(fast, walked, rtol=1e-12, atol=1e-12 * np.abs(walked).max())


@pytest.mark.parametrize("zero_row", [False, True])
@pytest.mark.parametrize("T", [3, 4, 8])
def test_passive_sets_settle_rows_in_general_position(monkeypatch, T, zero_row):
    # The benchmark's Gramians (a conflicting pair among random rows), with or without a task
    # that sat out the step, never reach the walk.
    G = torch.randn(20, T, 64, generator=torch.Generator().manual_seed(T), dtype=torch.float64)
    G[:, 1] = -0.5 * G[:, 0] + G[:, 1]
    if zero_row:
        G[:, 2] = 0
    K = (G @ G.mT).numpy()
    walked = upgrad_module.projection_weights(K).sum(1) / T
    monkeypatch.setattr(upgrad_module, "projection_weights", lambda K: pytest.fail("walked"))
    np.testing.assert_allclose(upgrad_module.passive_set_weights(K), walked, rtol=1e-12)
    assert (walked > 1 / T + 1e-3).any()  # some row was projected


@pytest.mark.parametrize("T", [3, 4, 8])
def test_a_one_column_segment_leaves_the_others_batched(monkeypatch, T):
    # A one-column segment has parallel rows (singular systems): it alone takes the walk.
    G = torch.randn(6, T, 64, generator=torch.Generator().manual_seed(T), dtype=torch.float64)
    G[:, 1] = -0.5 * G[:, 0] + G[:, 1]
    G[0, :, 1:] = 0
    K = (G @ G.mT).numpy()
    want = upgrad_module.projection_weights(K).sum(1) / T
    walk = upgrad_module.projection_weights
    walked = []
    monkeypatch.setattr(upgrad_module, "projection_weights", lambda K: walked.append(len(K)) or walk(K))
    np.testing.assert_allclose(upgrad_module.passive_set_weights(K), want, rtol=1e-12)
    assert walked == [1]


@settings(max_examples=300, deadline=None)
@given(K=segment_gramians(min_tasks=1, max_tasks=3).map(lambda K: K[:1]))
def test_one_small_segment_in_python_floats_matches_the_walk(K):
    # One segment of up to three tasks takes the Python-float step (or hands back to numpy).
    T = K.shape[1]
    small = UPGrad().weights(torch.from_numpy(K)).numpy()
    walked = upgrad_module.projection_weights(K).sum(1) / T
    np.testing.assert_allclose(small, walked, rtol=1e-12, atol=1e-12 * np.abs(walked).max())


def test_one_small_segment_in_general_position_takes_python_floats(monkeypatch):
    G = torch.randn(1, 3, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    G[:, 1] = -0.5 * G[:, 0] + G[:, 1]
    K = G @ G.mT
    want = upgrad_module.projection_weights(K.numpy()).sum(1) / 3
    monkeypatch.setattr(upgrad_module, "passive_set_weights", lambda K: pytest.fail("numpy"))
    np.testing.assert_allclose(UPGrad().weights(K).numpy(), want, rtol=1e-12)
    assert (want > 1 / 3 + 1e-3).any()  # some row was projected
