"""Evaluation metrics of the three tasks and the combined CS224N score.

* SST-5 and Quora: :func:`accuracy`.
* STS-B: :func:`pearson` correlation between predicted and gold similarity.
* :func:`overall_score` ``= (sst_acc + para_acc + (sts_pearson + 1) / 2) / 3`` — the Pearson
  correlation is mapped from [-1, 1] to [0, 1] so that all three terms share a scale.

All functions take array-likes (lists, numpy arrays, CPU tensors) of equal length and compute in
float64.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["accuracy", "confusion_matrix", "overall_score", "pearson"]


def _pair(pred: ArrayLike, gold: ArrayLike) -> tuple[NDArray[np.generic], NDArray[np.generic]]:
    p, g = np.asarray(pred), np.asarray(gold)
    if p.ndim == 0 or g.ndim == 0:
        raise ValueError("pred and gold must be sequences, not scalars")
    # (N, 1) model outputs are common; any shape is read in row-major order.
    p, g = p.reshape(-1), g.reshape(-1)
    if p.shape != g.shape:
        raise ValueError(f"pred and gold differ in length: {p.shape[0]} vs {g.shape[0]}")
    if p.shape[0] == 0:
        raise ValueError("pred and gold are empty")
    return p, g


def accuracy(pred: ArrayLike, gold: ArrayLike) -> float:
    """Fraction of positions where ``pred == gold`` (exact equality).

    Raises ``ValueError`` for empty inputs or a length mismatch.

    >>> accuracy([0, 1, 2, 2], [0, 1, 1, 2])
    0.75
    """
    p, g = _pair(pred, gold)
    return float(np.mean(p == g))


def pearson(
    pred: ArrayLike,
    gold: ArrayLike,
    *,
    on_constant: Literal["nan", "raise"] = "nan",
) -> float:
    """Pearson correlation coefficient r between ``pred`` and ``gold``.

    r is undefined when either input is constant (zero variance) — which happens in practice
    when an untrained STS head predicts one value for the whole dev set. By default the result
    is then ``nan`` (so an evaluation run does not crash and the score is visibly missing);
    ``on_constant="raise"`` raises ``ValueError`` instead. Fewer than two points also count as
    constant. Non-finite inputs raise ``ValueError``. The result is clipped to [-1, 1].

    >>> round(pearson([1, 2, 3], [2, 4, 7]), 6)
    0.993399
    """
    if on_constant not in ("nan", "raise"):
        raise ValueError(f"on_constant must be 'nan' or 'raise', got {on_constant!r}")
    p, g = _pair(pred, gold)
    x = p.astype(np.float64)
    y = g.astype(np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("pearson: inputs contain NaN or infinity")
    # Constancy is tested on the values themselves: x - x.mean() of a constant float array
    # need not be exactly zero, which would turn "undefined" into a spurious 0 or ±1.
    x_const = bool(x.max() == x.min())
    if x_const or y.max() == y.min():
        if on_constant == "raise":
            which = "pred" if x_const else "gold"
            raise ValueError(f"pearson is undefined: {which} is constant (zero variance)")
        return math.nan
    # r is scale-invariant: normalising by the largest magnitude, then by the largest deviation,
    # keeps the mean and the sums of squares away from float64 under- and overflow.
    dx = x / np.abs(x).max()
    dy = y / np.abs(y).max()
    dx -= dx.mean()
    dy -= dy.mean()
    dx /= np.abs(dx).max()
    dy /= np.abs(dy).max()
    denom = math.sqrt(float(dx @ dx)) * math.sqrt(float(dy @ dy))
    r = float(dx @ dy) / denom
    return max(-1.0, min(1.0, r))


def overall_score(sst_acc: float, para_acc: float, sts_pearson: float) -> float:
    """CS224N combined score: ``(sst_acc + para_acc + (sts_pearson + 1) / 2) / 3``.

    A ``nan`` Pearson (constant predictions) propagates to ``nan``.

    >>> round(overall_score(0.521, 0.871, 0.891), 3)
    0.779
    """
    return (float(sst_acc) + float(para_acc) + (float(sts_pearson) + 1.0) / 2.0) / 3.0


def confusion_matrix(pred: ArrayLike, gold: ArrayLike, num_classes: int) -> NDArray[np.int64]:
    """``num_classes × num_classes`` count matrix; entry ``[g, p]`` counts gold ``g`` predicted ``p``.

    Rows are gold classes, columns predictions (the scikit-learn convention), so
    ``m.trace() / m.sum()`` is the accuracy. Labels must be integers in ``[0, num_classes)``.

    >>> confusion_matrix([0, 1, 1], [0, 0, 1], 2).tolist()
    [[1, 1], [0, 1]]
    """
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    n = int(num_classes)
    p, g = _pair(pred, gold)
    pi = _as_labels(p, n, "pred")
    gi = _as_labels(g, n, "gold")
    counts = np.bincount(gi * n + pi, minlength=n * n)
    return counts.reshape(n, n).astype(np.int64)


def _as_labels(values: NDArray[np.generic], n: int, what: str) -> NDArray[np.int64]:
    if values.dtype == np.bool_:
        values = values.astype(np.int64)
    if not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"{what} labels must be numeric")
    as_int = values.astype(np.int64)
    if not np.array_equal(as_int, values):
        raise ValueError(f"{what} labels must be integers")
    if as_int.min() < 0 or as_int.max() >= n:
        raise ValueError(f"{what} labels must lie in [0, {n}); got {as_int.min()}..{as_int.max()}")
    return as_int
