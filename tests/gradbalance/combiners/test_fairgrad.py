import math

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

import gradbalance
from gradbalance import MGDA, FairGrad, NashMTL

from _matrices import task_matrices

ALPHAS = st.sampled_from([0.25, 0.5, 1.0, 2.0, 5.0, 8.0])


def pareto_stationary(G: torch.Tensor) -> bool:
    """Some convex combination of the non-zero unit rows is (nearly) zero."""
    rows = G[G.norm(dim=1) > 0]
    unit = rows / rows.norm(dim=1, keepdim=True)
    return float(MGDA().combine(unit).norm()) < 1e-4


def utility(x: np.ndarray, alpha: float) -> np.ndarray:
    """The α-fair utility u_α(x) = x^(1−α)/(1−α), log x at α = 1 (Mo & Walrand 2000)."""
    return np.log(x) if alpha == 1 else x ** (1 - alpha) / (1 - alpha)


def reference_fair_direction(
    G: torch.Tensor, alpha: float, radius: float, start: np.ndarray | None = None
) -> np.ndarray:
    """Ban & Ji 2024, the α-fair problem as written: maximize Σ_t u_α(g_t · d) over ‖d‖ ≤ radius,
    in vector space with a generic solver (SLSQP), from ``start`` or else from a direction every
    task agrees with (MGDA's, at half the radius)."""
    Gn = G.numpy()
    if start is None:
        start = MGDA().combine(G).numpy()
        start *= 0.5 * radius / np.linalg.norm(start)
    result = minimize(
        lambda d: -utility(np.maximum(Gn @ d, 1e-12), alpha).sum(),
        start,
        jac=lambda d: -(Gn * np.maximum(Gn @ d, 1e-12)[:, None] ** -alpha).sum(0),
        constraints=[
            {"type": "ineq", "fun": lambda d: radius**2 - d @ d, "jac": lambda d: -2 * d},
            {"type": "ineq", "fun": lambda d: Gn @ d - 1e-9, "jac": lambda d: Gn},
        ],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    return result.x


@settings(max_examples=60, deadline=None)
@given(
    G=task_matrices(max_tasks=5, max_columns=12, kinds=("normal",)),
    alpha=ALPHAS,
    scale=st.sampled_from([0.3, 1.0, 3.0]),
)
@example(  # SLSQP from MGDA's direction stalls at half the radius here
    G=torch.tensor(
        [
            [-0.0050, -1.4425, 0.1071],
            [1.2283, 0.0129, -0.2495],
            [-2.0169, 1.2936, -0.4810],
            [-0.5295, -1.1090, 0.8226],
        ],
        dtype=torch.float64,
    ),
    alpha=8.0,
    scale=0.3,
)
def test_maximizes_the_total_fair_utility(G, alpha, scale):
    # The system K w = w^(−1/α) is the KKT condition of the ball problem at the radius ‖d‖; a
    # generic solver on that ball must find no better direction, and the same one (the
    # utility is strictly concave in the gradients' span).
    G = G * scale
    assume(not pareto_stationary(G))
    d = FairGrad(alpha=alpha).combine(G)
    radius = float(d.norm())
    want = reference_fair_direction(G, alpha, radius)
    Gn = G.numpy()
    ours, theirs = utility(Gn @ d.numpy(), alpha).sum(), utility(np.maximum(Gn @ want, 1e-12), alpha).sum()
    assert ours >= theirs - 1e-7 * (abs(theirs) + 1)
    if ours > theirs + 1e-7 * (abs(theirs) + 1):
        # SLSQP stalled short of our utility (seen at α = 8, where u_α is steep): started at our
        # direction instead, it must not find a better one nearby, which for a strictly concave
        # utility on the ball means ours is the maximum.
        want = reference_fair_direction(G, alpha, radius, start=d.numpy().copy())
    assert float(np.linalg.norm(d.numpy() - want)) <= 1e-4 * radius


@settings(max_examples=200, deadline=None)
@given(G=task_matrices(kinds=("normal", "zero", "parallel", "tiny", "huge")), alpha=ALPHAS)
def test_solves_the_fairness_equations(G, alpha):
    # The KKT system: K w = w^(−1/α) with w > 0 on the non-zero rows, so g_t · d = w_t^(−1/α). Each
    # task's progress is known to its norm times the sizes summed into d (a tiny row nearly
    # opposed to a large one progresses far below that: its equation holds to rounding only).
    assume(bool((G.norm(dim=1) > 0).any()) and not pareto_stationary(G))
    info = FairGrad(alpha=alpha).combine_with_info(G)
    w, d = info.weights[0], info.direction
    norms = G.norm(dim=1)
    active = norms > 0
    assert (w[~active] == 0).all()
    assert (w[active] > 0).all() and torch.isfinite(d).all()
    progress = G[active] @ d
    want = w[active] ** (-1 / alpha)
    rounding = 1e-12 * norms[active] * float((w * norms).sum())
    assert ((progress - want).abs() <= 1e-8 * want + rounding).all()


@settings(max_examples=60, deadline=None)
@given(
    G=task_matrices(max_columns=300, kinds=("normal", "zero", "parallel", "antiparallel")),
    alpha=ALPHAS,
    log_scale=st.floats(-6, 6),
    seed=st.integers(0, 1000),
)
def test_scale_and_order(G, alpha, log_scale, seed):
    # Every row times c: d times c^((1−α)/(1+α)) (scale-free only at α = 1); task order is free.
    d = FairGrad(alpha=alpha).combine(G)
    c = math.exp(log_scale)
    tolerance = 1e-8 * (float(d.norm()) + 1)
    want = c ** ((1 - alpha) / (1 + alpha)) * d
    torch.testing.assert_close(
        FairGrad(alpha=alpha).combine(c * G), want, rtol=0, atol=1e-8 * (float(want.norm()) + 1)
    )
    order = torch.randperm(G.shape[0], generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(FairGrad(alpha=alpha).combine(G[order]), d, rtol=0, atol=tolerance)


@pytest.mark.parametrize("alpha", [0.25, 0.5, 1.0, 2.0, 8.0])
def test_orthogonal_tasks_in_closed_form(alpha):
    # K = diag(a², b²): a² w₁ = w₁^(−1/α), so w₁ = a^(−2α/(1+α)) and g₁ · d = a^(2/(1+α)): the
    # task with the larger gradient progresses more, less so as α grows.
    a, b = 0.5, 4.0
    G = torch.tensor([[a, 0.0], [0.0, b]], dtype=torch.float64)
    info = FairGrad(alpha=alpha).combine_with_info(G)
    norms = torch.tensor([a, b], dtype=torch.float64)
    torch.testing.assert_close(info.weights[0], norms ** (-2 * alpha / (1 + alpha)))
    torch.testing.assert_close(G @ info.direction, norms ** (2 / (1 + alpha)))


def test_alpha_one_is_nash_mtl():
    G = torch.randn(4, 60, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(FairGrad().combine(G), NashMTL().combine(G))
    assert torch.equal(FairGrad(alpha=1).combine(G), NashMTL().combine(G))


def test_the_fairness_exponent_moves_between_sum_and_max_min():
    # Two tasks at 60° with norms 1 and 5. Small α: towards the sum of the gradients (total
    # progress). Large α: towards max-min fairness, the direction whose worst task progresses
    # most per unit length, ‖MGDA's min-norm point‖ (here g₁ itself: 1).
    angle = math.pi / 3
    G = torch.tensor([[1.0, 0.0], [5 * math.cos(angle), 5 * math.sin(angle)]], dtype=torch.float64)

    def cosine(x, y):
        return float(x @ y / (x.norm() * y.norm()))

    def worst(d):
        return float((G @ d).min() / d.norm())

    directions = [FairGrad(alpha=a).combine(G) for a in (0.05, 0.5, 2.0, 50.0)]
    cosines = [cosine(d, G.sum(0)) for d in directions]
    assert cosines[0] > 0.999 and cosines == sorted(cosines, reverse=True)
    worsts = [worst(d) for d in directions]
    assert worsts == sorted(worsts) and worsts[-1] > 0.99 * float(MGDA().combine(G).norm())


def test_stationary_and_zero_rows():
    g = torch.tensor([3.0, 4.0], dtype=torch.float64)
    # Opposed: no direction helps both, the update is zero.
    assert torch.equal(
        FairGrad(alpha=2.0).combine(torch.stack([g, -2 * g])), torch.zeros(2, dtype=torch.float64)
    )
    e1, e2 = torch.eye(2, dtype=torch.float64)
    info = FairGrad(alpha=2.0).combine_with_info(
        torch.stack([e1, torch.zeros(2, dtype=torch.float64), 2 * e2])
    )
    w = info.weights[0]
    assert float(w[1]) == 0 and bool((w[[0, 2]] > 0).all())


def test_extreme_exponents_stay_finite():
    # c_t = ‖g_t‖^(1/α − 1) spans hundreds of orders of magnitude here; the solver works with it
    # relative to its largest entry and restores the scale in logarithms. At α = 30 the huge
    # row's weight is ~1e-750, below float64's range: it underflows to 0, and the others'
    # weights still make that task progress.
    G = torch.randn(3, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    G[0] *= 1e-10
    G[2] *= 1e15
    for alpha in (0.02, 0.1, 30.0):
        info = FairGrad(alpha=alpha).combine_with_info(G)
        assert torch.isfinite(info.direction).all() and bool((info.weights[0] >= 0).all())
        assert bool((G @ info.direction > 0).all())


def test_options_are_validated_and_registered():
    made = gradbalance.create("fairgrad", alpha=2.0)
    assert isinstance(made, FairGrad) and made.alpha == 2.0
    assert gradbalance.options("fairgrad") == ["alpha"]
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
            FairGrad(alpha=bad)
    with pytest.raises(TypeError, match="alpha must be a number"):
        FairGrad(alpha="2")
