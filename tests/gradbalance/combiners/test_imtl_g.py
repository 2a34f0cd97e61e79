import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gradbalance import IMTLG
from gradbalance.combiners._solvers import SMALL_TASKS

from _matrices import cosine_condition, task_matrices


def reference_imtl_g(G: torch.Tensor) -> torch.Tensor:
    """Liu et al. 2021, eq. 9, with explicit vectors: D = [g_1 − g_t], U = [u_1 − u_t] (rows,
    t = 2..T), α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹, α_1 = 1 − Σ α_{2:T}, update Σ α_t g_t."""
    U_rows = G / G.norm(dim=1, keepdim=True)
    D = G[:1] - G[1:]
    U = U_rows[:1] - U_rows[1:]
    alpha_rest = G[0] @ U.T @ torch.linalg.inv(D @ U.T)
    alpha = torch.cat([1 - alpha_rest.sum(0, keepdim=True), alpha_rest])
    return alpha


def general_position(G: torch.Tensor) -> bool:
    """Rows independent enough that the paper's (T−1)×(T−1) system is well conditioned."""
    return cosine_condition(G) < 1e6


@settings(max_examples=200, deadline=None)
@given(G=task_matrices(max_tasks=SMALL_TASKS))
def test_one_small_segment_in_python_floats_matches_the_numpy_path(G):
    # One segment of a few tasks takes the Python-float step (or hands back to numpy); two
    # segments take the eigendecomposition.
    K = (G @ G.T)[None]
    small = IMTLG().weights(K)
    batched = IMTLG().weights(K.expand(2, -1, -1).contiguous())
    torch.testing.assert_close(small[0], batched[0], rtol=1e-10, atol=1e-10 * float(batched.abs().max()))


@settings(max_examples=150, deadline=None)
@given(G=task_matrices(kinds=("normal",)), reduction=st.sampled_from(["sum", "mean"]))
def test_matches_paper_closed_form(G, reduction):
    # Rows of one scale: the paper's differences g_1 − g_t lose a small row next to a huge one
    # (the library works on cosines; the projection test below covers mixed scales).
    T, P = G.shape
    assume(2 <= T <= P and general_position(G))
    alpha = reference_imtl_g(G)
    size = float(alpha.abs().sum())
    assume(size < 1e6)  # Σ α̃ near zero: the paper's normalization is ill-conditioned
    # The documented departure: where negative weights push Σ|α| past T, or the paper's
    # update ascends every task (negative common projection), the library rescales the same
    # weights to Σ|α| = T, with the sign that descends.
    descent = float(G[0] @ (alpha @ G)) > 0
    cap = 1.0 if descent and size <= T else T / size
    info = IMTLG(reduction=reduction).combine_with_info(G)
    factor = (T if reduction == "sum" else 1) * cap * (1 if descent else -1)
    torch.testing.assert_close(info.weights[0], factor * alpha, rtol=1e-6, atol=1e-9)
    want = factor * (alpha @ G)
    assert (info.direction - want).norm() <= 1e-5 * float(alpha.abs() @ G.norm(dim=1)) * abs(factor) + 1e-300


@settings(max_examples=200, deadline=None)
@given(G=task_matrices())
def test_equal_positive_projections_on_every_task(G):
    direction = IMTLG().combine(G)
    assert torch.isfinite(direction).all()
    active = G[G.norm(dim=1) > 0]
    if len(active) == 0:
        assert (direction == 0).all()
        return
    assume(general_position(active))
    projections = (active / active.norm(dim=1, keepdim=True)) @ direction
    assert float(projections.min()) > 0
    torch.testing.assert_close(projections, projections.mean().expand_as(projections), rtol=1e-6, atol=0)


@settings(max_examples=100, deadline=None)
@given(G=task_matrices())
def test_weights_are_bounded_and_zero_rows_get_none(G):
    weights = IMTLG().combine_with_info(G).weights[0]
    zero = G.norm(dim=1) == 0
    assert (weights[zero] == 0).all()
    if not zero.all():
        total, size = float(weights.sum()), float(weights.abs().sum())
        paper = total == pytest.approx(1, abs=1e-9)
        capped = size == pytest.approx(int((~zero).sum()), rel=1e-9)
        assert paper or capped or size == 0  # zero: the tasks cancel out exactly
        assert size <= (~zero).sum() * (1 + 1e-9)


def test_balances_a_large_gradient_against_small_ones():
    # Orthogonal tasks, norms 1, 10 and 0.1: the sum follows the big one; IMTL-G moves every
    # task's loss at the same rate (projection 1/Σ(1/‖g_t‖) on each unit gradient).
    G = torch.diag(torch.tensor([1.0, 10.0, 0.1], dtype=torch.float64))
    direction = IMTLG().combine(G)
    rate = 1 / (1 + 0.1 + 10)
    torch.testing.assert_close(direction, torch.full((3,), rate, dtype=torch.float64))


def test_two_parallel_tasks_and_two_opposed_tasks():
    g = torch.tensor([3.0, 4.0], dtype=torch.float64)
    # Parallel: any positive mix of the two improves both equally in direction; weights sum to 1.
    info = IMTLG().combine_with_info(torch.stack([g, 2 * g]))
    assert float(info.weights.sum()) == pytest.approx(1)
    assert float(info.direction @ g) > 0
    # Exactly opposed: no direction helps both; the update is zero rather than a division by zero.
    assert IMTLG().combine(torch.stack([g, -g])).abs().max() == 0


def test_opposed_tasks_that_balance_out_give_zero_in_any_order():
    # One dimension: C is rank one with signs (+, −, +, −), so C⁺ 1 = 0 exactly, but its
    # rounding noise was normalized into an update of norm ~2 whose sign followed the order.
    G = torch.tensor([[1.541], [-0.2934], [0.0], [0.5684], [-1.0845]], dtype=torch.float64)
    for order in ([0, 1, 2, 3, 4], [4, 0, 1, 3, 2]):
        assert IMTLG().combine(G[order]).abs().max() == 0


def test_tasks_in_general_position_stay_in_python_floats():
    from gradbalance.combiners._imtl_g import small_equal_projection_weights

    G = torch.randn(3, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    G[1] = -0.5 * G[0] + G[1]
    assert small_equal_projection_weights((G @ G.T).tolist()) is not None
    parallel = torch.stack([G[0], 2 * G[0], G[2]])
    assert small_equal_projection_weights((parallel @ parallel.T).tolist()) is None
