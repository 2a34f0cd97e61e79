"""Projection onto a dual cone ``{y : G y ≥ 0}`` from the Gramian, by Lawson & Hanson's
active-set method (UPGrad's projections, CAGrad's nearest optimal direction)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import solve_small

# The active-set method ends in finitely many steps in exact arithmetic; this only guards
# against rounding making it cycle.
_MAX_STEPS = 1000


def cone_multipliers(K: np.ndarray, x: np.ndarray, slack: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``v ≥ 0`` minimizing ``½ vᵀKv + vᵀK x`` on Gramians ``K [N, m, m]`` for ``x [N, m]``, the
    ``N`` programs side by side: ``Gᵀ(x + v)`` is then the projection of ``Gᵀx`` onto the dual
    cone ``{y : G y ≥ 0}``. Lawson & Hanson's active-set method. The gradient ``K(x + v)`` is
    the vector of constraint values ``g_j · y`` at the current projection, so the optimality
    test reads: every constraint met (down to ``-slack(v) [N, m]``), and tight wherever
    ``v_j > 0``. Each step works on every unfinished program at once (a batched solve), so the
    cost is that of the longest program, not of their sum."""
    N, m = x.shape
    rows = np.arange(N)
    Kx = (K @ x[:, :, None])[:, :, 0]
    v = np.zeros((N, m))
    passive = np.zeros((N, m), dtype=bool)
    running = np.ones(N, dtype=bool)
    for _ in range(_MAX_STEPS):
        constraint = Kx + (K @ v[:, :, None])[:, :, 0]
        violated = ~passive & (constraint < -slack(v)) & running[:, None]
        running &= violated.any(1)
        if not running.any():
            break
        entering = np.where(violated, constraint, np.inf).argmin(1)
        passive[rows, entering] |= running
        z = _equality_solutions(K, Kx, passive)
        # Only rounding can make the entering multiplier non-positive: no progress to make.
        stuck = running & (z[rows, entering] <= 0)
        passive[rows, entering] &= ~stuck
        running &= ~stuck
        walking = running & ((z <= 0) & passive).any(1)
        while walking.any():
            # Walk from v towards z until the first multiplier reaches zero, and drop it.
            leaving = passive & (z <= 0) & walking[:, None]
            with np.errstate(over="ignore"):  # only the leaving entries are compared
                steps = np.where(leaving, v / np.maximum(v - z, 1e-300), np.inf)
            first = steps.argmin(1)
            step = np.where(walking, steps[rows, first], 0.0)[:, None]
            v = np.where(walking[:, None], v + step * (z - v), v)
            v[walking, first[walking]] = 0
            passive &= ~walking[:, None] | (v > 0)
            z = np.where(walking[:, None], _equality_solutions(K, Kx, passive), z)
            walking &= ((z <= 0) & passive).any(1)
        v = np.where(running[:, None], z, v)
    return v


def _equality_solutions(K: np.ndarray, Kx: np.ndarray, passive: np.ndarray) -> np.ndarray:
    """``[N, m]``: per program, the minimizer with ``v_j = 0`` off ``passive`` and no sign
    constraint on it (the projection of ``Gᵀx`` onto the subspace orthogonal to the passive
    rows; ``Kx = K x``). One batched solve of ``K`` restricted to the passive set, bordered by
    the identity elsewhere (whose unknowns come out exactly 0)."""
    N, m = passive.shape
    # C order, so that the reshape below is a view whatever K's layout.
    system = np.multiply(K, passive[:, :, None] & passive[:, None, :], order="C")
    system.reshape(N, m * m)[:, :: m + 1] += ~passive  # the diagonals, as a strided view
    rhs = -(Kx * passive)
    try:
        return np.linalg.solve(system, rhs[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:  # dependent passive rows in some program: one at a time
        return np.stack([solve_small(a, b) for a, b in zip(system, rhs)])
