"""The α-fair allocation solver (FairGrad; Nash-MTL at α = 1): the ways its Newton descent can
stall or start wrong, and its two-task closed form at the Pareto-stationary edge."""

import warnings

import numpy as np
import torch

from gradbalance.combiners import FairGrad
from gradbalance.combiners._solvers import _fair, two_task_bargaining_weights


def test_a_stalled_newton_descent_is_restarted_by_a_coordinate_sweep(monkeypatch):
    # At α = 30 with norms 1e25 apart the huge task's weight (~1e-750) is below float64's range,
    # held at the smallest normal number: its equation cannot hold, and Newton on all of them
    # stalls. The Gauss-Seidel sweep (_sweep) then solves the other tasks' equations one by one;
    # without it they stay 10-30% off.
    calls = []
    sweep = _fair._sweep
    monkeypatch.setattr(_fair, "_sweep", lambda *args: calls.append(1) or sweep(*args))
    G = torch.randn(3, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    G[0] *= 1e-10
    G[2] *= 1e15
    alpha = 30.0
    info = FairGrad(alpha=alpha).combine_with_info(G)
    assert calls
    w, d = info.weights[0], info.direction
    assert float(w[2]) < 1e-300
    progress, want = G[:2] @ d, w[:2] ** (-1 / alpha)
    rounding = 1e-12 * G[:2].norm(dim=1) * float((w * G.norm(dim=1)).sum())
    assert ((progress - want).abs() <= 1e-8 * want + rounding).all()


def test_nearly_opposed_tasks_solve_in_a_few_newton_steps(monkeypatch):
    # Two tasks 5e-12 from opposed (what the toy demo meets on its Pareto set, every step): the
    # descent's predicted decrease falls below f's rounding long before its own stop test, and
    # the Armijo test then accepts rounding noise for all 200 steps (40 ms) unless it stops there.
    solves = []
    solve = _fair.solve_small
    monkeypatch.setattr(_fair, "solve_small", lambda *args: solves.append(1) or solve(*args))
    K = torch.tensor(
        [[4.953395920520634, -1.2755111717043601], [-1.2755111717043601, 0.32844714520373025]],
        dtype=torch.float64,
    )
    w = FairGrad().weights(K[None])[0]
    assert len(solves) < 40
    progress, terms = K @ w, K.abs() @ w
    assert ((progress - 1 / w).abs() <= 1e-12 * terms).all()


def test_descent_starts_real_when_the_unit_gradients_cancel_to_rounding():
    # Found by the conformance kit: a Gramian a rounding error from PSD made 1ᵀC1 = ‖Σ u_t‖²
    # slightly negative, and the start (c.sum() / 1ᵀC1) ** (α / (1 + α)) a complex number.
    C = np.array([[1.0, -1.0 - 1e-15], [-1.0 - 1e-15, 1.0]])
    assert C.sum() < 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for alpha in (0.5, 1.0, 2.0):
            beta = _fair._descend(C, np.zeros(2), alpha)
            assert np.isrealobj(beta) and np.isfinite(beta).all()


def test_exactly_opposed_tasks_are_pareto_stationary_for_the_bargaining_form():
    g = torch.tensor([[[1.0, 2.0], [-2.0, -4.0]], [[1.0, 0.0], [-1.0, 1e-3]]], dtype=torch.float64)
    weights, settled = two_task_bargaining_weights((g @ g.transpose(1, 2)).numpy())
    assert settled.all()
    assert weights[0].tolist() == [0.0, 0.0]  # no direction helps both: zero update
    assert (weights[1] > 0).all()  # 5e-7 from opposed: still a bargaining solution


def _calls(monkeypatch, name):
    calls = []
    original = getattr(_fair, name)
    monkeypatch.setattr(_fair, name, lambda *args: calls.append(1) or original(*args))
    return calls


def test_other_exponents_are_solved_cold_where_the_norms_allow(monkeypatch):
    # Norms within a factor 10 at α = 2: one cold solve, every equation to its rounding, and
    # the same weights as the continuation from α = 1 to rounding.
    G = torch.randn(6, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    G[1] = -0.5 * G[0] + G[1]
    G[3] *= 10
    K = (G @ G.T).numpy()
    continued = _calls(monkeypatch, "_continued_log_weights")
    w = _fair.fair_weights(K, 2.0)
    assert not continued
    progress, terms = K @ w, np.abs(K) @ w + w**-0.5
    assert (np.abs(progress - w**-0.5) <= 1e-13 * terms).all()
    monkeypatch.setattr(_fair, "_DIRECT_SPREAD", -1.0)  # always continue
    np.testing.assert_allclose(_fair.fair_weights(K, 2.0), w, rtol=1e-11)
    assert continued


def test_norms_far_apart_keep_the_continuation(monkeypatch):
    # c_t = ‖g_t‖^(1/α − 1) spans e^55 here (norms 1e25 apart at α = 30): no cold start.
    G = torch.randn(3, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    G[0] *= 1e-10
    G[2] *= 1e15
    continued = _calls(monkeypatch, "_continued_log_weights")
    _fair.fair_weights((G @ G.T).numpy(), 30.0)
    assert continued
