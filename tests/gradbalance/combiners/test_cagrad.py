import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import gradbalance
import gradbalance.combiners._cagrad as cagrad_module
from gradbalance import MGDA, CAGrad
from gradbalance.testing import strategies

from _matrices import cosine_condition, scale_of, task_matrices

C_VALUES = st.sampled_from([0.1, 0.5, 0.9, 1.0, 2.0, 5.0])
# c = 1 with two exactly opposed rows and g0 along them puts the ball tangent to the plane the
# optimum must lie in: the optimum then moves by √eps of the norms when the rounding does, and
# comparing two computations of it (scaled, permuted, segmented) needs other values of c.
WELL_POSED_C = st.sampled_from([0.1, 0.5, 0.9, 2.0, 5.0])
TOL = 1e-9


def nothing_guessed(K: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """In place of :func:`guessed_weights`: no segment settled, all to the per-segment solver
    (with ``small_gramian`` patched to ``None``, one small segment too)."""
    return np.zeros(K.shape[:2]), np.zeros(len(K), dtype=bool)


def assert_matches_the_per_segment_solver(fast: np.ndarray, K: torch.Tensor, c: float, **fast_paths) -> None:
    """``fast`` (weights of ``K`` by a fast path) equals the per-segment solver's, reached by
    patching ``fast_paths`` out of the module: to 1e-12, or to 10× what rounding ``K`` alone
    (a factor 3) moves the per-segment answer where the problem is that sensitive."""
    with pytest.MonkeyPatch.context() as patch:
        for name, replacement in fast_paths.items():
            patch.setattr(cagrad_module, name, replacement)
        general = CAGrad(c=c, rescale=False).weights(K).numpy()
        rounded = CAGrad(c=c, rescale=False).weights(K * 3.0).numpy()
    size = np.abs(general).max(1, keepdims=True)
    sensitivity = np.abs(rounded - general).max(1, keepdims=True)
    assert (np.abs(fast - general) <= np.maximum(1e-12 * size, 10 * sensitivity)).all()


def reference_cagrad(G: torch.Tensor, c: float) -> tuple[torch.Tensor, np.ndarray]:
    """Liu et al. 2021, the paper's code in vector space (without its 1e-8 guards): the dual
    min_w g_w · g0 + √φ ‖g_w‖ over the simplex by scipy's SLSQP from the uniform weights, then
    d = g0 + √φ g_w / ‖g_w‖ (eq. 5), not rescaled. Returns d and the dual weights."""
    optimize = pytest.importorskip("scipy.optimize")
    T = G.shape[0]
    g0 = G.mean(0)
    sqrt_phi = c * float(g0.norm())
    rows, mean = G.numpy(), g0.numpy()

    def dual(w: np.ndarray) -> float:
        gw = rows.T @ w
        return float(gw @ mean) + sqrt_phi * math.sqrt(float(gw @ gw))

    result = optimize.minimize(
        dual,
        np.full(T, 1 / T),
        method="SLSQP",
        bounds=[(0, 1)] * T,
        constraints={"type": "eq", "fun": lambda w: 1 - w.sum()},
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    # Status 8 ("positive directional derivative in line search") is SLSQP stopping at the
    # limit of its precision, short of ftol; the comparison's tolerance covers it.
    assert result.success or result.status == 8, result.message
    gw = G.T @ torch.from_numpy(result.x)
    return g0 + sqrt_phi / gw.norm() * gw, result.x


def tolerance(G: torch.Tensor, c: float) -> float:
    """How well the update is determined by the Gramian: 1e-9 of the gradients' norms, plus
    what the rounding of ‖g0‖² = bᵀ K b (eps times the squared mean norm, when the rows nearly
    cancel) does to the radius c ‖g0‖."""
    mean_norm = float(G.norm(dim=1).mean())
    return 1e-9 * scale_of(G) + 1e-12 * c * mean_norm**2 / max(float(G.mean(0).norm()), 1e-300)


def dual_value(G: torch.Tensor, c: float, w: torch.Tensor) -> float:
    """F(w) = g_w · g0 + √φ ‖g_w‖, in vector space."""
    g0 = G.mean(0)
    gw = G.T @ w
    return float(gw @ g0) + c * float(g0.norm()) * float(gw.norm())


def assert_optimal(G: torch.Tensor, c: float) -> None:
    """Check, in vector space, that CAGrad's update (not rescaled) solves eq. 3,
    max_{‖d − g0‖ ≤ √φ} min_t g_t · d, and is the documented choice where many d do.

    With d = g0 + Σ ν_t g_t, ν ≥ 0: if ‖d − g0‖ = √φ and every task with ν_t > 0 progresses
    least, then for any d' in the ball, min_t g_t · d' ≤ g_ŵ · d' ≤ g_ŵ · d (ŵ = ν / Σν), so d
    is optimal, and F(ŵ) = min_t g_t · d (no duality gap). If ‖d − g0‖ < √φ: d is optimal iff
    min_t g_t · d = 0 with zero in the convex hull (then nothing does better than 0), and
    d = g0 + Σ ν_t g_t with g_t · d = 0 wherever ν_t > 0 are the KKT conditions of the projection
    of g0 onto {d : g_t · d ≥ 0}. Tolerances are per task: a task's progress is known to its own
    norm times the sizes summed to compute it."""
    T = G.shape[0]
    info = CAGrad(c=c, rescale=False).combine_with_info(G)
    d, W = info.direction, info.weights[0]
    norms = G.norm(dim=1)
    active = norms > 0
    assert (W[~active] == 0).all()
    if not active.any():
        assert (d == 0).all()
        return
    nu = torch.where(active, W - 1 / T, 0.0)
    if float(nu.abs().sum()) == 0:  # a zero ball (g0 = 0: rows that cancel exactly): the mean
        assert c * float(G.mean(0).norm()) <= 1e-12 * float(norms.sum())
        torch.testing.assert_close(d, G.mean(0), rtol=0, atol=1e-12 * float(norms.sum()))
        return
    omega = nu * norms  # contributions of the unit gradients to d − g0
    spread = float(omega.abs().sum())
    assert float(omega.min()) >= -TOL * spread
    g0 = G.mean(0)
    radius = c * float(g0.norm())
    if radius == 0:  # the rows cancel exactly: the ball is the single point d = g0 = 0
        assert float(d.abs().max()) <= TOL * float(norms.max())
        return
    mean_norm = float(norms.sum()) / T
    size = mean_norm + radius + spread  # bounds what g_t · d / ‖g_t‖ is summed from
    # ‖g0‖² from the Gramian cancels when the rows nearly do: radius to eps (mean norm)² / ‖g0‖.
    ball = TOL * radius + 1e-12 * c * mean_norm**2 / max(float(g0.norm()), 1e-300)
    reach = float((G.T @ nu).norm())
    assert reach <= radius + ball
    progress = G @ d
    j = int(torch.where(active, progress, math.inf).argmin())
    worst = float(progress[j])
    support = omega > 1e-9 * spread
    if reach >= radius - 100 * ball:
        gaps = (progress - worst).abs() / ((norms + norms[j]) * size)
        assert (gaps[support] <= TOL).all()
        gap = dual_value(G, c, nu / nu.sum()) - worst
        assert -TOL * float(norms[j]) * size <= gap <= TOL * float(norms[j]) * size
    else:
        assert worst >= -TOL * float(norms[j]) * size
        assert ((progress.abs() / (norms * size))[support] <= TOL).all()
        units = G[active] / norms[active, None]
        assert float(MGDA().combine(units).norm()) <= 1e-5  # zero is in the hull


@settings(max_examples=100, deadline=None)
@given(
    G=task_matrices(max_tasks=5, max_columns=40, kinds=("normal",)), c=st.sampled_from([0.1, 0.5, 0.9, 2.0])
)
def test_matches_the_papers_slsqp_solution(G, c):
    # Well-conditioned rows in general position (zero is not in their hull): SLSQP converges
    # to ~1e-8, the library solves exactly, so its dual value is never worse.
    T, P = G.shape
    assume(T <= P and cosine_condition(G) < 1e3)
    want, w_ref = reference_cagrad(G, c)
    info = CAGrad(c=c, rescale=False).combine_with_info(G)
    scale = float(G.mean(0).norm()) * (1 + c)
    assert float((info.direction - want).norm()) <= 1e-6 * scale
    nu = info.weights[0] - 1 / T
    ours = dual_value(G, c, nu / nu.sum())
    assert ours <= dual_value(G, c, torch.from_numpy(w_ref)) + 1e-13 * scale * float(G.norm(dim=1).max())
    torch.testing.assert_close(CAGrad(c=c).combine(G), info.direction / (1 + c * c))


@settings(max_examples=200, deadline=None)
@given(G=task_matrices(max_columns=300), c=C_VALUES)
def test_optimal_on_every_matrix(G, c):
    assert_optimal(G, c)


@settings(max_examples=100, deadline=None)
@given(G=task_matrices(max_columns=300), c=C_VALUES)
def test_the_exhaustive_solver_alone_is_optimal(G, c):
    # The active-set method hands over to trying every support when rounding stops it; here
    # it always does, so the fallback is checked on every family too.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cagrad_module._Dual, "active_set", lambda self, projection, fits: (None, False))
        patch.setattr(cagrad_module, "guessed_weights", nothing_guessed)
        patch.setattr(cagrad_module, "small_gramian", lambda gramian: None)
        assert_optimal(G, c)


@settings(max_examples=100, deadline=None)
@given(G=task_matrices(max_columns=300), c=C_VALUES)
def test_the_active_set_walk_is_optimal_without_guessed_supports(G, c):
    # Most problems now end at a guessed support; with the full support as the only guess the
    # walk runs on every family too.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cagrad_module, "_GUESSES", 1)
        assert_optimal(G, c)


def test_a_guessed_support_ends_the_solve_without_walking(monkeypatch):
    # Eight tasks, one conflicting pair (the small-problem benchmark's Gramian): the full
    # support has negative weights, the tasks it weights positively are the optimal support.
    G = torch.randn(1, 8, 64, generator=torch.Generator().manual_seed(8), dtype=torch.float64)[0]
    G[1] = -0.5 * G[0] + G[1]
    monkeypatch.setattr(cagrad_module, "_GUESSES", 1)
    walked = CAGrad(c=0.5, rescale=False).combine_with_info(G).weights
    monkeypatch.setattr(cagrad_module._ActiveSet, "run", lambda self: pytest.fail("walked"))
    with pytest.raises(pytest.fail.Exception, match="walked"):
        CAGrad(c=0.5, rescale=False).combine_with_info(G)
    monkeypatch.setattr(cagrad_module, "_GUESSES", 2)
    guessed = CAGrad(c=0.5, rescale=False).combine_with_info(G).weights
    assert int((guessed[0] - 1 / 8 > 1e-12).sum()) == 6  # two tasks left out
    torch.testing.assert_close(guessed, walked, rtol=1e-12, atol=1e-14)


@settings(max_examples=60, deadline=None)
@given(G=task_matrices(max_tasks=24, max_columns=300), c=C_VALUES)
def test_many_tasks_use_the_active_set_alone(G, c):
    assume(G.shape[0] > cagrad_module._MAX_ENUMERATED_TASKS)
    assert_optimal(G, c)


def test_rows_that_cancel_exactly_leave_only_g0():
    """Found by hypothesis: two opposite rows make g0 = 0, a ball of radius 0 around it."""
    assert_optimal(torch.tensor([[1.541], [-1.541]]), 0.5)


def test_a_parallel_task_entering_a_badly_scaled_support():
    """Found by hypothesis (seed 2): 11 non-zero rows (too many to enumerate) with norms 1e-10
    to 1e15, and task 10 = 2 × task 8. The active-set walk reaches a support holding task 10
    that task 8 violates (it progresses half as much); with both in it the bordered system is
    singular to rounding, and dropping the lightest task dropped task 8 again, a cycle that
    left the walk unverified and the update at the projection, inside the ball. The entering
    task now swaps out the support task pointing most like it."""
    # fmt: off
    G = torch.tensor([
        [-0.25036, 0.73888, -0.65468, 1.0567, -0.56082, 0.60475, -1.4851, 1.328],
        [1.2494, 0.78799, -1.2618, -0.4379, -0.71697, 0.11348, -1.3306, 1.4088],
        [0.0] * 8,
        [1.824e15, -3.3504e14, -6.4861e14, -4.9235e14, -1.7477e15, -6.0609e14, -1.1936e15, -1.2974e15],
        [1.7481, 1.4075, 0.38444, -0.32356, 1.0298, -0.88313, -1.8931, 0.10091],
        [1.8856, -0.61652, 0.067423, -1.4395, 0.013672, -0.29829, -1.9942, -2.0223],
        [-1.4397, 0.017044, 0.46333, 0.024793, -0.30759, 0.93188, -0.57418, -0.39974],
        [1.2085, -1.4578, 0.54233, 0.28091, -0.81216, -0.29107, -0.20084, 0.34678],
        [-1.0373, -0.34836, 1.7663, -0.74196, 0.39233, 1.4614, 1.7426, 1.0602],
        [-4.4511e-11, 9.4228e-11, -1.9039e-10, 1.4645e-10, 1.1827e-10, 3.3082e-11, 1.7591e-10, -5.9221e-11],
        [0.0] * 8,
        [0.087892, 0.52777, -0.57838, -1.6401, 0.096121, 0.98631, 0.91941, 0.3143],
    ], dtype=torch.float64)
    # fmt: on
    G[10] = 2 * G[8]
    assert_optimal(G, 1.0)


@settings(max_examples=100, deadline=None)
@given(G=task_matrices(max_columns=300, kinds=("normal", "zero", "parallel", "antiparallel")), c=WELL_POSED_C)
def test_both_solvers_agree(G, c):
    fast = CAGrad(c=c).combine(G)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cagrad_module._Dual, "active_set", lambda self, projection, fits: (None, False))
        patch.setattr(cagrad_module, "guessed_weights", nothing_guessed)
        patch.setattr(cagrad_module, "small_gramian", lambda gramian: None)
        exhaustive = CAGrad(c=c).combine(G)
    assert float((fast - exhaustive).norm()) <= 1e-9 * scale_of(G)


def test_zero_radius_is_the_mean():
    G = torch.randn(4, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for rescale in (True, False):
        torch.testing.assert_close(CAGrad(c=0, rescale=rescale).combine(G), G.mean(0))
    # g0 = 0: opposed tasks, the mean is the zero update.
    g = G[0]
    assert float(CAGrad().combine(torch.stack([g, -g])).abs().max()) <= 1e-15


def test_identical_tasks():
    """Every g_w is g, so any w is optimal and d = g + c ‖g‖ g / ‖g‖ = (1 + c) g."""
    g = torch.tensor([3.0, -4.0, 12.0], dtype=torch.float64)
    G = torch.stack([g, g, g])
    torch.testing.assert_close(CAGrad(c=0.5, rescale=False).combine(G), 1.5 * g)
    torch.testing.assert_close(CAGrad(c=0.5).combine(G), 1.5 / 1.25 * g)


def test_two_orthogonal_unit_tasks():
    """g1 = e1, g2 = e2: g0 = (e1 + e2)/2, ‖g0‖ = 1/√2, √φ = c/√2. F(w) = g_w · g0 + √φ ‖g_w‖
    = 1/2 + (c/√2) √(w1² + w2²) is least at w = (1/2, 1/2), where g_w = g0 and ‖g_w‖ = 1/√2, so
    d = g0 + (c/√2) √2 g0 = (1 + c) (e1 + e2)/2: both tasks progress (1 + c)/2, the most any d
    in the ball can give the worse of two symmetric tasks. Rescaled: divided by 1 + c²."""
    G = torch.eye(2, dtype=torch.float64)
    for c in (0.3, 0.5, 1.0, 4.0):
        want = (1 + c) / 2 * torch.ones(2, dtype=torch.float64)
        torch.testing.assert_close(CAGrad(c=c, rescale=False).combine(G), want)
        torch.testing.assert_close(CAGrad(c=c).combine(G), want / (1 + c * c))
        info = CAGrad(c=c, rescale=False).combine_with_info(G)
        torch.testing.assert_close(info.weights[0], want)  # 1/2 + (√φ/‖g_w‖) w = 1/2 + c/2


def test_orthogonal_tasks_of_different_norms():
    """g1 = e1, g2 = 2 e2: g0 = (1/2, 1), ‖g0‖ = √5/2, √φ = c √5/2. At g0 task 1 progresses 1/2,
    task 2 progresses 2. While task 1 stays the worse one the whole ball goes to it,
    d = g0 + √φ e1, which needs 1/2 + √φ ≤ 2, i.e. c ≤ 3/√5: at c = 0.5, d = (1/2 + √5/4, 1).
    For a larger c both tasks progress equally, d = (m, m/2) on the sphere
    (m − 1/2)² + (m/2 − 1)² = φ; at c = 2 (φ = 5) that is 5m² − 8m − 15 = 0, m = (4 + √91)/5,
    and d − g0 = (m − 1/2, m/2 − 1) is a positive combination of e1 and e2, as eq. 5 needs."""
    G = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    want = torch.tensor([0.5 + math.sqrt(5) / 4, 1.0], dtype=torch.float64)
    torch.testing.assert_close(CAGrad(c=0.5, rescale=False).combine(G), want)
    m = (4 + math.sqrt(91)) / 5
    want = torch.tensor([m, m / 2], dtype=torch.float64)
    torch.testing.assert_close(CAGrad(c=2.0, rescale=False).combine(G), want)


def test_opposed_tasks():
    """g and −2g: g0 = −g/2, and min(g · d, −2 g · d) ≤ 0 with equality only at g · d = 0. For
    c < 1 the ball around −g/2 (radius c‖g‖/2) misses that plane; its nearest point is
    d = (c − 1) g / 2. For c ≥ 1 the plane is reached and the optimal d nearest g0 is 0."""
    g = torch.tensor([1.0, 2.0, -2.0], dtype=torch.float64)
    G = torch.stack([g, -2 * g])
    for c in (0.1, 0.5, 0.9):
        torch.testing.assert_close(CAGrad(c=c, rescale=False).combine(G), (c - 1) / 2 * g)
    for c in (1.0, 2.0, 5.0):
        assert float(CAGrad(c=c, rescale=False).combine(G).abs().max()) <= 1e-15


def test_pareto_stationary_tasks_get_the_nearest_optimal_direction():
    # e1 and −e1 put zero in the hull: no d makes every task progress, so the optimum is 0.
    # With e2 as third task g0 = e2/3 opposes no task: d = g0 (the paper's code returns g0).
    G = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(CAGrad(c=0.5, rescale=False).combine(G), G.mean(0))
    # With e1 + e2 instead, g0 = (1/3, 1/3) opposes −e1; the optimal d nearest g0 drops the
    # e1 component (the paper's code would still return g0, on which task 2 regresses).
    G = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    want = torch.tensor([0.0, 1 / 3], dtype=torch.float64)
    torch.testing.assert_close(CAGrad(c=2.0, rescale=False).combine(G), want, rtol=0, atol=1e-15)


def test_zero_rows_sit_out():
    # A zero row gets weight 0 and no say in the worst task; g0 still averages over all rows.
    g = torch.tensor([3.0, 4.0], dtype=torch.float64)
    G = torch.stack([g, torch.zeros(2, dtype=torch.float64)])
    info = CAGrad(c=0.5, rescale=False).combine_with_info(G)
    torch.testing.assert_close(info.weights[0], torch.tensor([0.75, 0.0], dtype=torch.float64))
    torch.testing.assert_close(info.direction, 0.75 * g)


@settings(max_examples=60, deadline=None)
@given(
    G=task_matrices(max_columns=300),
    c=WELL_POSED_C,
    alpha=st.sampled_from([1e-12, 1e-3, 0.7, 3.0, -2.0, 1e9]),
)
def test_scale_equivariant(G, c, alpha):
    # The weights depend only on the Gramian up to scale, so scaling G scales d (even α < 0).
    want = alpha * CAGrad(c=c).combine(G)
    got = CAGrad(c=c).combine(alpha * G)
    assert float((got - want).norm()) <= abs(alpha) * tolerance(G, c)


@settings(max_examples=60, deadline=None)
@given(G=task_matrices(max_columns=300), c=WELL_POSED_C, seed=st.integers(0, 1000))
def test_permutation_equivariant(G, c, seed):
    order = torch.randperm(G.shape[0], generator=torch.Generator().manual_seed(seed))
    info = CAGrad(c=c).combine_with_info(G)
    permuted = CAGrad(c=c).combine_with_info(G[order])
    assert float((permuted.direction - info.direction).norm()) <= tolerance(G, c)
    # Weights are unique for independent rows; (anti)parallel or too many rows can give one
    # direction several.
    if G.shape[0] <= G.shape[1] and cosine_condition(G[G.norm(dim=1) > 0]) < 1e6:
        torch.testing.assert_close(permuted.weights[0], info.weights[0][order], rtol=1e-6, atol=0)


@settings(max_examples=40, deadline=None)
@given(G=task_matrices(max_columns=300), c=C_VALUES, rescale=st.booleans())
def test_sum_is_T_times_mean(G, c, rescale):
    mean = CAGrad(c=c, rescale=rescale).combine_with_info(G).weights
    total = CAGrad(c=c, rescale=rescale, reduction="sum").combine_with_info(G).weights
    torch.testing.assert_close(total, G.shape[0] * mean, rtol=1e-15, atol=0)


def test_options_are_validated():
    assert (CAGrad().c, CAGrad().rescale, CAGrad().reduction) == (0.5, True, "mean")
    assert CAGrad(c=1).c == 1
    for bad in (-1, -0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=rf"CAGrad c must be a finite number >= 0, got {bad!r}"):
            CAGrad(c=bad)
    for bad in ("0.5", None, True):
        with pytest.raises(TypeError, match=r"CAGrad c must be a number"):
            CAGrad(c=bad)
    with pytest.raises(TypeError, match=r"CAGrad rescale must be True or False, got 1"):
        CAGrad(rescale=1)
    with pytest.raises(ValueError, match="CAGrad reduction must be 'sum' or 'mean', got 'max'"):
        CAGrad(reduction="max")


def test_registered_by_name_with_options():
    assert isinstance(gradbalance.create("cagrad"), CAGrad)
    combiner = gradbalance.create("cagrad", c=0.4, rescale=False, reduction="sum")
    assert (combiner.c, combiner.rescale, combiner.reduction) == (0.4, False, "sum")


@st.composite
def segment_gramians(draw):
    """Gramians ``[S, T, T]`` (3 to 8 tasks) of segments of every row kind, each scaled by
    1e-150 to 1e150."""
    T, S = draw(st.integers(3, 8)), draw(st.integers(1, 4))
    out = []
    for _ in range(S):
        G = strategies.draw_rows(draw, T, draw(st.integers(1, 40)), strategies.ROW_KINDS, torch.float64)
        out.append((G @ G.T) * 10.0 ** draw(st.integers(-150, 150)))
    return torch.stack(out)


@settings(max_examples=200, deadline=None)
@given(K=segment_gramians(), c=WELL_POSED_C)
def test_batched_guesses_match_the_per_segment_solver(K, c):
    # The batched guesses (all segments at once) against the per-segment solver, forced: to
    # 1e-12, or where the problem amplifies rounding more than that (a hull near the origin,
    # weights in the hundreds) to 10× what rounding K alone moves the per-segment answer (K
    # times 3, the same weights in exact arithmetic). The batch sums in another order, and a
    # later guess solves its support bordered by the identity, not gathered.
    fast = CAGrad(c=c, rescale=False).weights(K).numpy()
    assert_matches_the_per_segment_solver(fast, K, c, guessed_weights=nothing_guessed)


@pytest.mark.parametrize("zero_row", [False, True])
@pytest.mark.parametrize("T", [3, 8])
def test_batched_guesses_settle_rows_in_general_position(T, zero_row):
    # The benchmark's Gramians (a conflicting pair among random rows), with or without a task
    # that sat out the step: the full support at T = 3, the tasks it weights positively at
    # T = 8, every segment without the loop.
    G = torch.randn(20, T, 64, generator=torch.Generator().manual_seed(T), dtype=torch.float64)
    G[:, 1] = -0.5 * G[:, 0] + G[:, 1]
    if zero_row:
        G[:, 2] = 0
    K = (G @ G.mT).numpy()
    weights, settled = cagrad_module.guessed_weights(K, 0.5)
    assert settled.sum() >= 19
    rows = np.flatnonzero(np.diag(K[0]) > 0)
    for k, w in zip(K[settled], weights[settled]):
        want = cagrad_module.conflict_averse_weights(k[np.ix_(rows, rows)], T, 0.5)
        np.testing.assert_allclose(w[rows], want, rtol=1e-12)
        assert (w[np.diag(k) == 0] == 0).all()


@pytest.mark.parametrize("T", [3, 8])
def test_a_one_column_segment_leaves_the_others_batched(T):
    # A one-column segment has parallel rows (singular systems): it goes to the per-segment
    # solver alone.
    G = torch.randn(6, T, 64, generator=torch.Generator().manual_seed(T), dtype=torch.float64)
    G[:, 1] = -0.5 * G[:, 0] + G[:, 1]
    G[0, :, 1:] = 0
    weights, settled = cagrad_module.guessed_weights((G @ G.mT).numpy(), 0.5)
    assert settled[1:].all()


@settings(max_examples=300, deadline=None)
@given(G=task_matrices(max_tasks=4, max_columns=300), c=WELL_POSED_C, scale=st.integers(-150, 150))
def test_one_small_segment_in_python_floats_matches_the_per_segment_solver(G, c, scale):
    # One segment of a few tasks takes the Python-float step (or hands back to numpy), its
    # tests each a margin inside the per-segment solver's: the same weights, to 1e-12 or to
    # 10× what rounding K alone moves the per-segment answer.
    T = G.shape[0]
    assume(T != 2)
    K = (G @ G.T)[None] * 10.0**scale
    small = CAGrad(c=c, rescale=False).weights(K).numpy()
    assert_matches_the_per_segment_solver(
        small, K, c, small_gramian=lambda gramian: None, guessed_weights=nothing_guessed
    )


def test_one_small_segment_in_general_position_takes_python_floats(monkeypatch):
    G = torch.randn(1, 3, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    G[:, 1] = -0.5 * G[:, 0] + G[:, 1]
    K = G @ G.mT
    want = cagrad_module.conflict_averse_weights(K.numpy()[0], 3, 0.5)
    monkeypatch.setattr(cagrad_module, "with_closed_form", lambda *args: pytest.fail("numpy"))
    np.testing.assert_allclose(CAGrad(c=0.5, rescale=False).weights(K).numpy()[0], want, rtol=1e-12)
