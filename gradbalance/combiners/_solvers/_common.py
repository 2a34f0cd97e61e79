"""What the ``T×T`` solvers share: running a solver over each segment's non-zero rows (one
segment at a time, or every segment with the same rows at once), the batched closed forms'
dispatch, and small linear solves: one that survives singular systems, one over a stack, and
a batched inverse that survives singular members."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

# The LAPACK gufunc behind np.linalg.solve, called without its wrapper (~3 of its ~4 µs on a
# 3×3 system); None on a numpy that moved it, where stacked_solve takes the wrapper.
_LAPACK_SOLVE = getattr(getattr(np.linalg, "_umath_linalg", None), "solve1", None)

Solve = Callable[[np.ndarray], np.ndarray]


def nonzero_row_weights(gramian: Tensor, solve: Solve) -> Tensor:
    """``[S, T]`` weights from ``solve`` applied to each segment's Gramian restricted to its
    non-zero rows (positive diagonal); zero rows, and segments without any, get weight 0.

    A zero row is a task that sat out the step or a segment it does not touch: the combiners
    that solve a problem over the tasks leave it out rather than let it constrain the others.
    ``solve`` maps a float64 numpy ``[m, m]`` to ``[m]`` (numpy: torch's per-op dispatch would
    cost more than the arithmetic on such arrays).
    """
    K = gramian.numpy()
    S, T, _ = K.shape
    weights = np.zeros((S, T))
    positive = K.diagonal(0, 1, 2) > 0
    for s in range(S):
        if positive[s].all():
            weights[s] = solve(K[s])
        elif positive[s].any():
            active = np.flatnonzero(positive[s])
            weights[s, active] = solve(K[s][np.ix_(active, active)])
    return torch.from_numpy(weights)


def with_two_task_form(
    gramian: Tensor,
    closed_form: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    solve: Solve,
    over: Callable[[Tensor, Solve], Tensor] = nonzero_row_weights,
) -> Tensor:
    """``[S, T]`` weights: for ``T = 2``, :func:`with_closed_form`; otherwise ``over``
    (:func:`nonzero_row_weights`, or :func:`batched_nonzero_row_weights` for a batched
    ``solve``) with ``solve``."""
    if gramian.shape[1] != 2:
        return over(gramian, solve)
    return with_closed_form(gramian, closed_form, solve, over)


def with_closed_form(
    gramian: Tensor,
    closed_form: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    solve: Solve,
    over: Callable[[Tensor, Solve], Tensor] = nonzero_row_weights,
) -> Tensor:
    """``[S, T]`` weights: ``closed_form`` of the ``[S, T, T]`` Gramians (weights and which
    segments it settled, all at once) and ``over`` with ``solve`` for the rest (zero rows, and
    cases too close to a branch of the general solver to call)."""
    K = gramian.numpy()
    weights, settled = closed_form(K)
    if not settled.all():
        rest = ~settled
        weights[rest] = over(torch.from_numpy(K[rest]), solve).numpy()
    return torch.from_numpy(weights)


def solve_small(system: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``system⁻¹ rhs`` for the small systems the combiners solve between the two passes, by
    least squares where rounding makes ``system`` singular (dependent active rows, parallel
    tasks, weights 1e300 apart)."""
    try:
        return np.linalg.solve(system, rhs)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(system, rhs, rcond=None)[0]


def batched_nonzero_row_weights(gramian: Tensor, solve: Solve) -> Tensor:
    """:func:`nonzero_row_weights` for a batched ``solve``, which maps ``[S', m, m]`` Gramians
    with positive diagonals to ``[S', m]`` weights: one call for the segments whose non-zero rows
    are the same (all of them in the common case), on their Gramians restricted to those rows."""
    K = gramian.numpy()
    if K.diagonal(0, 1, 2).min(initial=np.inf) > 0:  # every row non-zero (or no segment)
        return torch.from_numpy(solve(K))
    positive = K.diagonal(0, 1, 2) > 0
    weights = np.zeros(positive.shape)
    groups: dict[bytes, list[int]] = {}  # segments by their non-zero rows (np.unique: ~30 µs)
    for segment, rows in enumerate(positive):
        groups.setdefault(rows.tobytes(), []).append(segment)
    for members in groups.values():
        active = np.flatnonzero(positive[members[0]])
        if len(active):
            segments = np.array(members)
            weights[segments[:, None], active] = solve(K[segments[:, None, None], active[:, None], active])
    return torch.from_numpy(weights)


def stacked_solve(system: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``system⁻¹ rhs`` for each of a stack of small systems (``[S, m, m]`` and ``[S, m]``), by
    LAPACK's LU; a singular system gets NaN (and numpy's invalid-value warning, unless the
    caller silences it) instead of failing the stack."""
    if _LAPACK_SOLVE is not None:
        return _LAPACK_SOLVE(system, rhs)
    try:
        return np.linalg.solve(system, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return _each_or_nan(np.linalg.solve, np.full(rhs.shape, np.nan), system, rhs)


def batched_inverse(systems: np.ndarray) -> np.ndarray:
    """The inverses of ``systems [N, ..., m, m]``, in one batch unless some problem ``n`` has a
    singular one (exactly dependent rows: a one-column segment, say); then problem by problem,
    NaN for such a problem, so that one degenerate segment does not cost the others the batch.
    A NaN inverse fails every test it enters."""
    try:
        return np.linalg.inv(systems)
    except np.linalg.LinAlgError:
        return _each_or_nan(np.linalg.inv, np.full(systems.shape, np.nan), systems)


def _each_or_nan(function: Callable[..., np.ndarray], out: np.ndarray, *stacks: np.ndarray) -> np.ndarray:
    """``out[n] = function(*problem n)`` for the problems along the first axis of ``stacks``,
    leaving ``out[n]`` (NaN) where ``function`` finds the problem singular: the fallback when a
    batched numpy linear-algebra call fails for one member."""
    for n, problem in enumerate(zip(*stacks)):
        with contextlib.suppress(np.linalg.LinAlgError):
            out[n] = function(*problem)
    return out
