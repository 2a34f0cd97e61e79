"""The α-fair allocation ``K w = w^(−1/α)`` from the Gramian (FairGrad's update; Nash-MTL's at
``α = 1``), by Newton's method in cosine coordinates, and its two-task closed form at ``α = 1``."""

from __future__ import annotations

import math

import numpy as np

from ._common import solve_small
from ._min_norm import min_norm_weights

# Pareto-stationary, so no allocation helps every task: the hull of the unit task gradients
# passes within √this of the origin (float64 rounding of the cosine matrix leaves ~1e-16 there
# when it passes through it).
_STATIONARY = 1e-12
# The shortcut past the stationarity solve asks for a bound this many times _STATIONARY.
_CLEAR_MARGIN = 100.0
# Newton's method with a backtracking line search converges here (see _newton); the cap only
# guards against rounding.
_MAX_NEWTON_STEPS = 200
# Newton on f has converged once the decrement squared (≈ twice the gap to the optimum) is at
# float64 rounding of f's size, βᵀCβ.
_CONVERGED = 1e-26
# Converged once every stationarity equation holds to this fraction of the sum of its terms'
# magnitudes (a few float64 epsilons).
_ROUNDING = 1e-14
# f's rounding, relative to the magnitudes of its terms (a few float64 epsilons).
_F_ROUNDING = 1e-15
# Armijo's sufficient-decrease fraction, and the smallest step tried before rounding is
# declared to have stopped the descent.
_ARMIJO = 0.25
_SMALLEST_STEP = 1e-12
# Newton steps on f stop this fraction of the way to the boundary β = 0.
_TO_BOUNDARY = 0.99
# The longest step in log β (a factor of e^20 on a weight) before backtracking.
_LONGEST_STEP = 20.0
# Gauss-Seidel sweeps allowed when the Newton descent stalls (see _newton), and the range of
# log β they search (float64's).
_MAX_SWEEPS = 20
_LOG_RANGE = 700.0
# Tasks whose cosine is within this of 1 point the same way (solved as one).
_PARALLEL = 1e-12
# The smallest weight β kept (float64's smallest normal number), and float64's epsilon.
_TINY = float(np.finfo(np.float64).tiny)
_EPSILON = float(np.finfo(np.float64).eps)
# Two tasks are Pareto-stationary where 1 + ρ ≤ 2e-12 (ρ their cosine: the hull's min-norm
# point, (1 + ρ)/2, at _STATIONARY): the closed form answers 5x from there either way, and leaves
# the band between these two to the general solver.
_OPPOSED = 1e-11
_OPPOSED_ZERO = 4e-13
# Continuation from α = 1 moves α by at most this factor per solve.
_STAGE = 1.25
# Other α are first solved cold, without continuation, while the c_t span at most e^this.
_DIRECT_SPREAD = 30.0
# The solver's c_t are relative to the largest, as logarithms; smaller ones are held at this.
_LOG_FLOOR = -1400.0


def two_task_bargaining_weights(K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``α = 1`` allocation for two tasks in closed form, for Gramians ``K [S, 2, 2]``: weights
    ``[S, 2]`` and which segments it settled. In cosine coordinates ``C = [[1, ρ], [ρ, 1]]`` the
    equations ``C β = 1/β`` are symmetric, so ``β₁ = β₂ = (1 + ρ)^(−1/2)`` and ``w_t = β/‖g_t‖``;
    one non-zero row gets ``1/‖g‖``, none 0; zero for ``1 + ρ < 4e-13`` (Pareto-stationary). The
    band ``4e-13 ≤ 1 + ρ ≤ 1e-11`` around the general solver's stationarity threshold
    (``1 + ρ = 2e-12``) is left to it. Near that threshold the problem itself is ill-conditioned:
    an ulp in ``ρ`` moves ``β`` by ``ε/(1 + ρ)`` relative, in either solver."""
    a, b, c = K[:, 0, 0], K[:, 0, 1], K[:, 1, 1]
    norms = np.sqrt(np.stack([a, c], 1))
    positive = norms > 0
    both = positive.all(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (b / (norms[:, 0] * norms[:, 1])).clip(-1.0, 1.0)
        beta = np.where(both, 1 / np.sqrt(np.where(both, 1 + rho, 1.0)), 1.0)
        weights = np.where(positive, beta[:, None] / np.where(positive, norms, 1.0), 0.0)
    stationary = both & (1 + rho < _OPPOSED_ZERO)
    settled = ~both | (1 + rho > _OPPOSED) | stationary
    return np.where(stationary[:, None], 0.0, weights), settled


def fair_weights(K: np.ndarray, alpha: float) -> np.ndarray:
    """The ``w > 0`` with ``K w = w^(−1/α)`` for a Gramian ``K`` with positive diagonal, or zeros
    where the rows are Pareto-stationary."""
    norms = np.sqrt(K.diagonal())
    C = K / (norms[:, None] * norms)
    if not _clearly_not_stationary(C):
        hull = min_norm_weights(C)
        if float(hull @ C @ hull) <= _STATIONARY:
            return np.zeros(len(K))
    log_norms = np.log(norms)
    # Tasks with the same direction (cosine 1 to rounding) share one equation's left side, so
    # each group is solved as one task and split after (see _group_split); a system holding
    # both would be singular to rounding.
    leaders = np.argmax(C >= 1 - _PARALLEL, axis=1)
    if (leaders == np.arange(len(C))).all():  # no two tasks alike (the common case)
        group, reduced = leaders, C
    else:
        _, first, group = np.unique(leaders, return_index=True, return_inverse=True)
        reduced = C[first[:, None], first]
    # An overflowing trial step is rejected; divisions by zero are masked out.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        log_c, log_share = _group_split(log_norms, group, alpha)
        log_b = _direct_log_weights(reduced, log_c, alpha)
        if log_b is None:
            log_b, log_share = _continued_log_weights(reduced, log_norms, group, alpha)
        # Each group's β split among its members (log_share at α = alpha).
        log_w = log_b[group] + log_share - log_norms
    return np.exp(log_w)


def _direct_log_weights(C: np.ndarray, log_c: np.ndarray, alpha: float) -> np.ndarray | None:
    """``log β`` per group solved cold at ``alpha`` (one Newton solve: ~3x faster than the
    continuation at ``α = 2``), or ``None`` where that is the continuation's job: ``c`` spans
    more than ``e^30`` (:data:`_DIRECT_SPREAD`; a cold start can stall there), or the solve
    ends short of an equation's rounding. At ``α = 1`` the cold solve is the whole method."""
    if alpha != 1.0 and float(log_c.max() - log_c.min()) > _DIRECT_SPREAD:
        return None
    log_b, solved = _log_weights(C, log_c, alpha, None)
    return log_b if solved or alpha == 1.0 else None


def _continued_log_weights(
    C: np.ndarray, log_norms: np.ndarray, group: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """``log β`` per group and each member's ``log`` share, by continuation from Nash-MTL's
    problem (``α = 1``, scale-free) to ``alpha`` in steps of a factor :data:`_STAGE`, each
    solved from the last: far from ``α = 1`` and with norms 1e25 apart, ``c`` spans hundreds
    of orders of magnitude and a cold start can stall."""
    stages = math.ceil(abs(math.log(alpha)) / math.log(_STAGE))
    log_c, log_share = _group_split(log_norms, group, 1.0)
    log_b, _ = _log_weights(C, log_c, 1.0, None)
    for stage in range(1, stages + 1):
        log_c, log_share = _group_split(log_norms, group, alpha ** (stage / stages))
        log_b, _ = _log_weights(C, log_c, alpha ** (stage / stages), log_b)
    return log_b, log_share


def _clearly_not_stationary(C: np.ndarray) -> bool:
    """A sufficient test for the hull of the unit gradients to miss the origin by far more than
    :data:`_STATIONARY`, which spares the min-norm solve in the common case: ``d = Σ_t û_t``
    gives every task at least ``m = min_t (C 1)_t``, so for any convex weights
    ``‖Σ w_t û_t‖ ≥ m / ‖d‖`` with ``‖d‖² = 1ᵀC1``."""
    progress = C.sum(1)
    least = float(progress.min())
    return least > 0 and least * least > _CLEAR_MARGIN * _STATIONARY * float(progress.sum())


def _group_split(log_norms: np.ndarray, group: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per group, ``log c`` with ``c = (Σ_t c_t^α)^(1/α)`` (``c_t = ‖g_t‖^(1/α − 1)``, the right
    sides' coefficients in β); per member, ``log (c_t^α / Σ c^α)``, its share of the group's β.
    A group's members share ``(Cβ)_t = P``, so ``β_t = (c_t/P)^α``: the group is one task."""
    member = alpha * ((1 / alpha - 1) * log_norms)  # α log c_t
    if int(group.max()) + 1 == len(group):  # every task its own group: its sum is itself
        return member / alpha, member - member
    total = _group_logsumexp(member, group)
    return total / alpha, member - total[group]


def _group_logsumexp(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """``log Σ_{t ∈ g} exp(values_t)`` for each group ``g`` (ids ``0..G-1``), in group order."""
    starts = np.concatenate([[0], np.cumsum(np.bincount(group))[:-1]])
    return np.logaddexp.reduceat(values[np.argsort(group, kind="stable")], starts)


def _log_weights(
    C: np.ndarray, log_c: np.ndarray, alpha: float, start: np.ndarray | None
) -> tuple[np.ndarray, bool]:
    """``log β`` per group for the groups' ``log c`` at ``alpha``, from ``start`` (the same at a
    nearby ``alpha``) or cold, and whether every equation holds to its rounding."""
    # C β = c β^(−1/α); scaling c by κ scales β by κ^(α/(1+α)), so the solver sees c relative
    # to its largest entry and the scale comes back in the logarithm.
    log_kappa = float(log_c.max())
    log_c = np.maximum(log_c - log_kappa, _LOG_FLOOR)
    shift = alpha / (1 + alpha) * log_kappa
    if start is None:
        beta, solved = _newton(C, log_c, alpha)
    else:
        beta, solved = _polish(C, log_c, alpha, start - shift)
    # A weight below float64's range (a huge task at large α, whose progress the others
    # provide) stays at its smallest positive value, a finite start for the next stage.
    return np.log(np.maximum(beta, _TINY)) + shift, solved


def _newton(C: np.ndarray, log_c: np.ndarray, alpha: float) -> tuple[np.ndarray, bool]:
    """Solve ``(Cβ)_t = c_t β_t^(−1/α)`` for ``β > 0`` to the rounding of each equation's terms:
    :func:`_descend` on the convex problem, then :func:`_polish` for the equations its
    objective is too coarse to see (and whether they all hold)."""
    beta = _descend(C, log_c, alpha)
    return _polish(C, log_c, alpha, np.log(beta))


def _descend(C: np.ndarray, log_c: np.ndarray, alpha: float) -> np.ndarray:
    """Newton's method on the strictly convex ``f(β) = ½ βᵀCβ − Σ_t c_t ∫ β_t^(−1/α)``, whose
    stationarity the equations are, with Armijo backtracking on ``f`` from steps that stop 1%
    short of the boundary ``β = 0``: it converges from anywhere, until ``f``'s rounding stops
    the line search."""
    c = np.exp(log_c)
    power = 1 - 1 / alpha  # ∫ x^(−1/α) = x^power / power, or log x at power 0

    magnitudes = np.abs(C)

    def objective(beta: np.ndarray) -> tuple[float, float]:
        # f(β) and its float64 rounding: epsilon times the magnitudes of the terms summed into
        # it, which for nearly opposed tasks (C nearly singular) dwarf the cancelled βᵀCβ.
        barrier = np.log(beta) if power == 0 else beta**power / power
        value = float(0.5 * beta @ C @ beta - c @ barrier)
        return value, _F_ROUNDING * float(0.5 * beta @ magnitudes @ beta + np.abs(c * barrier).sum())

    # Start on the ray of equal β at its best length (the least of f(t·1)). 1ᵀC1 = ‖Σ u_t‖² is
    # rounding-sized, even slightly negative, for rows that nearly cancel: floored at its
    # rounding so the start stays a positive real.
    ray = max(float(C.sum()), _EPSILON * float(magnitudes.sum()))
    beta = np.full(len(c), (float(c.sum()) / ray) ** (alpha / (1 + alpha)))
    value, rounding = objective(beta)
    previous, full_steps = math.inf, False
    for _ in range(_MAX_NEWTON_STEPS):
        gradient = C @ beta - c * beta ** (-1 / alpha)
        hessian = C + np.diag(c / alpha * beta ** (-1 / alpha - 1))
        scale = 1 / np.sqrt(hessian.diagonal())
        step = -scale * solve_small(hessian * (scale[:, None] * scale), scale * gradient)
        decrement2 = float(-gradient @ step)
        # Converged to f's rounding, or stalled there: once full steps are taken the decrement
        # squares at every step, so one that does not fall is rounding. Also stops on NaN.
        if not (
            decrement2 > _CONVERGED * float(beta @ C @ beta) and (not full_steps or decrement2 < previous)
        ):
            break
        # A decrease f cannot resolve: the Armijo test below would accept rounding noise and
        # crawl for _MAX_NEWTON_STEPS (40 ms for two tasks 1e-11 from opposed); _polish, on the
        # equations, takes over.
        if decrement2 <= rounding:
            break
        previous = decrement2
        # The longest step that keeps β > 0 (the division's other entries are masked out).
        t = min(1.0, _TO_BOUNDARY * float(np.where(step < 0, beta / -step, np.inf).min()))
        while t >= _SMALLEST_STEP:
            candidate = beta + t * step
            candidate_value, candidate_rounding = objective(candidate)
            if candidate_value <= value - _ARMIJO * t * decrement2:
                break
            t /= 2
        else:  # f's rounding
            break
        full_steps = t == 1.0
        # A step the line search accepts without lowering f is rounding's doing: f can no
        # longer tell the iterates apart (left alone, Newton would crawl on for every step).
        stalled = candidate_value >= value
        beta, value, rounding = candidate, candidate_value, candidate_rounding
        if stalled:
            break
    return beta


def _polish(C: np.ndarray, log_c: np.ndarray, alpha: float, y: np.ndarray) -> tuple[np.ndarray, bool]:
    """Newton's method on the equations in ``y = log β``, from ``y``: steps scale weights
    instead of shifting them, so a task whose weight is 1e-19 of the others' is reached in a
    few steps rather than crawled towards from the boundary. The Jacobian
    ``(C + diag(c β^(−1/α−1)/α)) diag(β)`` is never singular (``C`` is positive
    semidefinite), so each step descends the equations' scaled
    residual (Armijo backtracking on it). A task whose equation no other one can see (its
    weight 1e-150 of the rest, say) can stall that descent; then one Gauss-Seidel sweep solves
    each equation alone for its own weight (exact coordinate minimization of the convex
    ``f``), and Newton resumes. Also says whether every equation ended at its rounding.
    """
    magnitudes = np.abs(C)

    def equations(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        beta = np.exp(y)
        pull = np.exp(log_c - y / alpha)
        return C @ beta - pull, magnitudes @ beta + pull, beta, pull

    residual, size, beta, pull = equations(y)
    sweeps = 0
    for _ in range(_MAX_NEWTON_STEPS):
        weights = 1 / size  # each equation relative to its terms' magnitudes
        # Converged: each equation to its own rounding (a task whose weight is 1e-16 of
        # another's is not held to the larger one's accuracy). Also stops on NaN.
        error = float((np.abs(residual) * weights).max())
        if not error > _ROUNDING:
            return beta, error <= _ROUNDING
        jacobian = C * beta[None, :] + np.diag(pull / alpha)
        step = -solve_small(weights[:, None] * jacobian, weights * residual)
        merit = float(((weights * residual) ** 2).sum())
        t = min(1.0, _LONGEST_STEP / float(np.abs(step).max()))
        while t >= _SMALLEST_STEP:
            candidate = equations(y + t * step)
            if float(((weights * candidate[0]) ** 2).sum()) <= (1 - _ARMIJO * t) * merit:
                y = y + t * step
                break
            t /= 2
        else:
            if sweeps == _MAX_SWEEPS:  # rounding: the last iterate is as good as it gets
                break
            sweeps += 1
            y = _sweep(C, log_c, alpha, y)
            candidate = equations(y)
        residual, size, beta, pull = candidate
    return beta, bool(float((np.abs(residual) * (1 / size)).max()) <= _ROUNDING)


def _sweep(C: np.ndarray, log_c: np.ndarray, alpha: float, y: np.ndarray) -> np.ndarray:
    """One Gauss-Seidel sweep: each ``y_t`` in turn solves its own equation
    ``e^(y_t) + b_t = c_t e^(−y_t/α)`` (``b_t`` the other tasks' terms; ``C_tt = 1``), whose left
    side minus right side increases in ``y_t``: bracketed Newton steps."""
    y = y.copy()
    for t in range(len(y)):
        others = float(C[t] @ np.exp(y)) - math.exp(y[t])
        low, high, x = -math.inf, math.inf, float(y[t])
        for _ in range(_MAX_NEWTON_STEPS):
            own, pull = math.exp(x), math.exp(log_c[t] - x / alpha)
            value = own + others - pull
            if abs(value) <= _ROUNDING * (own + abs(others) + pull):
                break
            if value > 0:
                high = x
            else:
                low = x
            x_next = x - max(-_LONGEST_STEP, min(_LONGEST_STEP, value / (own + pull / alpha)))
            if not low < x_next < high:
                x_next = 0.5 * (low + high) if math.isfinite(low) and math.isfinite(high) else x_next
            if x_next == x:
                break
            x = min(max(x_next, -_LOG_RANGE), _LOG_RANGE)
        y[t] = x
    return y
