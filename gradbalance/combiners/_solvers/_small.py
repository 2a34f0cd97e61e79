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
