"""The α-fair allocation for one segment of a few tasks in Python floats: the batched solver's
Newton steps (:mod:`._fair_batched`) without numpy, whose ~1 µs a call is most of the cost of a
3-task problem (~20 against ~40 µs)."""

from __future__ import annotations

import math

from ._fair import _CLEAR_MARGIN, _DIRECT_SPREAD, _PARALLEL, _ROUNDING, _STATIONARY
from ._small import positive_definite_solve


def small_fair_weights(K: list[list[float]], alpha: float, steps: int, most: int) -> list[float] | None:
    """The weights ``w > 0`` with ``K w = w^(−1/α)`` for one Gramian ``K`` (nested lists, at
    most :data:`SMALL_TASKS` rows, positive diagonal) by the Newton steps of
    :func:`._fair_batched.batched_fair_weights` (``steps`` before the first test, ``most`` in
    all); ``None`` where that function decides otherwise: the hull of the unit gradients not
    clearly off the origin along ``Σ_t u_t``, two tasks alike, ``c`` spread past ``e^30``, or an
    equation short of its rounding after the steps (or a step overflowing)."""
    T = len(K)
    inverse = [1 / math.sqrt(K[t][t]) for t in range(T)]
    C = [[K[i][j] * inverse[i] * inverse[j] for j in range(T)] for i in range(T)]
    progress = [sum(row) for row in C]
    total = sum(progress)
    if not (total > 0 and min(progress) > math.sqrt(_CLEAR_MARGIN * _STATIONARY * total)):
        return None
    if any(C[i][j] >= 1 - _PARALLEL for i in range(T) for j in range(i)):
        return None
    c, scale = [1.0] * T, inverse
    if alpha != 1.0:
        log_c = [(1 / alpha - 1) * math.log(K[t][t]) / 2 for t in range(T)]
        log_kappa = max(log_c)
        if log_kappa - min(log_c) > _DIRECT_SPREAD:
            return None
        c = [math.exp(x - log_kappa) for x in log_c]
        shift = math.exp(alpha / (1 + alpha) * log_kappa)
        scale = [shift * x for x in inverse]
    try:
        beta = _newton(C, c, (sum(c) / total) ** (alpha / (1 + alpha)), alpha, steps, most)
    except (OverflowError, ZeroDivisionError):
        return None
    return None if beta is None else [b * s for b, s in zip(beta, scale)]


def _newton(
    C: list[list[float]], c: list[float], ray: float, alpha: float, steps: int, most: int
) -> list[float] | None:
    """``β`` from ``ray · 1`` by Newton's steps in ``log β``: with ``p = c β^(−1/α)`` and the
    positive definite ``H = C + diag(p / (α β))``, ``Δy = (1 + 1/α) H⁻¹p / β − 1`` for the first
    ``steps``, then ``Δy = H⁻¹(p − Cβ) / β`` (the same step, its rounding shrinking with the
    residual) until every equation holds to :data:`_ROUNDING` of its terms' magnitudes, as
    :func:`fair_weights`' test; ``None`` if it does not after ``most`` steps."""
    T = len(c)
    beta = [ray] * T
    exponent, gain = -1 / alpha, 1 + 1 / alpha
    for step in range(most + 1):
        p = [ct * bt**exponent for ct, bt in zip(c, beta)]
        rhs = p
        if step >= steps:
            rhs, holds = _residual(C, beta, p)
            if holds:
                return beta
            if step == most:
                return None
        H = [row[:] for row in C]
        for t in range(T):
            H[t][t] += p[t] / (alpha * beta[t])
        x = positive_definite_solve(H, rhs)
        if x is None:  # a pivot lost to rounding: the numpy steps decide
            return None
        if step < steps:
            beta = [bt * math.exp(gain * xt / bt - 1) for bt, xt in zip(beta, x)]
        else:
            beta = [bt * math.exp(xt / bt) for bt, xt in zip(beta, x)]
    return None


def _residual(C: list[list[float]], beta: list[float], p: list[float]) -> tuple[list[float], bool]:
    """``p − Cβ``, and whether each entry is within :data:`_ROUNDING` of the sum of its terms'
    magnitudes, ``p_t + Σ_j |C_tj| β_j`` (:func:`fair_weights`' test)."""
    residual, holds = [], True
    for row, pull in zip(C, p):
        value = size = pull
        for a, b in zip(row, beta):
            value -= a * b
            size += abs(a) * b
        residual.append(value)
        holds = holds and abs(value) <= _ROUNDING * size < math.inf  # inf: a step diverged
    return residual, holds
