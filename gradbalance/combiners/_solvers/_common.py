"""What the ``T×T`` solvers share: running a solver over each segment's non-zero rows, the
batched closed forms' dispatch, a small linear solve that survives singular systems, and a
batched inverse that survives singular members."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor


def nonzero_row_weights(gramian: Tensor, solve: Callable[[np.ndarray], np.ndarray]) -> Tensor:
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
    solve: Callable[[np.ndarray], np.ndarray],
) -> Tensor:
    """``[S, T]`` weights: for ``T = 2``, :func:`with_closed_form`; otherwise ``solve`` on every
    segment's non-zero rows."""
    if gramian.shape[1] != 2:
        return nonzero_row_weights(gramian, solve)
    return with_closed_form(gramian, closed_form, solve)


def with_closed_form(
    gramian: Tensor,
    closed_form: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    solve: Callable[[np.ndarray], np.ndarray],
) -> Tensor:
    """``[S, T]`` weights: ``closed_form`` of the ``[S, T, T]`` Gramians (weights and which
    segments it settled, all at once) and :func:`nonzero_row_weights` with ``solve`` for the
    rest (zero rows, and cases too close to a branch of the general solver to call)."""
    K = gramian.numpy()
    weights, settled = closed_form(K)
    if not settled.all():
        rest = ~settled
        weights[rest] = nonzero_row_weights(torch.from_numpy(K[rest]), solve).numpy()
    return torch.from_numpy(weights)


def solve_small(system: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``system⁻¹ rhs`` for the small systems the combiners solve between the two passes, by
    least squares where rounding makes ``system`` singular (dependent active rows, parallel
    tasks, weights 1e300 apart)."""
    try:
        return np.linalg.solve(system, rhs)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(system, rhs, rcond=None)[0]


def batched_inverse(systems: np.ndarray) -> np.ndarray:
    """The inverses of ``systems [N, ..., m, m]``, in one batch unless some problem ``n`` has a
    singular one (exactly dependent rows: a one-column segment, say); then problem by problem,
    NaN for such a problem, so that one degenerate segment does not cost the others the batch.
    A NaN inverse fails every test it enters."""
    try:
        return np.linalg.inv(systems)
    except np.linalg.LinAlgError:
        out = np.full(systems.shape, np.nan)
        for n, problem in enumerate(systems):
            with contextlib.suppress(np.linalg.LinAlgError):
                out[n] = np.linalg.inv(problem)
        return out
