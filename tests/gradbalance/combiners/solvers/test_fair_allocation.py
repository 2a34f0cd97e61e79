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
