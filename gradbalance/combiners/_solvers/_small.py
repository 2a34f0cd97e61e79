"""One small problem in Python floats.

A ``T×T`` step on one segment of a few tasks is ~100 flops; in numpy each of its few dozen
calls costs ~1 µs, most of the step. Where a combiner has a Python-float form of its step, it
runs it for one segment of at most :data:`SMALL_TASKS` tasks on the Gramian as nested lists
(:func:`small_gramian`) and returns :func:`as_weights` of the result; every other shape, and
any case the Python form hands back (returns ``None``), takes the numpy path.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: The most tasks a Python-float step takes: beyond, its ``O(T³)`` loops cost more than numpy's
#: calls.
SMALL_TASKS = 4


def small_gramian(gramian: Tensor) -> list[list[float]] | None:
    """The one ``[T, T]`` Gramian of ``gramian [1, T, T]`` as nested lists of floats when
    ``T ≤ SMALL_TASKS``; ``None`` for more segments or tasks."""
    if gramian.shape[0] != 1 or gramian.shape[1] > SMALL_TASKS:
        return None
    rows: list[list[float]] = gramian.numpy()[0].tolist()
    return rows


def as_weights(weights: list[float]) -> Tensor:
    """``[1, T]`` float64 weights of one segment."""
    return torch.from_numpy(np.array([weights]))


def positive_definite_solve(
    H: list[list[float]], b: list[float], least_pivot: float = 0.0
) -> list[float] | None:
    """``H⁻¹ b`` for a symmetric positive definite ``H`` (overwritten) by Gaussian elimination,
    which needs no pivoting on such a matrix, then back substitution; ``None`` when a pivot is
    not above ``least_pivot`` (``H`` singular, or too ill-conditioned for the caller)."""
    T = len(b)
    x = b[:]
    for k in range(T):
        row, pivot = H[k], H[k][k]
        if not pivot > least_pivot:
            return None
        for i in range(k + 1, T):
            other = H[i]
            factor = other[k] / pivot
            for j in range(k + 1, T):
                other[j] -= factor * row[j]
            x[i] -= factor * x[k]
    for i in range(T - 1, -1, -1):
        row, value = H[i], x[i]
        for j in range(i + 1, T):
            value -= row[j] * x[j]
        x[i] = value / row[i]
    return x
