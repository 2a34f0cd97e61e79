"""CAGrad's conflict-averse direction, solved exactly in Gramian space."""

from __future__ import annotations

import functools
import itertools
import math
from typing import ClassVar, Literal

import attrs
import numpy as np
from torch import Tensor

from .._checks import reduction_field
from .._combiner import GramianCombinerWithReduction
from .._properties import Property
from ._solvers import as_weights, batched_inverse, cone_multipliers, small_gramian, with_closed_form

# Supports tried in closed form before the active-set walk (see _Dual.active_set).
_GUESSES = 3
# When rounding stops the active-set method short of a verified optimum, problems with up to
# this many non-zero task rows try every support (2^T − 1 small solves, batched by size).
_MAX_ENUMERATED_TASKS = 10
# The active-set methods end in finitely many steps; this only guards against rounding making
# them cycle.
_MAX_ACTIVE_SET_STEPS = 1000
# Margin over float64 rounding of the sign and optimality tests, relative to the sizes summed
# to get the quantities they compare.
_TOLERANCE = 1e-12
# A support's affine hull counts as passing through the origin (A = 0, λ undetermined) when its
# nearest point to the origin is shorter than this times Σ|ω_t|, the unit-vector contributions
# it is built from: Gramian rounding leaves ~1e-8 of that there when the hull does pass through.
_FLAT = 1e-6
# The two-task closed form settles a segment only this far (relative) from a branch point of the
# general solver, and a hull this far from the origin (relative to the rows it is built from).
_CLEAR = 1e-9
_CLEAR_HULL = 1e-4
# The exhaustive search skips supports whose bordered system has a larger condition number:
# affinely dependent up to rounding (a smaller support spans the same hull), or too badly
# scaled to trust.
_ILL_CONDITIONED = 1e8
# The active-set method walks through such supports (between near-duplicate tasks, say) and
# only drops a task from a support whose system is singular up to rounding.
_SINGULAR = 1e14
# The batched guesses settle a segment only below this condition number: their sums run in
# another order than the per-segment solver's, and this keeps the two within ~1e-12 of each
# other; worse-conditioned supports go to the per-segment solver.
_BATCHED_CONDITION = 1e4
# The Python-float step for one small segment decides only this far (relative) from each of
# _Dual's thresholds, so that rounding its sums in another order cannot change the decision.
_SMALL_MARGIN = 1e-9
# What Σ border ω_u and Σ border ω_v come to (the affine constraint, and its directions').
_SUMS = np.array([1.0, 0.0])
_SUMS.flags.writeable = False


def _check_c(instance: object, _attribute: attrs.Attribute, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{type(instance).__name__} c must be a number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{type(instance).__name__} c must be a finite number >= 0, got {value!r}")


def _check_rescale(instance: object, _attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{type(instance).__name__} rescale must be True or False, got {value!r}")


@attrs.define(eq=False)
class CAGrad(GramianCombinerWithReduction):
    """Conflict-averse gradient descent (Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient
    Descent for Multi-task Learning", NeurIPS 2021, eq. 3-5 and Alg. 1).

    Within a ball around the average gradient ``g0 = (1/T) Σ_t g_t`` the update maximizes the
    progress of the task that progresses least (eq. 3)::

        d = argmax_{‖d − g0‖ ≤ √φ} min_t g_t · d,    φ = c² ‖g0‖²

    ``c = 0`` is gradient descent on the average; a larger ``c`` trades average progress for
    the worst task's. The dual (eq. 4) is a problem over the simplex,
    ``w* = argmin_w F(w) = g_w · g0 + √φ ‖g_w‖`` with ``g_w = Σ_t w_t g_t``, and
    ``d = g0 + (√φ / ‖g_w*‖) g_w*`` (eq. 5): the task weights are ``1/T + (√φ/‖g_w*‖) w*``.
    Min and max exchange: ``min_t g_t · d = F(w*)``.

    Solver. The paper's code minimizes ``F`` with scipy's SLSQP; this solves it exactly, in the
    Gramian, with no iteration count to tune:

    - Closed form on a support ``S``: the optimum has ``g_t · d = μ`` for ``t ∈ S``,
      ``d − g0 = λ g_w`` and ``λ ‖g_w‖ = √φ``. With ``w = u + v/λ``, the bordered systems
      ``K u = α 1, Σ u = 1`` (``g_u``: the support's affine hull's nearest point to the origin)
      and ``K v = κ 1 − K b, Σ v = 0`` (``g_v``: minus ``g0`` projected on the hull's
      directions) do not involve ``λ``, ``g_u ⊥ g_v``, and ``λ² ‖g_w‖² = λ² A + C``
      (``A = ‖g_u‖²``, ``C = ‖g_v‖²``), so ``λ = √((φ − C)/A)``: the minimum of ``F`` on the
      affine hull, and a ``d`` on the ball.
    - Wolfe's active-set method ("Finding the nearest point in a polytope", 1976, as for
      :class:`MGDA`, with this closed form for the affine minimum): walk from the current
      weights towards the support's minimum until a weight reaches zero and drop it, or, at a
      minimum with non-negative weights, add the task that most violates the dual's KKT
      conditions (a task progressing less than the support's). ``F`` decreases at every step,
      so no support repeats and the method ends at a KKT point, which is the optimum (the dual
      is convex). It first tries the support of all tasks, the optimum for gradients in
      general position, then up to twice the tasks the last try's affine minimum weights
      positively; a try is kept only if it passes the KKT test, and most problems end there.
      The tries run on all segments at once (:func:`guessed_weights`, ~0.1 ms at ``T = 3``,
      ~0.23 ms at ``T = 8`` for one segment, ~2.5 and ~5.5 times that for 20); the walk, per
      segment, only where they fail: each step one ``(|S|+1)``-sized solve, ~90 µs (mostly
      numpy call overhead), ~0.8 ms at ``T = 8`` when it adds the tasks one by one.
    - The result is only accepted once the KKT conditions hold, each comparison to its own
      rounding. Should rounding stop the walk first (norms ~1e15 apart, near-duplicate tasks),
      then for up to 10 tasks every support's closed form is computed (``2^T − 1`` solves,
      batched by size, a few ms at ``T = 8``), and the KKT candidate whose worst task
      progresses most is kept.
    - Everything is solved in cosine coordinates (weights times gradient norms), so rows of
      very different norms keep their accuracy; scaling ``K`` leaves ``w*`` unchanged.
    - Two tasks: the dual lives on a segment, and :func:`two_task_weights` answers every
      segment at once in closed form (the support formula above, or a vertex); the general
      solver only sees segments near its special cases below. Equal to it to rounding (tested).

    Edge cases, all deliberate:

    - ``c = 0`` or ``g0 = 0`` (a zero ball): the mean, ``d = g0``.
    - A zero gradient row gets weight 0 and is left out of the dual (as in :class:`MGDA`): its
      progress is 0 whatever ``d``, so it would hold the worst-task objective at zero and turn
      the step into the plain mean. ``g0`` is still the average over all ``T`` rows.
    - The dual optimum at ``g_w* = 0`` (zero in the gradients' convex hull, with a ball big
      enough that no task can be made to progress; common for ``c ≥ 1``, for exactly opposed
      tasks, and for segments with fewer parameters than tasks): eq. 5 divides zero by zero and
      many ``d`` are optimal (the paper's code then returns ``g0``, whether or not a task
      opposes it). The update is the optimal ``d`` nearest to ``g0``: the projection of ``g0``
      onto ``{d : g_t · d ≥ 0 for all t}`` (non-negative least squares on the cosines, Lawson
      & Hanson), which is ``g0`` when no task opposes ``g0`` and otherwise removes just the
      opposing components. It is used when it lies in the ball and the best the ball allows
      is zero progress for the worst task, up to rounding (1e-12 of that task's gradient norm
      times ``‖d‖``). CAGrad itself is discontinuous there: a hull that misses the origin by
      ``ε > 0`` still spends the whole ball on the tasks that make it miss.
    - The Gramian fixes ``‖g0‖`` only to about ``eps (mean ‖g_t‖)² / ‖g0‖`` when the task
      gradients nearly cancel, and the radius ``c ‖g0‖`` with it.
    - Segments are independent problems (a ``g0`` and a ball per segment).

    Args:
        c: radius of the ball relative to ``‖g0‖``; 0.5 in the paper's code (the paper's
            theory asks ``c < 1`` for convergence to a stationary point of the average).
        rescale: divide the update by ``1 + c²`` (the paper code's default ``rescale=1``).
        reduction: ``"mean"`` (paper, ``g0`` the average) or ``"sum"`` (``T`` times that, the
            scale of ``sum`` and of PCGrad's default).
    """

    name: ClassVar[str] = "cagrad"
    properties: ClassVar[frozenset[Property]] = frozenset(
        {
            Property.PERMUTATION_EQUIVARIANT,
            Property.POSITIVELY_HOMOGENEOUS,
        }
    )

    c: float = attrs.field(default=0.5, validator=_check_c)
    rescale: bool = attrs.field(default=True, validator=_check_rescale)
    reduction: Literal["sum", "mean"] = reduction_field("mean")
    unreduced: ClassVar[Literal["sum", "mean"]] = "mean"  # g0 the average

    def unreduced_weights(self, gramian: Tensor) -> Tensor:
        T = gramian.shape[1]
        c = float(self.c)
        small = small_gramian(gramian)
        if small is not None and T != 2:  # one segment of a few tasks: Python floats
            weights = small_conflict_averse_weights(small, c)
            if weights is not None:
                return as_weights(weights)
        closed_form = two_task_weights if T == 2 else guessed_weights
        return with_closed_form(
            gramian, lambda K: closed_form(K, c), lambda K: conflict_averse_weights(K, T, c)
        )

    def divisor(self) -> float:
        """``1 + c²`` with ``rescale``, else 1."""
        c = float(self.c)
        return 1.0 + c * c if self.rescale else 1.0


def two_task_weights(K: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """CAGrad's weights (before rescaling) for two tasks in closed form, for Gramians
    ``K [S, 2, 2]``: weights ``[S, 2]`` and which segments it settled; the rest (a zero row, a
    hull within 1e-4 of the origin, a value within 1e-9 of a branch point, including a worst
    progress within 1e-9 of 0, where the general solver may take the projection) are left to
    :func:`conflict_averse_weights`, whose documented choices they need.

    Scaled gradients ``p_t`` (largest norm 1), ``h = p₁ − p₂``, ``H = ‖h‖²``. The interior
    optimum (both tasks in the support, equal progress) is ``d − g0 = √(φ − C) ĝ_u + g_v``, with
    ``g_u`` the segment's line's nearest point to the origin (``‖g_u‖² = A = n₁²n₂²(1 − ρ²)/H``)
    and ``g_v = −(h · g0 / H) h`` (``C = (h · g0)²/H``), valid when its coefficients are
    non-negative; otherwise the optimum is a vertex, ``d − g0 = √φ ĝ_t`` for the task ``t`` that
    then progresses least."""
    S = len(K)
    a, b, e = K[:, 0, 0], K[:, 0, 1], K[:, 1, 1]
    weights = np.full((S, 2), 0.5)
    both = (a > 0) & (e > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rho = (b / np.sqrt(a) / np.sqrt(e)).clip(-1.0, 1.0)
        largest = np.maximum(a, e)
        n1, n2 = np.sqrt(a / largest), np.sqrt(e / largest)
        g01, g02 = 0.5 * (n1 + rho * n2), 0.5 * (n2 + rho * n1)  # ĝ_t · g0
        phi = c * c * np.maximum(0.5 * (n1 * g01 + n2 * g02), 0.0)
        radius = np.sqrt(phi)
        size = 0.5 * (n1 + n2) + radius
        H = (n1 - n2) ** 2 + 2 * n1 * n2 * (1 - rho)
        A = n1 * n1 * n2 * n2 * (1 - rho) * (1 + rho) / H
        kappa = 0.5 * (n1 * n1 - n2 * n2) / H  # h · g0 / H
        # g_u = q₁ p₁ + q₂ p₂ (q₁ + q₂ = 1, each from its own formula: no cancellation in 1 − q)
        q1, q2 = n2 * (n2 - rho * n1) / H, n1 * (n1 - rho * n2) / H
        length = np.sqrt(np.maximum(phi - kappa * kappa * H, 0.0) / A)  # √(φ − C) / ‖g_u‖
        nu1, nu2 = length * q1 - kappa, length * q2 + kappa  # d − g0 = ν₁ p₁ + ν₂ p₂
        omega = np.abs(nu1 * n1) + np.abs(nu2 * n2)
        progress = n1 * g01 + nu1 * n1 * n1 + nu2 * rho * n1 * n2  # p_t · d, equal for both
        interior = (
            (np.sqrt(A) > _CLEAR_HULL * (np.abs(q1) * n1 + np.abs(q2) * n2))
            & (kappa * kappa * H < phi)
            & (np.minimum(nu1 * n1, nu2 * n2) > _CLEAR * omega)
            & (np.abs(progress) > _CLEAR * (size + omega))
        )
        # Vertex t: p_t · d and the other's, p_s · d.
        own1, other1 = n1 * (g01 + radius), n2 * (g02 + radius * rho)
        own2, other2 = n2 * (g02 + radius), n1 * (g01 + radius * rho)
        margin = _CLEAR * (size + radius) * (n1 + n2)
        clear = _CLEAR * (size + radius)
        vertex1 = ~interior & (other1 - own1 > margin) & (np.abs(own1) > clear)
        vertex2 = ~interior & ~vertex1 & (other2 - own2 > margin) & (np.abs(own2) > clear)
        weights[:, 0] += np.where(interior, nu1, np.where(vertex1, radius / n1, 0.0))
        weights[:, 1] += np.where(interior, nu2, np.where(vertex2, radius / n2, 0.0))
    settled = both & ((phi == 0) | interior | vertex1 | vertex2)
    return np.where(settled[:, None], weights, 0.0), settled


def small_conflict_averse_weights(K: list[list[float]], c: float) -> list[float] | None:
    """CAGrad's weights (before rescaling) for one Gramian of a few tasks as nested lists, in
    Python floats, where every task's support ends the solve (:meth:`_Dual.active_set`'s
    first guess): its closed form, and each of the KKT, sign, ball and zero-progress tests
    passed with :data:`_SMALL_MARGIN` to spare, so :class:`_Dual` decides the same. ``None``
    (the numpy path decides) for a zero row, a ball of radius near zero, or any test too
    close to call."""
    dual = _small_dual(K, c)
    if dual is None:
        return None
    cos, norms, progress0, phi, size = dual
    T = len(K)
    if phi == 0.0 and c == 0.0:
        return [1.0 / T] * T
    if not phi > _SMALL_MARGIN * c * c * (sum(norms) / T) ** 2:  # φ = c² ‖g0‖², ‖g0‖ ≤ Σ n / T
        return None
    pieces = _small_pieces(cos, norms, progress0)
    if pieces is None:
        return None
    wu, wv, A, C = pieces
    if not (A > (1 + _SMALL_MARGIN) * (_FLAT * sum(map(abs, wu))) ** 2 and C < (1 - _SMALL_MARGIN) * phi):
        return None
    lam = math.sqrt((phi - C) / A)
    omega = [lam * u + v for u, v in zip(wu, wv)]
    if not min(omega) > _SMALL_MARGIN * sum(map(abs, omega)):
        return None
    progress = [  # cos is symmetric: row t holds the column
        n * (p + sum([o * x for o, x in zip(omega, row)])) for n, p, row in zip(norms, progress0, cos)
    ]
    rounding = _TOLERANCE * (size + sum(omega))
    # _Dual's tests: progress_s − progress_t ≤ (n_s + n_t) rounding (here within half of it),
    # and some progress_t > n_t rounding (here twice it).
    if not max(progress) - min(progress) <= min(norms) * rounding:
        return None
    if not any(p > 2 * n * rounding for p, n in zip(progress, norms)):
        return None
    return [1.0 / T + o / n for o, n in zip(omega, norms)]


def _small_dual(
    K: list[list[float]], c: float
) -> tuple[list[list[float]], list[float], list[float], float, float] | None:
    """:class:`_Dual`'s quantities for one small Gramian with no zero row: cosines, norms (the
    largest 1), unit progress ``ĝ_t · g0``, ``φ`` and the size of ``d``; ``None`` for a zero
    row, or one whose norm underflows next to the largest."""
    T = len(K)
    diagonal = [K[t][t] for t in range(T)]
    if not min(diagonal) > 0:
        return None
    largest = max(diagonal)
    norms = [math.sqrt(x / largest) for x in diagonal]
    if not min(norms) > 0:  # a row negligible next to another (or not finite)
        return None
    root = [math.sqrt(x) for x in diagonal]
    cos = [[1.0] * T for _ in range(T)]
    for i in range(T - 1):  # the upper triangle, mirrored: exactly symmetric
        row, root_i = K[i], root[i]
        for j in range(i + 1, T):
            cos[i][j] = cos[j][i] = min(max(row[j] / root_i / root[j], -1.0), 1.0)
    g0 = [n / T for n in norms]
    progress0 = [sum([x * g for x, g in zip(row, g0)]) for row in cos]
    phi = c * c * max(sum([g * p for g, p in zip(g0, progress0)]), 0.0)
    return cos, norms, progress0, phi, sum(g0) + math.sqrt(phi)


def _small_pieces(
    cos: list[list[float]], norms: list[float], progress0: list[float]
) -> tuple[list[float], list[float], float, float] | None:
    """:meth:`_Dual.pieces` on every task of one small problem: ``ω_u, ω_v, A, C`` from the
    bordered system's inverse (:func:`_small_bordered_inverse`), ``None`` where its condition
    number may exceed :data:`_BATCHED_CONDITION` (bounded by ``(T + 1) ‖inverse‖₁``, as in
    :class:`_Duals`)."""
    T = len(cos)
    smallest = min(norms)
    border = [smallest / n for n in norms]  # 1/‖g_t‖ over the largest of them; the shortest's is 1
    inverse = _small_bordered_inverse(cos, border)
    if inverse is None:
        return None
    column_sums = [sum(map(abs, column)) for column in zip(*inverse)]  # ‖inverse‖₁ = their largest
    if not (T + 1) * max(column_sums) <= _BATCHED_CONDITION:
        return None
    wu = [row[T] for row in inverse[:T]]
    wv = [-sum([x * p for x, p in zip(row, progress0)]) for row in inverse[:T]]
    base = border.index(1.0)
    for w, total in ((wu, 1.0), (wv, 0.0)):
        w[base] = 0.0
        w[base] = total - sum([b * x for b, x in zip(border, w)])
    return wu, wv, max(_small_quadratic(cos, wu), 0.0), max(_small_quadratic(cos, wv), 0.0)


def _small_quadratic(matrix: list[list[float]], x: list[float]) -> float:
    """``xᵀ M x``."""
    return sum([xi * m * xj for xi, row in zip(x, matrix) for m, xj in zip(row, x)])


def _small_bordered_inverse(cos: list[list[float]], border: list[float]) -> list[list[float]] | None:
    """The inverse of ``[[C, −b], [bᵀ, 0]]`` (cosines ``C``, border ``b``). For three tasks from
    ``C⁻¹`` (the adjugate; ``None`` unless ``C`` is positive definite) and the Schur
    complement ``s = bᵀC⁻¹b``: ``[[C⁻¹ − u uᵀ/s, u/s], [−uᵀ/s, 1/s]]`` with ``u = C⁻¹b``;
    otherwise by :func:`_small_inverse`."""
    if len(cos) != 3:
        return _small_inverse([[*row, -b] for row, b in zip(cos, border)] + [[*border, 0.0]])
    a, b, e = cos[0][1], cos[0][2], cos[1][2]
    minor = 1.0 - a * a
    determinant = minor - b * b - e * e + 2.0 * a * b * e
    if not (minor > 0 and determinant > 0):
        return None
    adjugate = [
        [1.0 - e * e, b * e - a, a * e - b],
        [b * e - a, 1.0 - b * b, a * b - e],
        [a * e - b, a * b - e, minor],
    ]
    inverse_cos = [[x / determinant for x in row] for row in adjugate]
    u = [sum([x * y for x, y in zip(row, border)]) for row in inverse_cos]
    schur = sum([x * y for x, y in zip(u, border)])
    if not schur > 0:
        return None
    v = [x / schur for x in u]
    rows = [[c - ui * vj for c, vj in zip(row, v)] + [vi] for row, ui, vi in zip(inverse_cos, u, v)]
    return rows + [[-x for x in v] + [1.0 / schur]]


def _small_inverse(matrix: list[list[float]]) -> list[list[float]] | None:
    """The inverse of a small square matrix by Gauss-Jordan elimination with partial pivoting
    on ``[matrix | I]``; ``None`` if a pivot is zero."""
    n = len(matrix)
    rows = [row + [float(i == j) for j in range(n)] for i, row in enumerate(matrix)]
    for k in range(n):
        pivot, largest = k, abs(rows[k][k])
        for r in range(k + 1, n):
            if abs(rows[r][k]) > largest:
                pivot, largest = r, abs(rows[r][k])
        if largest == 0.0:
            return None
        rows[k], rows[pivot] = rows[pivot], rows[k]
        scale = 1.0 / rows[k][k]
        row = rows[k] = [x * scale for x in rows[k]]
        for r in range(n):
            factor = rows[r][k]
            if r != k and factor != 0.0:
                rows[r] = [x - factor * y for x, y in zip(rows[r], row)]
    return [row[n:] for row in rows]


def guessed_weights(K: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """CAGrad's weights (before rescaling) for Gramians ``K [S, T, T]``, all segments at once,
    where the guesses of :meth:`_Dual.active_set` end the solve (or ``φ = 0``: the mean):
    every task, then the tasks the last guess's affine minimum weights positively, up to
    :data:`_GUESSES` supports, each kept only if it passes the KKT test, on each segment's
    non-zero rows. Weights ``[S, T]`` and which segments it settled; the rest (no non-zero
    row, a worst progress that may be ``≤ 0``, where the projection may be the answer,
    guesses that fail) are left to :func:`conflict_averse_weights`, which solves them from the
    start (their rows here are not meaningful)."""
    duals = _Duals(K, c)
    omega, optimal, positive_worst, affine = duals.candidates(duals.active)  # 0 where φ = 0
    moving = duals.phi > 0
    settled = duals.usable & (optimal & positive_worst | ~moving)
    guessing = duals.usable & moving & ~optimal
    if _GUESSES > 1 and guessing.any():
        _guess_again(duals, omega, settled, guessing, affine > 0)
    return duals.weights(omega), settled


def _guess_again(
    duals: _Duals, omega: np.ndarray, settled: np.ndarray, guessing: np.ndarray, kept: np.ndarray
) -> None:
    """The guesses after every task's, on the segments ``guessing`` (``kept``: the tasks the
    last guess weights positively); settled segments' ``ω`` and flags written in place."""
    support = np.ones_like(kept) if duals.active is None else duals.active
    for _ in range(_GUESSES - 1):
        count = kept.sum(1)
        guessing &= (count > 0) & (count < support.sum(1))
        if not guessing.any():
            return
        support = np.where(guessing[:, None], kept & support, support)
        candidate, optimal, positive_worst, affine = duals.candidates(support)
        done = guessing & optimal
        settled |= done & positive_worst
        omega[done] = candidate[done]
        guessing &= ~optimal
        kept = affine > 0


class _Duals:
    """:class:`_Dual` for ``S`` problems of ``T`` tasks at once, supports as masks ``[S, T]``
    (``None``: every task): the same arithmetic, with each support's system bordered by the
    identity off it (its weights come out exactly 0 there), and tests that pass only where
    :class:`_Dual`'s do, so a settled segment has :class:`_Dual`'s answer. A zero row is left
    out of every support and test (``active``: the non-zero rows, ``None`` if all are), as
    :func:`nonzero_row_weights` leaves it out of :class:`_Dual`; a segment without a non-zero
    row is not ``usable`` and computed on the identity in its place."""

    def __init__(self, K: np.ndarray, c: float) -> None:
        S, T, _ = K.shape
        diagonal = K.diagonal(0, 1, 2)
        active = diagonal > 0
        self.active: np.ndarray | None = None
        self.usable: np.ndarray | bool = True
        if not active.all():
            usable = np.asarray(active.any(1))
            self.usable = usable
            K = np.where(usable[:, None, None], K, np.eye(T))
            diagonal = K.diagonal(0, 1, 2)
            self.active = diagonal > 0
        self.norms = np.sqrt(diagonal / diagonal.max(1, keepdims=True))
        self.pair_norms = self.norms[:, :, None] + self.norms[:, None, :]
        root = np.sqrt(diagonal)
        if self.active is None:
            self.inverse_norms = 1.0 / self.norms
        else:  # a zero row of K over 1 stays 0; its inverse norm is never used
            root = np.where(self.active, root, 1.0)
            self.inverse_norms = 1.0 / np.where(self.active, self.norms, 1.0)
        # np.clip's value, without its Python wrapper
        self.cos = np.minimum(np.maximum(K / root[:, :, None] / root[:, None, :], -1.0), 1.0)
        self.cos.reshape(S, T * T)[:, :: T + 1] = 1.0  # the diagonal, as a strided view
        g0 = self.norms / T
        self.unit_progress = (self.cos @ g0[:, :, None])[:, :, 0]
        self.phi = c * c * np.maximum((g0 * self.unit_progress).sum(1), 0.0)
        self.size = g0.sum(1) + np.sqrt(self.phi)

    def pieces(self, support: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """:meth:`_Dual.pieces` on supports ``[S, T]``: ``ω_u, ω_v [S, T]``, ``A, C [S]`` and
        which supports are regular: condition number at most :data:`_BATCHED_CONDITION`. The
        system's 1-norm is at most ``T + 1`` (cosines and borders at most 1), so
        ``(T + 1) ‖inverse‖₁`` bounds the condition number that :meth:`_Dual.pieces` tests:
        regular here implies regular there."""
        S, T = self.norms.shape
        system = np.zeros((S, T + 1, T + 1))
        rhs = np.zeros((S, T + 1, 2))
        if support is None:
            border = self.inverse_norms
            system[:, :T, :T] = self.cos
            rhs[:, :T, 1] = -self.unit_progress
        else:
            border = np.where(support, self.inverse_norms, 0.0)
            pairs = support[:, :, None] & support[:, None, :]
            system[:, :T, :T] = self.cos * pairs + np.eye(T) * ~support[:, :, None]
            rhs[:, :T, 1] = -self.unit_progress * support
        border = border / border.max(1, keepdims=True)
        system[:, :T, T] = -border
        system[:, T, :T] = border
        rhs[:, T, 0] = 1.0
        inverse = batched_inverse(system)  # NaN for a singular one: never regular
        regular = (T + 1) * np.abs(inverse).sum(1).max(1) <= _BATCHED_CONDITION
        solution = (inverse @ rhs)[:, :T]  # [S, T, 2]: ω_u, ω_v
        # Σ border ω exactly 1 and 0, re-solved for the shortest gradient (as _Dual.pieces)
        base = (np.arange(S), border.argmax(1))
        solution[base] = 0.0
        solution[base] = _SUMS - (border[:, :, None] * solution).sum(1)
        A, C = np.maximum(np.einsum("nia,nij,nja->an", solution, self.cos, solution), 0.0)
        return solution[:, :, 0], solution[:, :, 1], A, C, regular

    def candidates(self, support: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """:meth:`_Dual.candidates` on supports ``[S, T]``: ``ω [S, T]``, whether it is optimal
        (KKT), whether its worst progress is positive beyond rounding (else the projection may
        be the answer), and the affine minimum before the sign test (NaN off the ball). The
        KKT test compares ``excess ≤ slack``, where :class:`_Dual` rounds ``excess / slack``."""
        wu, wv, A, C, regular = self.pieces(support)
        on_ball = regular & (A > (_FLAT * np.abs(wu).sum(1)) ** 2) & (C < self.phi)
        lam = np.sqrt(np.where(on_ball, self.phi - C, 0.0) / np.where(on_ball, A, 1.0))
        omega = lam[:, None] * wu + wv
        affine = np.where(on_ball[:, None], omega, np.nan)
        on_ball &= (omega >= -_TOLERANCE * np.abs(omega).sum(1, keepdims=True)).all(1)
        omega = np.where(on_ball[:, None], np.maximum(omega, 0.0), 0.0)  # |ω| = ω from here
        progress = self.norms * (self.unit_progress + (omega[:, None, :] @ self.cos)[:, 0])
        rounding = _TOLERANCE * (self.size + omega.sum(1))
        met = progress[:, :, None] - progress[:, None, :] <= self.pair_norms * rounding[:, None, None]
        positive = progress > self.norms * rounding[:, None]
        if support is not None:  # only the support's tasks are compared and count
            met |= ~support[:, :, None]
            positive &= support
        if self.active is not None:  # against the non-zero rows only
            met |= ~self.active[:, None, :]
        return omega, on_ball & met.all((1, 2)), positive.any(1), affine

    def weights(self, omega: np.ndarray) -> np.ndarray:
        """The task weights ``1/T + ω / ‖g_t‖`` for contributions ``ω [S, T]``; 0 on zero rows."""
        T = self.norms.shape[1]
        if self.active is None:
            return 1.0 / T + omega / self.norms
        return np.where(self.active, 1.0 / T + omega / np.where(self.active, self.norms, 1.0), 0.0)


def conflict_averse_weights(K: np.ndarray, T: int, c: float) -> np.ndarray:
    """CAGrad's task weights ``1/T + ν`` (before rescaling) for the Gramian ``K`` of the non-zero
    rows of a problem with ``T`` rows in all (the others are zero), so that
    ``d = g0 + Σ_t ν_t g_t``."""
    dual = _Dual(K, T, c)
    if not dual.phi > 0:
        return dual.b
    projection = dual.project()
    fits = float(projection @ dual.cos @ projection) <= dual.phi * (1 + _TOLERANCE)
    omega, verified = dual.active_set(projection, fits)
    if not verified and len(K) <= _MAX_ENUMERATED_TASKS:
        omega = dual.enumerate(projection, fits)
    return dual.b + omega / dual.norms


class _Dual:
    """The problem in cosine coordinates: unit gradients ``ĝ_t`` (Gramian ``cos``), norms scaled
    to a largest of 1, and directions written ``d − g0 = Σ_t ω_t ĝ_t`` (``ω_t = ν_t ‖g_t‖``)."""

    def __init__(self, K: np.ndarray, T: int, c: float) -> None:
        m = len(K)
        self.m = m
        self.b = np.full(m, 1.0 / T)
        diagonal = K.diagonal()
        self.norms = np.sqrt(diagonal / diagonal.max())
        root = np.sqrt(diagonal)
        self.cos = (K / root[:, None] / root[None, :]).clip(-1.0, 1.0)
        self.cos.flat[:: m + 1] = 1.0  # the diagonal
        g0 = self.b * self.norms  # g0 = Σ_t g0_t ĝ_t
        self.unit_progress = self.cos @ g0  # ĝ_t · g0
        beta = max(float(g0 @ self.unit_progress), 0.0)  # ‖g0‖²
        self.phi = c * c * beta
        self.radius = math.sqrt(self.phi)
        # Bounds ‖d‖, and sets the scale of the rounding error in g_t · d (cancellation in g0).
        self.size = float(g0.sum()) + self.radius

    # -- closed forms on supports -------------------------------------------------------------

    def pieces(self, supports: np.ndarray, limit: float = _ILL_CONDITIONED) -> tuple[np.ndarray, ...]:
        """For supports ``[N, k]``: ``ω_u, ω_v [N, k]`` and ``A, C [N]`` of the closed form (``u``
        scaled so that its largest affine coefficient is 1), and which supports are regular."""
        N, k = supports.shape
        cos = self.cos[supports[:, :, None], supports[:, None, :]]
        border = 1.0 / self.norms[supports]
        border /= border.max(1, keepdims=True)  # Σ border ω = 1: the affine constraint
        system = np.zeros((N, k + 1, k + 1))
        system[:, :k, :k] = cos
        system[:, :k, k] = -border
        system[:, k, :k] = border
        rhs = np.zeros((N, k + 1, 2))
        rhs[:, k, 0] = 1.0
        rhs[:, :k, 1] = -self.unit_progress[supports]
        regular = np.ones(N, dtype=bool)
        try:
            inverse = np.linalg.inv(system)
        except np.linalg.LinAlgError:
            inverse = np.zeros(system.shape)
            for i in range(N):
                try:
                    inverse[i] = np.linalg.inv(system[i])
                except np.linalg.LinAlgError:
                    regular[i] = False
        # 1-norm condition numbers: an affinely dependent support (up to rounding) is left out;
        # a smaller one spans the same hull.
        condition = np.abs(system).sum(1).max(1) * np.abs(inverse).sum(1).max(1)
        regular &= condition <= limit
        solution = inverse @ rhs
        wu, wv = solution[:, :k, 0], solution[:, :k, 1]
        # Re-solve the constraint for the shortest gradient (border 1), so that the weights
        # w = border ω of the longer ones, down to rounding of ω, sum to 1 and 0 exactly.
        base = border.argmax(1)[:, None]
        rows = np.arange(N)[:, None]
        for x, total in ((wu, 1.0), (wv, 0.0)):
            x[rows, base] = 0.0
            x[rows, base] = total - (border * x).sum(1, keepdims=True)
        A = np.maximum(np.einsum("ni,nij,nj->n", wu, cos, wu), 0.0)
        C = np.maximum(np.einsum("ni,nij,nj->n", wv, cos, wv), 0.0)
        return wu, wv, A, C, regular

    def progress(self, supports: np.ndarray, omega: np.ndarray) -> np.ndarray:
        """``g_t · d`` for every task ``[N, m]``, for ``d − g0 = Σ_{s ∈ support} ω_s ĝ_s``."""
        dense = np.zeros((len(supports), self.m))
        dense[np.arange(len(supports))[:, None], supports] = omega
        return self.norms * (self.unit_progress + dense @ self.cos)

    def candidates(self, supports: np.ndarray) -> tuple[np.ndarray, ...]:
        """Closed-form candidates on supports ``[N, k]``: contributions ``ω [N, k]`` of
        ``d − g0``; whether each lies on the ball with non-negative weights, and whether it
        also meets the dual's KKT conditions (optimal); every task's progress ``[N, m]``; and
        the affine minimum's ``ω`` before the sign test (NaN where the support has none on the
        ball)."""
        wu, wv, A, C, regular = self.pieces(supports)
        # A hull through the origin (A = 0 up to rounding) leaves λ undetermined: on such a
        # support the minimum is at g_w = 0, the projection's case.
        flat = A <= (_FLAT * np.abs(wu).sum(1)) ** 2
        on_ball = regular & ~flat & (C < self.phi)
        lam = np.sqrt(np.where(on_ball, self.phi - C, 0.0) / np.where(on_ball, A, 1.0))
        omega = lam[:, None] * wu + wv
        affine = np.where(on_ball[:, None], omega, np.nan)
        on_ball &= (omega >= -_TOLERANCE * np.abs(omega).sum(1, keepdims=True)).all(1)
        omega = np.where(on_ball[:, None], np.maximum(omega, 0.0), 0.0)
        progress = self.progress(supports, omega)
        optimal = on_ball & (self.violation(progress, supports, omega) <= 0).all(1)
        return omega, on_ball, optimal, progress, affine

    # -- the solvers --------------------------------------------------------------------------

    def enumerate(self, projection: np.ndarray, fits: bool) -> np.ndarray:
        """Contributions ``ω [m]`` of the optimal candidate over all supports (the one whose
        worst task progresses most, if rounding leaves several), else of the projection."""
        best: tuple[bool, float] = (False, -math.inf)
        best_omega = best_progress = best_support = None
        for k in range(1, self.m + 1):
            supports = _combinations(self.m, k)
            omega, on_ball, optimal, progress, _ = self.candidates(supports)
            worst = progress.min(1)
            for mask, kkt in ((optimal, True), (on_ball, False)):
                if mask.any():
                    i = int(np.where(mask, worst, -np.inf).argmax())
                    if (kkt, float(worst[i])) > best:
                        best, best_progress, best_support = (kkt, float(worst[i])), progress[i], supports[i]
                        best_omega = self.dense(supports, omega, i)
        if fits and not best[0]:
            return projection
        if (
            fits
            and best_progress is not None  # set together with best_support and best_omega
            and best_support is not None
            and best_omega is not None
            and self.not_positive(best_progress, best_support, best_omega)
        ):
            return projection
        if best_omega is None:  # rounding left no candidate: the mean, d = g0
            return np.zeros(self.m)
        return best_omega

    def not_positive(self, progress: np.ndarray, support: np.ndarray, omega: np.ndarray) -> bool:
        """With the projection in the ball the optimum is ``≥ 0``. The support's tasks share
        its value; ``≤ 0`` up to each one's rounding (the shortest gradient decides) means the
        optimum is at ``g_w* = 0``, where the projection is the documented choice."""
        slack = self.norms[support] * self._rounding(omega[None, :])[0]
        return bool((progress[support] <= slack).all())

    def active_set(self, projection: np.ndarray, fits: bool) -> tuple[np.ndarray, bool]:
        """Contributions ``ω [m]`` from Wolfe's active-set method applied to the dual, and whether
        they were verified optimal (KKT, or zero in the hull with the projection in the ball).
        Each step minimizes ``F`` over the affine hull of the support (the closed form), walks
        from the current weights towards that minimum (or, where ``F`` is unbounded below on
        the hull, along ``v``) until a weight reaches zero and drops it, or, at a minimum with
        non-negative weights, adds the task that most violates the KKT conditions. ``F``
        decreases at every step, so no support repeats. It starts at the projection of ``g0``
        when that lies outside the ball (``F < 0`` there, so the walk never meets the
        non-smooth ``g_w = 0``), else at the best vertex (:class:`_ActiveSet`, a method per
        case).

        Before walking it guesses: every task (the optimal support for gradients in general
        position), then the tasks the last guess's affine minimum weights positively, up to
        :data:`_GUESSES` supports. A guess is taken only if its candidate passes the KKT test,
        which makes it the optimum; most problems end here in one or two solves, where the
        walk from a vertex adds one task per step."""
        support = np.arange(self.m)
        for _ in range(_GUESSES):
            omega, _, optimal, progress, affine = self.candidates(support[None, :])
            if optimal[0]:
                if fits and self.not_positive(progress[0], support, omega[0]):
                    return projection, True
                return self.dense(support[None, :], omega, 0), True
            kept = support[affine[0] > 0]
            if len(kept) in (0, len(support)):
                break
            support = kept
        return _ActiveSet(self, projection, fits).run()

    def project(self) -> np.ndarray:
        """Contributions ``ω ≥ 0`` minimizing ``‖g0 + Σ_t ω_t ĝ_t‖`` (UPGrad's cone projection
        on the cosine Gramian): ``d`` is then the projection of ``g0`` onto
        ``{d : g_t · d ≥ 0 for all t}``."""
        slack = np.full(self.m, _TOLERANCE * self.size)
        return cone_multipliers(self.cos[None], (self.b * self.norms)[None], lambda _: slack[None])[0]

    def violation(self, progress: np.ndarray, supports: np.ndarray, omega: np.ndarray) -> np.ndarray:
        """``[N, m]``: by how much each task progresses less than a support task, in units of
        their rounding; all ``≤ 0`` is the dual's KKT conditions. Pairwise, each pair to its
        own rounding: with norms far apart, the rounding of a long gradient's progress can
        exceed the whole progress of a short one."""
        excess = progress[np.arange(len(supports))[:, None], supports][:, :, None] - progress[:, None, :]
        slack = (self.norms[supports][:, :, None] + self.norms) * self._rounding(omega)[:, None, None]
        return (excess / slack).max(1) - 1.0

    def _rounding(self, omega: np.ndarray) -> np.ndarray:
        """``[N]``: the tolerance of ``g_t · d / ‖g_t‖`` for contributions ``ω [N, k]`` (the sizes
        summed to get it, times a margin over float64 rounding)."""
        return _TOLERANCE * (self.size + np.abs(omega).sum(1))

    def dense(self, supports: np.ndarray, omega: np.ndarray, i: int) -> np.ndarray:
        out = np.zeros(self.m)
        out[supports[i]] = omega[i]
        return out


class _ActiveSet:
    """Wolfe's active-set walk on the dual (:meth:`_Dual.active_set`), one method per case of a
    step: a support whose system is singular up to rounding, a hull on which ``F`` is unbounded
    below (along ``v``), a hull whose minimum is at ``g_w = 0``, and the closed-form minimum on
    the ball. State: the support, its task weights ``w`` (summing to 1), the supports seen (a
    repeat is rounding's doing), and the best candidate met, the answer when rounding stops
    the walk short of a KKT point."""

    def __init__(self, dual: _Dual, projection: np.ndarray, fits: bool) -> None:
        self.dual, self.projection, self.fits = dual, projection, fits
        if fits:  # the best vertex, the least F(e_t)
            self.support = [int(np.argmin(dual.norms * (dual.unit_progress + dual.radius)))]
            self.w = np.ones(1)
        else:  # the projection of g0, outside the ball
            self.support = [int(t) for t in np.flatnonzero(projection > 0)]
            w = projection[self.support] / dual.norms[self.support]
            self.w = w / w.sum()
        self.best_omega = np.zeros(dual.m)
        self.best = float((dual.norms * dual.unit_progress).min())  # d = g0
        self.seen: set[tuple[int, ...]] = set()

    def run(self) -> tuple[np.ndarray, bool]:
        """Contributions ``ω [m]`` and whether they were verified optimal."""
        for _ in range(_MAX_ACTIVE_SET_STEPS):
            answer = self._step()
            if answer is not None:
                return answer
        return self._unverified()

    def _unverified(self) -> tuple[np.ndarray, bool]:
        """Without a KKT point (rounding): the projection if it fits, else the best candidate."""
        return (self.projection if self.fits else self.best_omega), False

    def _step(self) -> tuple[np.ndarray, bool] | None:
        """One step from the current support; the answer once the walk ends, else ``None``."""
        S = np.array(self.support)[None, :]
        wus, wvs, As, Cs, regular = self.dual.pieces(S, _SINGULAR)
        if not regular[0]:
            self._drop_dependent()
            return None
        wu, wv, A, C = wus[0], wvs[0], float(As[0]), float(Cs[0])
        if not C < self.dual.phi:  # F is unbounded below on the hull, along v
            return self._follow_v(wv)
        n = self.dual.norms[self.support]
        if A <= (_FLAT * float(np.abs(wu).sum())) ** 2:  # the hull's minimum is at g_w = 0 (F = 0)
            return self._at_zero(wu, n)
        return self._at_minimum(S, math.sqrt((self.dual.phi - C) / A) * wu + wv, n)

    def _drop_dependent(self) -> None:
        """An affinely dependent support (up to rounding): drop the lightest task, or, if that is
        the task that just entered (weight 0: dropping it would only return to the support it
        left), the support task pointing most like it."""
        support, w = self.support, self.w
        drop = int(np.argmin(w * self.dual.norms[support]))
        if drop == len(support) - 1 and w[drop] == 0:
            drop = int(np.argmax(self.dual.cos[support[-1], support[:-1]]))
        keep = np.arange(len(support)) != drop
        self.support, self.w = [t for t, k in zip(support, keep) if k], w[keep] / w[keep].sum()

    def _follow_v(self, wv: np.ndarray) -> tuple[np.ndarray, bool] | None:
        """``F`` unbounded below on the hull: walk along ``v`` until a weight reaches zero."""
        z = wv / self.dual.norms[self.support]
        falling = z < 0
        if not falling.any():  # rounding (norms ~1e25 apart)
            return self._unverified()
        steps = np.where(falling, self.w / np.where(falling, -z, 1.0), np.inf)
        i = int(steps.argmin())
        w = np.maximum(self.w + steps[i] * z, 0.0)
        w[i] = 0.0
        return self._drop_zeros(w)

    def _at_zero(self, wu: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, bool] | None:
        """The hull's minimum at ``g_w = 0``: the answer if zero is in the hull, else walk
        towards it."""
        if (wu >= -_TOLERANCE * float(np.abs(wu).sum())).all():
            # Zero is in the hull: the optimum is 0, at the projection if it fits (it does, up
            # to rounding: the walk only gets here when F ≥ 0).
            return (self.projection, True) if self.fits else (self.best_omega, False)
        return self._walk_towards(wu * n.min() / n)

    def _at_minimum(self, S: np.ndarray, omega: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, bool] | None:
        """The closed-form minimum ``ω`` on the ball: walk towards it while a weight is negative;
        at non-negative weights, the answer if the KKT conditions hold, else add the task that
        most violates them."""
        if not (omega >= -_TOLERANCE * float(np.abs(omega).sum())).all():
            target = omega / n
            return self._walk_towards(target / target.sum())
        omega = np.maximum(omega, 0.0)
        progress = self.dual.progress(S, omega[None, :])
        worst = float(progress.min())
        if worst > self.best:
            self.best, self.best_omega = worst, self.dual.dense(S, omega[None, :], 0)
        violation = self.dual.violation(progress, S, omega[None, :])[0]
        if float(violation.max()) <= 0:
            if self.fits and self.dual.not_positive(progress[0], S[0], omega):
                return self.projection, True
            return self.dual.dense(S, omega[None, :], 0), True
        self.support.append(int(violation.argmax()))
        key = tuple(sorted(self.support))
        if key in self.seen:  # F decreases in exact arithmetic: rounding makes it cycle
            return self._unverified()
        self.seen.add(key)
        w = np.concatenate((omega / n, [0.0]))
        self.w = w / w.sum()
        return None

    def _walk_towards(self, target: np.ndarray) -> tuple[np.ndarray, bool] | None:
        """Walk from ``w`` towards the affine minimum ``target`` until the first weight reaches
        zero, and drop it."""
        leaving = target <= 0
        gap = self.w - target
        steps = np.where(leaving, self.w / np.where(leaving, np.maximum(gap, 1e-300), 1.0), np.inf)
        i = int(steps.argmin())
        w = np.maximum(self.w + min(float(steps[i]), 1.0) * (target - self.w), 0.0)
        w[i] = 0.0
        return self._drop_zeros(w)

    def _drop_zeros(self, w: np.ndarray) -> tuple[np.ndarray, bool] | None:
        """Keep the tasks whose weight is positive (weights summing to 1); stop if none is left
        (rounding zeroed every weight at once)."""
        keep = w > 0
        w = w[keep]
        self.support, self.w = [t for t, k in zip(self.support, keep) if k], w / max(float(w.sum()), 1e-300)
        return None if self.support else self._unverified()


@functools.cache
def _combinations(m: int, k: int) -> np.ndarray:
    """All ``k``-subsets of ``range(m)`` as rows ``[C(m, k), k]`` (read-only, cached)."""
    out = np.array(list(itertools.combinations(range(m), k)), dtype=int).reshape(-1, k)
    out.flags.writeable = False
    return out
