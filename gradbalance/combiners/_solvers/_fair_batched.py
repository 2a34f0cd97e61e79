"""The α-fair allocation ``K w = w^(−1/α)`` for every segment at once: Newton's method in
``log β`` on the ``[S, T, T]`` cosine matrices together, each segment kept once every equation
holds to its rounding; the segments this cold solve is not for go to :func:`fair_weights`."""

from __future__ import annotations

import numpy as np

from ._common import stacked_solve
from ._fair import _CLEAR_MARGIN, _DIRECT_SPREAD, _PARALLEL, _ROUNDING, _STATIONARY, fair_weights
from ._fair_small import small_fair_weights
from ._small import SMALL_TASKS

# Newton steps before the first convergence test: from the ray of equal weights 3 bring most
# problems of up to 4 tasks at α = 1 to their rounding, 4 most others (5 about half of those
# of 8 tasks at α ≠ 1).
_FIRST_TEST = 3
# The most steps taken before the segments left are handed to fair_weights.
_MAX_STEPS = 10


def batched_fair_weights(K: np.ndarray, alpha: float) -> np.ndarray:
    """``[S, T]`` weights ``w > 0`` with ``K w = w^(−1/α)`` for Gramians ``K [S, T, T]`` with
    positive diagonals, or zeros where a segment's rows are Pareto-stationary: what
    :func:`fair_weights` gives each segment, to rounding.

    In cosine coordinates (``β_t = w_t ‖g_t‖``, ``C β = c β^(−1/α)``, ``c_t = ‖g_t‖^(1/α − 1)``
    relative to the largest) the segments :func:`fair_weights` would solve cold, without
    groups of tasks alike, take Newton steps together (:func:`_batched_newton`). A segment is
    kept once every equation holds to its rounding and its hull of unit gradients is clearly
    away from the origin (:func:`_clear_of_origin`, along ``Σ_t u_t`` or along the solution's
    ``Σ_t β_t u_t``), where :func:`fair_weights` finds the same solution; the others (alike
    tasks, ``c`` spread past ``e^30`` at ``α ≠ 1``, a hull near the origin, a stalled Newton)
    get :func:`fair_weights`, one at a time. One segment of at most :data:`SMALL_TASKS` tasks
    takes the same steps in Python floats first (:func:`small_fair_weights`)."""
    S, T, _ = K.shape
    if S == 1 and T <= SMALL_TASKS:  # in Python floats (numpy's calls would cost more)
        small = small_fair_weights(K[0].tolist(), alpha, _steps(T, alpha), _MAX_STEPS)
        if small is not None:
            return np.array([small])
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        norms = np.sqrt(K.diagonal(0, 1, 2))
        C = K / (norms[:, :, None] * norms[:, None, :])
        progress = C.sum(2)
        total = progress.sum(1)
        clear = _clear_of_origin(progress, total)
        cold = total > 0  # the ray below is real
        alike = C >= 1 - _PARALLEL
        if np.count_nonzero(alike) > S * T:
            cold &= alike.sum((1, 2)) == T
        c, scale, ray = _coefficients(norms, total, alpha, cold)
        everywhere = bool((cold & clear).all())
        if everywhere:
            beta, solved = _batched_newton(C, c, ray, alpha)
            if solved.all():
                return beta * scale
        else:
            C, clear = C[cold], clear[cold]
            beta, solved = _batched_newton(C, None if c is None else c[cold], ray[cold], alpha)
            progress = (C @ beta[:, :, None])[:, :, 0]
            solved &= clear | _clear_of_origin(progress, (beta * progress).sum(1))
    kept = np.flatnonzero(cold)[solved]
    weights = np.empty_like(norms)
    weights[kept] = beta[solved] * scale[kept]
    rest = np.ones(S, dtype=bool)
    rest[kept] = False
    for s in np.flatnonzero(rest):
        weights[s] = fair_weights(K[s], alpha)
    return weights


def _coefficients(
    norms: np.ndarray, total: np.ndarray, alpha: float, cold: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """The right sides' ``c`` (``None`` for all ones, at ``α = 1``), relative to each segment's
    largest, ``scale`` turning the ``β`` they give into weights, and the ray's length (see
    :func:`_batched_newton`); at ``α ≠ 1`` clears ``cold`` where ``c`` spans more than ``e^30``
    (:data:`_DIRECT_SPREAD`, where :func:`fair_weights` continues from ``α = 1``)."""
    if alpha == 1.0:
        return None, 1 / norms, np.sqrt(norms.shape[1] / total)
    log_c = (1 / alpha - 1) * np.log(norms)
    log_kappa = log_c.max(1, keepdims=True)
    cold &= log_kappa[:, 0] - log_c.min(1) <= _DIRECT_SPREAD
    c = np.exp(log_c - log_kappa)
    # C β = c β^(−1/α) with c scaled by κ has β scaled by κ^(α/(1+α)).
    scale = np.exp(alpha / (1 + alpha) * log_kappa) / norms
    return c, scale, (c.sum(1) / total) ** (alpha / (1 + alpha))


def _steps(T: int, alpha: float, S: int = 1) -> int:
    """Newton steps before the first test: :data:`_FIRST_TEST`, one more beyond 4 tasks and one
    more at ``α ≠ 1``. One segment takes at most 4 (at 5 about half pass, and the others go on
    in :func:`_finish`); several take at least 4, as one among them likely needs it."""
    steps = _FIRST_TEST + (T > 4) + (alpha != 1.0)
    return max(steps, 4) if S > 1 else min(steps, 4)


def _clear_of_origin(progress: np.ndarray, length2: np.ndarray) -> np.ndarray:
    """Per segment, whether the hull of the unit gradients misses the origin by far more than
    :data:`_STATIONARY` (so :func:`fair_weights` solves rather than answering zero): ``d`` with
    ``u_t · d = progress_t`` and ``‖d‖² = length2`` bounds every convex combination's norm below
    by ``min_t progress_t / ‖d‖`` (:func:`fair_weights`' shortcut, there with ``d = Σ_t u_t``)."""
    return progress.min(1) > np.sqrt(_CLEAR_MARGIN * _STATIONARY * length2)


def _batched_newton(
    C: np.ndarray, c: np.ndarray | None, ray: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """``β [S, T]`` with ``C β = c β^(−1/α)`` (``c = 1`` where ``None``) for cosine matrices
    ``C [S, T, T]``, from ``β = ray · 1``, and which segments hold every equation to its
    rounding (:data:`_ROUNDING` of the sum of its terms' magnitudes, :func:`fair_weights`' test).

    Newton's method on the equations in ``y = log β``, as :func:`fair_weights`' polish: with
    ``p = c β^(−1/α)`` the Jacobian is ``J = C diag(β) + diag(p/α)`` and, as ``J 1 = Cβ + p/α``,
    the step ``Δy = J⁻¹(p − Cβ)`` is also ``(1 + 1/α) J⁻¹p − 1``: no product with ``C``. The
    steps scale the weights, so they stay positive. The ray's length is the minimum of the
    convex ``f(t·1) = ½ t² 1ᵀC1 − Σ_t c_t ∫ t^(−1/α)``. A fixed number of steps, then the test
    against each equation's right side alone (stricter than against all its terms, and one
    product fewer); where that fails, :func:`_finish`. No line search: a segment that diverges
    or stalls fails the tests and gets the damped solver."""
    S, T, _ = C.shape
    jacobian = np.empty_like(C)
    diagonal = jacobian.reshape(S, T * T)[:, :: T + 1]  # a view, rewritten at each step
    beta = ray[:, None].repeat(T, 1)
    exponent, gain = -1 / alpha, 1 + 1 / alpha
    for _ in range(_steps(T, alpha, S)):
        p = beta**exponent if c is None else c * beta**exponent
        _jacobian(C, beta, p, alpha, jacobian, diagonal)
        beta = beta * np.exp(gain * stacked_solve(jacobian, p) - 1)
    p = beta**exponent if c is None else c * beta**exponent
    # A diverged step leaves inf or 0 in β, where inf ≤ inf would pass: finite p first.
    if np.isfinite(p).all() and (np.abs(p - (C @ beta[:, :, None])[:, :, 0]) <= _ROUNDING * p).all():
        return beta, np.ones(S, dtype=bool)
    return _finish(C, c, alpha, beta)


def _jacobian(
    C: np.ndarray, beta: np.ndarray, p: np.ndarray, alpha: float, out: np.ndarray, diagonal: np.ndarray
) -> None:
    """The equations' Jacobian in ``log β``, ``C diag(β) + diag(p/α)``, written into ``out``
    (``diagonal`` its diagonal's view; ``C``'s diagonal is 1 to rounding, which Newton's
    steps do not see)."""
    np.multiply(C, beta[:, None, :], out=out)
    np.add(beta, p if alpha == 1.0 else p / alpha, out=diagonal)


def _finish(
    C: np.ndarray, c: np.ndarray | None, alpha: float, beta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_batched_newton`'s steps continued from ``β`` while a segment's equations are
    short of their rounding, in the residual form (``Δy = J⁻¹(p − Cβ)``, whose rounding
    shrinks with the residual), each segment kept at the first ``β`` that passes, up to
    :data:`_MAX_STEPS` in all."""
    S, T, _ = C.shape
    jacobian = np.empty_like(C)
    diagonal = jacobian.reshape(S, T * T)[:, :: T + 1]
    both = np.concatenate([C, np.abs(C)], 1)  # C β and |C| β in one product
    exponent = -1 / alpha
    solved, answer = np.zeros(S, dtype=bool), beta
    for step in range(_steps(T, alpha, S), _MAX_STEPS + 1):
        p = beta**exponent if c is None else c * beta**exponent
        products = both @ beta[:, :, None]
        residual = p - products[:, :T, 0]
        bound = _ROUNDING * (products[:, T:, 0] + p)  # inf where a step diverged: no test
        holds = ((np.abs(residual) <= bound) & np.isfinite(bound)).all(1) & ~solved
        answer = np.where(holds[:, None], beta, answer)
        solved |= holds
        if step == _MAX_STEPS or solved.all():
            break
        _jacobian(C, beta, p, alpha, jacobian, diagonal)
        beta = beta * np.exp(stacked_solve(jacobian, residual))
    return answer, solved
