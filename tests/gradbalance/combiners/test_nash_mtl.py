import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

import gradbalance
from gradbalance import MGDA, NashMTL

from _matrices import task_matrices


def pareto_stationary(G: torch.Tensor) -> bool:
    """Some convex combination of the non-zero unit rows is (nearly) zero."""
    rows = G[G.norm(dim=1) > 0]
    unit = rows / rows.norm(dim=1, keepdim=True)
    return float(MGDA().combine(unit).norm()) < 1e-4


def reference_bargaining(G: torch.Tensor) -> torch.Tensor:
    """Navon et al. 2022, eq. 2 as written: maximize Σ_t log(g_t · d) over ‖d‖² ≤ T, in vector
    space with a generic solver (SLSQP), from a direction every task agrees with (MGDA's)."""
    Gn = (G / G.norm(dim=1, keepdim=True)).numpy()  # the solution does not depend on row scale
    T = Gn.shape[0]
    start = MGDA().combine(torch.from_numpy(Gn)).numpy()
    start *= 0.5 * np.sqrt(T) / np.linalg.norm(start)
    result = minimize(
        lambda d: -np.log(np.maximum(Gn @ d, 1e-300)).sum(),
        start,
        jac=lambda d: -(Gn / (Gn @ d)[:, None]).sum(0),
        constraints=[
            {"type": "ineq", "fun": lambda d: T - d @ d, "jac": lambda d: -2 * d},
            {"type": "ineq", "fun": lambda d: Gn @ d - 1e-9, "jac": lambda d: Gn},
        ],
        method="SLSQP",
        options={"ftol": 1e-13, "maxiter": 1000},
    )
    # SLSQP may stop with "positive directional derivative" at its own rounding floor; the
    # test compares objective values and distance instead of trusting its status.
    return torch.from_numpy(result.x)


def progress_product(G: torch.Tensor, d: torch.Tensor) -> float:
    """Σ_t log(ĝ_t · d), the objective of eq. 2 on the unit rows."""
    return float(torch.log((G / G.norm(dim=1, keepdim=True)) @ d).sum())


@settings(max_examples=60, deadline=None)
@given(G=task_matrices(max_tasks=5, max_columns=12, kinds=("normal", "tiny", "huge")))
def test_maximizes_the_product_of_progress(G):
    assume(not pareto_stationary(G))
    d = NashMTL().combine(G)
    want = reference_bargaining(G)
    T = G.shape[0]
    assert float(want @ want) <= T * (1 + 1e-9)
    # At least as good as the generic solver, and the same point (the optimum is unique).
    assert progress_product(G, d) >= progress_product(G, want) - 1e-9
    assert float((d - want).norm()) <= 1e-4 * T**0.5


@settings(max_examples=200, deadline=None)
@given(G=task_matrices(kinds=("normal", "zero", "parallel", "tiny", "huge")))
def test_solves_the_bargaining_equations(G):
    # Theorem 5.1: K α = 1/α with α > 0 on the non-zero rows, so g_t · d = 1/α_t and ‖d‖² = T.
    assume(bool((G.norm(dim=1) > 0).any()) and not pareto_stationary(G))
    info = NashMTL().combine_with_info(G)
    alpha, d = info.weights[0], info.direction
    active = G.norm(dim=1) > 0
    assert (alpha[~active] == 0).all()
    assert (alpha[active] > 0).all()
    progress = G[active] @ d
    torch.testing.assert_close(progress * alpha[active], torch.ones_like(progress), rtol=0, atol=1e-8)
    torch.testing.assert_close(d @ d, torch.tensor(float(active.sum()), dtype=d.dtype), rtol=1e-9, atol=0)


@settings(max_examples=60, deadline=None)
@given(
    G=task_matrices(max_columns=300, kinds=("normal", "zero", "parallel", "antiparallel")),
    log_scales=st.lists(st.floats(-6, 6), min_size=8, max_size=8),
    seed=st.integers(0, 1000),
)
def test_invariant_to_each_tasks_scale_and_order(G, log_scales, seed):
    # Scaling task t's gradient by c_t scales α_t by 1/c_t and leaves the update unchanged.
    d = NashMTL().combine(G)
    scales = torch.tensor(log_scales[: G.shape[0]], dtype=G.dtype).exp()
    tolerance = 1e-8 * (float(d.norm()) + 1)
    torch.testing.assert_close(NashMTL().combine(scales[:, None] * G), d, rtol=0, atol=tolerance)
    order = torch.randperm(G.shape[0], generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(NashMTL().combine(G[order]), d, rtol=0, atol=tolerance)


def test_examples():
    e1, e2 = torch.eye(2, dtype=torch.float64)
    # Orthogonal: α_t = 1/‖g_t‖, the sum of the unit gradients.
    info = NashMTL().combine_with_info(torch.stack([e1, 3 * e2]))
    torch.testing.assert_close(info.weights[0], torch.tensor([1.0, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(info.direction, torch.tensor([1.0, 1.0], dtype=torch.float64))
    # Parallel: the common unit direction at length √T.
    g = torch.tensor([3.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(NashMTL().combine(torch.stack([g, 2 * g])), 2**0.5 * g / 5)
    # Opposed (Pareto-stationary): no direction helps both, the update is zero.
    assert torch.equal(NashMTL().combine(torch.stack([g, -2 * g])), torch.zeros(2, dtype=torch.float64))
    # Three unit vectors 120° apart sum to zero: stationary too.
    angles = torch.tensor([0.0, 2.0943951023931957, 4.1887902047863905], dtype=torch.float64)
    star = torch.stack([angles.cos(), angles.sin()], 1)
    assert float(NashMTL().combine(star).abs().max()) == 0
    # 120° between two tasks: by symmetry equal weights; g_t · d = 1/α_t fixes them.
    a, b = star[0], star[1]
    d = NashMTL().combine(torch.stack([a, b]))
    torch.testing.assert_close(d, 2**0.5 * (a + b) / (a + b).norm())


def test_zero_row_sits_out():
    e1, e2 = torch.eye(2, dtype=torch.float64)
    G = torch.stack([e1, torch.zeros(2, dtype=torch.float64), 2 * e2])
    info = NashMTL().combine_with_info(G)
    torch.testing.assert_close(info.weights[0], torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64))


def test_nearly_opposed_tasks_still_both_progress():
    # Not stationary, but close: large weights, every task still progresses and ‖d‖² = T.
    G = torch.tensor([[1.0, 0.0], [-1.0, 1e-3]], dtype=torch.float64)
    info = NashMTL().combine_with_info(G)
    d = info.direction
    assert bool((G @ d > 0).all())
    torch.testing.assert_close(d @ d, torch.tensor(2.0, dtype=torch.float64))
    torch.testing.assert_close((G @ d) * info.weights[0], torch.ones(2, dtype=torch.float64))


def test_registered_by_name():
    assert isinstance(gradbalance.create("nash-mtl"), NashMTL)
    # The paper's refresh interval is a solver-time saving this exact solver does not need.
    with pytest.raises(TypeError, match="update_weights_every.*accepts: no options"):
        gradbalance.create("nash-mtl", update_weights_every=5)


@pytest.mark.parametrize("T", [2, 3, 8])
def test_update_length_is_fixed_by_the_task_count(T):
    # Any gradient scale: ‖d‖ = √T (the paper's step is normalized; the learning rate sets it).
    G = torch.randn(T, 500, dtype=torch.float64, generator=torch.Generator().manual_seed(T)) * 1e-7
    assert abs(float(NashMTL().combine(G).norm()) - T**0.5) < 1e-9
    assert float(NashMTL().combine(G * 1e12).norm()) == pytest.approx(T**0.5, rel=1e-9)


# Four tasks in three dimensions, two nearly opposed (cosine −0.9999996) and not
# Pareto-stationary (the unit gradients' min-norm point has norm 3.8e-4): the bargaining
# solution exists (K α = 1/α to 2e-9 by BFGS in log α, weights ~1580 on the opposed pair), but
# the damped Newton descent stops at f's rounding and the log-space polish does not converge,
# so the returned weights leave residuals of 0.02 and the update conflicts with task 0. Found by
# the conformance kit's non-conflicting check on the nearly-parallel family (about one run in
# 16 of 20 examples); NON_CONFLICTING stays undeclared until the solver handles it.
NEARLY_OPPOSED = [
    ["0x1.529cc078113dap-1", "0x1.11548d02b8fe5p-2", "0x1.f94295e129d76p-5"],
    ["-0x1.5252961adca30p-1", "-0x1.11c06fe99c7b3p-2", "-0x1.fa7fe03daf643p-5"],
    ["-0x1.85d427c6372fcp+0", "0x1.86d825192ee02p-2", "-0x1.07115b0a48f26p+0"],
    ["-0x1.204874d847519p-1", "-0x1.c8da4d337dd1fp-1", "-0x1.dd2f7ac4d1df3p-5"],
]


@pytest.mark.xfail(strict=True, reason="Newton stalls on nearly opposed tasks (see NEARLY_OPPOSED)")
def test_nearly_opposed_tasks_in_few_dimensions_all_progress():
    G = torch.tensor([[float.fromhex(x) for x in row] for row in NEARLY_OPPOSED], dtype=torch.float64)
    d = NashMTL().combine(G)
    assert bool((G @ d > 0).all()), (G @ d).tolist()
