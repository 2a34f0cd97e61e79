"""UPGrad's projections onto the dual cone, solved exactly in Gramian space."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import attrs
import numpy as np
import torch
from torch import Tensor

from .._checks import reduction_field
from .._combiner import GramianCombinerWithReduction
from .._properties import Property
from ._solvers import (
    MOST_ENUMERATED_ROWS,
    as_weights,
    cone_multipliers,
    guessed_unit_projection_multipliers,
    small_gramian,
    small_unit_projection_multipliers,
    unit_projection_multipliers,
)

# A constraint g_j · y ≥ 0 counts as met down to -_TOLERANCE · ‖g_j‖ · Σ_k |u_k| ‖g_k‖ for
# y = Σ_k u_k g_k: the rounding error of computing it from the Gramian, at any row scale.
_TOLERANCE = 1e-12
# A row whose squared norm is at most this times its segment's largest is zero to the walk's
# scaling, or nearly: the segment takes the walk unless the row is exactly zero.
_NEGLIGIBLE = 1e-300


@attrs.define(eq=False)
class UPGrad(GramianCombinerWithReduction):
    """Unconflicting projection of gradients (Quinton & Rey, "Jacobian Descent for
    Multi-Objective Optimization", arXiv:2406.16232, 2024: ``A_UPGrad``).

    Each task gradient is projected onto the dual cone of all of them, the set of directions
    that conflict with no task, ``C = {y : g_j · y ≥ 0 for every j}``, and the projections are
    averaged: ``d = (1/T) Σ_i π_C(g_i)``. The update never conflicts with a task
    (``g_j · d ≥ 0``); a gradient that already agrees with every other one is kept as it is, so
    without conflict UPGrad is the mean. With two tasks it is PCGrad's mean.

    Gramian form: ``π_C(g_i) = Gᵀ(e_i + v)`` with ``v = argmin_{v ≥ 0} ½ vᵀKv + vᵀK e_i``, the
    projection's dual, a non-negative quadratic program on the Gramian ``K``. It is solved
    exactly by a primal active-set method (Lawson & Hanson's, "Solving Least Squares
    Problems", 1974, ch. 23, on the equivalent ``min_{v ≥ 0} ‖Gᵀ(e_i + v)‖``): a task whose
    constraint the current projection violates most joins the active set, each step solves the
    equality-constrained problem on it, and a task whose multiplier would turn negative leaves.
    That is ``T`` small ``T×T`` programs per segment, all of a step's programs solved side by
    side in numpy (:func:`cone_multipliers`), where the reference code calls a generic QP
    solver with a regularized Gramian. Before walking, the passive sets are tried: up to three
    tasks every one of every program at once, the same optimality test picking the answer;
    above, a few rounds of guesses (:func:`passive_set_weights`; the walk takes what they
    leave open). With two tasks each projection is onto the other row's half-space or none, in
    closed form (:func:`two_task_weights`, every segment at once).

    A zero gradient row has nothing to project, gets weight 0 and sets no constraint.

    Args:
        reduction: ``"mean"`` (the paper, ``1/T`` per projection) or ``"sum"`` (``T`` times it,
            the scale of ``sum``).
    """

    name: ClassVar[str] = "upgrad"
    properties: ClassVar[frozenset[Property]] = frozenset(
        {
            Property.PERMUTATION_EQUIVARIANT,
            Property.POSITIVELY_HOMOGENEOUS,
            Property.NON_CONFLICTING,
            Property.SUM_WITHOUT_CONFLICT,
        }
    )

    reduction: Literal["sum", "mean"] = reduction_field("mean")
    unreduced: ClassVar[Literal["sum", "mean"]] = "mean"  # (1/T) Σ_i π_C(g_i)

    def unreduced_weights(self, gramian: Tensor) -> Tensor:
        small = small_gramian(gramian)
        if small is not None and len(small) != 2:  # one segment of a few tasks: Python floats
            weights = small_projection_weights(small)
            if weights is not None:
                return as_weights(weights)
        K = gramian.numpy()
        T = K.shape[1]
        if T == 2:
            return torch.from_numpy(two_task_weights(K) / 2)
        return torch.from_numpy(passive_set_weights(K))


def two_task_weights(K: np.ndarray) -> np.ndarray:
    """``[S, 2]``: the summed projection weights of two rows per Gramian ``K [S, 2, 2]`` in closed
    form. Where the rows conflict (``g₁ · g₂`` below minus the solver's tolerance), each is
    projected onto the other's half-space, ``g₁ − (g₁·g₂/‖g₂‖²) g₂``, which by Cauchy-Schwarz
    meets its own constraint: weights ``1 − g₁·g₂/‖g₁‖²`` and ``1 − g₁·g₂/‖g₂‖²``; otherwise 1
    each. A zero row gets 0 and leaves the other at 1."""
    a, b, e = K[:, 0, 0], K[:, 0, 1], K[:, 1, 1]
    positive = np.stack([a > 0, e > 0], 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        largest = np.maximum(a, e)
        conflict = positive.all(1) & (b / largest < -_TOLERANCE * np.sqrt(a / largest) * np.sqrt(e / largest))
        weights = 1 - np.where(conflict[:, None], b[:, None] / np.stack([a, e], 1), 0.0)
    return np.where(positive, weights, 0.0)


def small_projection_weights(K: list[list[float]]) -> list[float] | None:
    """:func:`passive_set_weights` for one Gramian of up to three rows as nested lists, in
    Python floats (:func:`small_unit_projection_multipliers`); ``None`` (the numpy path
    decides) for a zero or negligible row, or where the passive sets leave a program open."""
    T = len(K)
    if T > MOST_ENUMERATED_ROWS:
        return None
    diagonal = [K[t][t] for t in range(T)]
    if not min(diagonal) > _NEGLIGIBLE * max(diagonal):
        return None
    root = [math.sqrt(d) for d in diagonal]
    inverse = [1.0 / r for r in root]
    cos = [[K[i][j] * inverse[i] * inverse[j] for j in range(T)] for i in range(T)]
    v = small_unit_projection_multipliers(cos, _TOLERANCE)
    if v is None:
        return None
    return [(1.0 + inverse[k] * sum(v[i][k] * root[i] for i in range(T))) / T for k in range(T)]


def passive_set_weights(K: np.ndarray) -> np.ndarray:
    """``[S, T]``: the mean ``(1/T) Σ_i (e_i + v)`` of :func:`projection_weights`' rows, each
    program's passive set tried rather than walked to, in cosine coordinates: every one at once
    up to ``MOST_ENUMERATED_ROWS`` tasks (:func:`unit_projection_multipliers`: ``2^T − 1`` sets
    per segment, each of at most two rows, in closed form), else a few rounds of guesses
    (:func:`guessed_unit_projection_multipliers`); segments that leaves
    open, or with a row negligible next to another, go to :func:`projection_weights`. In
    cosine coordinates program ``i`` projects ``ĝ_i`` with multipliers
    ``v''_k = v_k ‖g_k‖ / ‖g_i‖``, so ``Σ_i v_k = Σ_i v''_k ‖g_i‖ / ‖g_k‖``, and the slack of
    constraint ``j``, ``_TOLERANCE · (1 + Σ_k v''_k)``, is the walk's over ``‖g_j‖ ‖g_i‖``."""
    T = K.shape[1]
    diagonal = K.diagonal(0, 1, 2)
    root = np.sqrt(diagonal)
    # One test over all segments; the rows it flags are sorted out per segment.
    some_negligible = bool(diagonal.min(initial=np.inf) <= _NEGLIGIBLE * diagonal.max(initial=0.0))
    if some_negligible:  # a zero row: a row and column of the identity, its weight 0
        negligible = diagonal <= _NEGLIGIBLE * diagonal.max(1, keepdims=True)
        zero = root == 0
        inverse = np.where(zero, 0.0, 1.0 / np.where(zero, 1.0, root))
        cos = K * inverse[:, :, None] * inverse[:, None, :] + np.eye(T) * zero[:, :, None]
    else:
        inverse = 1.0 / root
        cos = K * inverse[:, :, None] * inverse[:, None, :]
    multipliers = (
        unit_projection_multipliers if T <= MOST_ENUMERATED_ROWS else guessed_unit_projection_multipliers
    )
    v, settled = multipliers(cos, _TOLERANCE)
    weights = (1.0 + inverse * (v @ root[:, :, None])[:, :, 0]) / T
    if some_negligible:
        weights *= ~zero
        settled &= ~(negligible & ~zero).any(1)
    if not settled.all():
        weights[~settled] = projection_weights(K[~settled]).sum(1) / T
    return weights


def projection_weights(K: np.ndarray) -> np.ndarray:
    """``[S, T, T]``: row ``i`` of segment ``s`` holds the weights ``e_i + v`` of ``g_i``'s
    projection onto the dual cone of the segment's rows, all ``S·T`` programs solved side by
    side. A zero row ``i`` gets a zero row (and, its constraint being ``0 ≥ 0``, never binds)."""
    S, T, _ = K.shape
    largest = K.diagonal(0, 1, 2).max(1)
    Kn = K / np.where(largest > 0, largest, 1.0)[:, None, None]
    norms = np.sqrt(np.maximum(Kn.diagonal(0, 1, 2), 0.0))  # [S, T]
    own = norms.reshape(S * T)  # ‖g_i‖ of program (s, i)
    constraint_norms = norms.repeat(T, axis=0)  # [S·T, T]
    scaled_norms = _TOLERANCE * constraint_norms
    eye = np.eye(T)
    v = cone_multipliers(
        Kn.repeat(T, axis=0),
        np.tile(eye, (S, 1)),
        lambda v: scaled_norms * (own + (constraint_norms * v).sum(1))[:, None],
    )
    return (eye + v.reshape(S, T, T)) * (norms > 0)[:, :, None]
