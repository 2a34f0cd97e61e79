"""The min-norm point of the convex hull of the task gradients from their Gramian, by Wolfe's
nearest-point algorithm (MGDA's update; FairGrad's and Nash-MTL's Pareto-stationarity test)."""

from __future__ import annotations

import math

import numpy as np

from ._common import solve_small
from ._small import positive_definite_solve

# Wolfe's algorithm ends in finitely many steps in exact arithmetic; this only guards against
# rounding making it cycle.
_MAX_MAJOR_STEPS = 1000
# Tolerance of the optimality test g_j · x ≥ ‖x‖², relative to ‖g_j‖ Σ_k λ_k ‖g_k‖ (x = Σ_k λ_k g_k).
_TOLERANCE = 1e-12
# The Python-float steps solve a support's K μ = 1 only while every elimination pivot of the
# scaled Gramian exceeds this; smaller (a row tiny next to the longest, rows nearly dependent,
# the origin in the hull) hands the problem back to the numpy steps.
_SMALL_PIVOT = 1e-6


def two_task_min_norm_weights(K: np.ndarray) -> np.ndarray:
    """``[S, 2]``: the min-norm convex weights of two rows per Gramian ``K [S, 2, 2]`` in closed
    form, Wolfe's steps written out. From the shorter row ``g_i`` (the first on a tie), the other
    row enters only if ``g_i · g_j < ‖g_i‖²`` (beyond the solver's tolerance); then the segment's
    nearest point to the origin is ``w_i = (‖g_j‖² − g_i·g_j) / ‖g_i − g_j‖²`` (positive, as is
    ``w_j``), else ``w_i = 1``. Both branches meet at ``g_i · g_j = ‖g_i‖²`` (``w_j = 0``), so
    the tolerance moves the result by rounding only. One non-zero row gets 1, none 0."""
    a, b, e = K[:, 0, 0], K[:, 0, 1], K[:, 1, 1]
    positive = np.stack([a > 0, e > 0], 1)
    first: np.ndarray = np.asarray(a <= e)  # the shorter row starts the support
    with np.errstate(divide="ignore", invalid="ignore"):
        largest = np.maximum(a, e)
        short, long_ = np.where(first, a, e) / largest, np.where(first, e, a) / largest
        cross = b / largest
        enters = cross < short - _TOLERANCE * np.sqrt(short) * np.sqrt(long_)
        span = (short - cross) + (long_ - cross)  # ‖g_i − g_j‖², positive where g_j enters
        w_short = np.where(enters, (long_ - cross) / span, 1.0)
        w_long = np.where(enters, (short - cross) / span, 0.0)  # not 1 − w_short: no cancellation
    weights = np.where(first[:, None], np.stack([w_short, w_long], 1), np.stack([w_long, w_short], 1))
    both = np.asarray(positive.all(1))
    return np.where(both[:, None], weights, positive.astype(float))


def min_norm_weights(K: np.ndarray) -> np.ndarray:
    """The convex weights ``w`` minimizing ``wᵀ K w`` for a Gramian ``K`` with positive diagonal,
    by Wolfe's nearest-point algorithm: a major step adds the point that most violates
    optimality; minor steps solve for the nearest point of the support's affine hull and, while
    that point leaves the simplex, walk towards it until a weight reaches zero and drop it.
    A few ``T×T`` solves in numpy (tiny arrays: torch's per-call overhead would dominate)."""
    Kn = K / float(K.diagonal().max())
    diagonal = Kn.diagonal()
    roots = np.sqrt(diagonal)
    support = np.array([diagonal.argmin()])
    lam = np.ones(1)
    for _ in range(_MAX_MAJOR_STEPS):
        inner = Kn[:, support] @ lam  # g_t · x for every task
        norm2 = float(lam @ inner[support])
        j = int(inner.argmin())
        # The rounding of g_j · x is ~ε ‖g_j‖ Σ_k λ_k ‖g_k‖: relative to that, not to the largest
        # ‖g‖², or a min-norm point far shorter than the rows (a tiny row among normal ones) stops
        # early, still conflicting with a long row.
        slack = _TOLERANCE * roots[j] * float(lam @ roots[support])
        if j in support.tolist() or inner[j] >= norm2 - slack:
            break
        support = np.concatenate((support, [j]))
        lam = np.concatenate((lam, [0.0]))
        while True:
            mu = _affine_nearest_point(Kn[support[:, None], support])
            if (mu > 0).all():
                lam = mu
                break
            # Walk from lam towards mu until the first weight reaches zero, and drop it.
            leaving = np.flatnonzero(mu <= 0)
            gap = lam[leaving] - mu[leaving]
            ratios = np.where(gap > 0, lam[leaving] / np.maximum(gap, 1e-300), 0.0)
            lam = lam + ratios.min() * (mu - lam)
            lam[leaving[ratios.argmin()]] = 0
            keep = lam > 0
            support, lam = support[keep], lam[keep]
    weights = np.zeros(K.shape[0])
    weights[support] = lam / lam.sum()
    return weights


def small_min_norm_weights(K: list[list[float]]) -> list[float] | None:
    """:func:`min_norm_weights` for one Gramian ``K`` (nested lists, positive diagonal) in Python
    floats: the same major and minor steps, the affine hull's nearest point ``μ ∝ K_PP⁻¹ 1`` by
    elimination; ``None`` where a support's pivot falls below :data:`_SMALL_PIVOT` (the numpy
    steps' bordered solve then decides)."""
    T = len(K)
    largest = max(K[t][t] for t in range(T))
    Kn = [[value / largest for value in row] for row in K]
    roots = [math.sqrt(Kn[t][t]) for t in range(T)]
    support = [min(range(T), key=lambda t: Kn[t][t])]
    lam = [1.0]
    for _ in range(_MAX_MAJOR_STEPS):
        inner = [sum([Kn[t][k] * w for k, w in zip(support, lam)]) for t in range(T)]  # g_t · x
        norm2 = sum([w * inner[k] for k, w in zip(support, lam)])
        j = min(range(T), key=inner.__getitem__)
        slack = _TOLERANCE * roots[j] * sum([w * roots[k] for k, w in zip(support, lam)])
        if j in support or inner[j] >= norm2 - slack:
            break
        support, lam = [*support, j], [*lam, 0.0]
        while True:
            x = positive_definite_solve(
                [[Kn[a][b] for b in support] for a in support], [1.0] * len(support), _SMALL_PIVOT
            )
            if x is None:
                return None
            total = sum(x)
            mu = [value / total for value in x]
            if min(mu) > 0:
                lam = mu
                break
            # Walk from lam towards mu until the first weight reaches zero, and drop it.
            ratios = [
                (lam[i] / (lam[i] - mu[i]) if lam[i] > mu[i] else 0.0, i)
                for i in range(len(mu))
                if mu[i] <= 0
            ]
            step, first = min(ratios)
            lam = [w + step * (m - w) for w, m in zip(lam, mu)]
            lam[first] = 0.0
            support, lam = [k for k, w in zip(support, lam) if w > 0], [w for w in lam if w > 0]
    weights = [0.0] * T
    total = sum(lam)
    for k, w in zip(support, lam):
        weights[k] = w / total
    return weights


def _affine_nearest_point(K: np.ndarray) -> np.ndarray:
    """``μ`` minimizing ``μᵀ K μ`` subject to ``Σ μ = 1`` (no sign constraint), from the bordered
    KKT system ``[[K, 1], [1ᵀ, 0]] [μ; ν] = [0; 1]``; least squares if rounding makes it
    singular."""
    m = K.shape[0]
    system = np.ones((m + 1, m + 1))
    system[:m, :m] = K
    system[m, m] = 0
    rhs = np.zeros(m + 1)
    rhs[m] = 1
    solution = solve_small(system, rhs)[:m]
    return solution / solution.sum()


def batched_min_norm_weights(K: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``[N, m]``: for each Gramian ``K [N, m, m]``, the convex weights over its ``rows [N, m]``
    (the others get 0; a problem without rows gets zeros) minimizing ``wᵀ K w``, by Wolfe's
    nearest-point algorithm: a major step adds the point that most violates optimality; minor
    steps solve for the nearest point of the support's affine hull and, while that point
    leaves the simplex, walk towards it until a weight reaches zero and drop it: the steps of
    :func:`min_norm_weights` for ``N`` problems side by side, each one batched bordered solve,
    so the cost is that of the longest problem, not the sum."""
    N, m = rows.shape
    largest = np.where(rows, K.diagonal(0, 1, 2), 0.0).max(1)
    Kn = K / np.where(largest > 0, largest, 1.0)[:, None, None]
    diagonal = Kn.diagonal(0, 1, 2)
    roots = np.sqrt(np.maximum(diagonal, 0.0))
    problems = np.arange(N)
    start = np.where(rows, diagonal, np.inf).argmin(1)
    support = np.zeros((N, m), dtype=bool)
    support[problems, start] = True
    lam = support.astype(float)
    running = rows.any(1)
    for _ in range(_MAX_MAJOR_STEPS):
        inner = (Kn @ lam[:, :, None])[:, :, 0]  # g_t · x for every task
        norm2 = (lam * inner).sum(1)
        j = np.where(rows, inner, np.inf).argmin(1)
        slack = _TOLERANCE * roots[problems, j] * (lam * roots).sum(1)  # as in min_norm_weights
        running &= ~support[problems, j] & (inner[problems, j] < norm2 - slack)
        if not running.any():
            break
        support[running, j[running]] = True
        minor: np.ndarray = np.array(running)
        while minor.any():
            mu = _affine_nearest_points(Kn, support)
            inside = minor & ((mu > 0) | ~support).all(1)
            lam = np.where(inside[:, None], mu, lam)
            minor &= ~inside
            if not minor.any():
                break
            # Walk from lam towards mu until the first weight reaches zero, and drop it.
            leaving = support & (mu <= 0) & minor[:, None]
            gap = lam - mu
            ratios = np.where(leaving, np.where(gap > 0, lam / np.maximum(gap, 1e-300), 0.0), np.inf)
            first = ratios.argmin(1)
            step = np.where(minor, ratios[problems, first], 0.0)[:, None]
            lam = np.where(minor[:, None], lam + step * (mu - lam), lam)
            lam[minor, first[minor]] = 0
            support &= ~minor[:, None] | (lam > 0)
            lam = np.where(support, lam, 0.0)
    total = lam.sum(1, keepdims=True)
    return np.where(np.asarray(rows.any(1))[:, None], lam / np.where(total > 0, total, 1.0), 0.0)


def _affine_nearest_points(K: np.ndarray, support: np.ndarray) -> np.ndarray:
    """``[N, m]``: per problem, ``μ`` minimizing ``μᵀ K μ`` subject to ``Σ μ = 1`` over the
    support (no sign constraint; 0 off it), from the bordered KKT system
    ``[[K, 1], [1ᵀ, 0]] [μ; ν] = [0; 1]`` restricted to the support and bordered by the
    identity off it (whose unknowns come out exactly 0); least squares where rounding makes a
    system singular."""
    N, m = support.shape
    system = np.zeros((N, m + 1, m + 1))
    system[:, :m, :m] = K * (support[:, :, None] & support[:, None, :])
    diagonal = np.arange(m)
    system[:, diagonal, diagonal] += ~support
    system[:, :m, m] = support
    system[:, m, :m] = support
    rhs = np.zeros((N, m + 1))
    rhs[:, m] = 1
    try:
        solution = np.linalg.solve(system, rhs[:, :, None])
        # One step of iterative refinement: with rows of very different lengths (a 1e-10 row
        # among unit ones) the solve's rounding depends on the support's order, and left the
        # min-norm point conflicting with a long row by more than its tolerance. Kept only
        # where it lowers the residual: on a system ill-conditioned past float64 (rows 1e25
        # apart) the correction is itself noise, and it turned [0.14, 0.49, 0.37] into ±5e25.
        residual = rhs[:, :, None] - system @ solution
        refined = solution + np.linalg.solve(system, residual)
        with np.errstate(over="ignore", invalid="ignore"):
            better = np.abs(rhs[:, :, None] - system @ refined).max(1) <= np.abs(residual).max(1)
        solution = np.where(better[:, :, None], refined, solution)[:, :m, 0]
    except np.linalg.LinAlgError:
        solution = np.stack([solve_small(a, b) for a, b in zip(system, rhs)])[:, :m]
    return solution / solution.sum(1, keepdims=True)
