"""GradVac in Gramian space."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from torch import Tensor

from .._combiner import GramianCombiner
from .._properties import Property
from ._order import generator_state, load_generator_state, make_generator, order_array, visiting_orders
from ._solvers import as_weights, small_gramian

# ‖g_i'‖ counts as zero below this fraction of Σ_k |C_ik| ‖g_k‖, the norms it was built from:
# an exact cancellation leaves float64 rounding noise there, whose "cosine" is meaningless.
_ZERO_NORM = 1e-7

# A cosine within this of its target counts as met. Below float64 noise the test φ < φ̂ is a
# coin toss, and near φ̂ = ±1 the correction divides by √(1−φ̂²) ≈ 0 (only beta = 1 with
# parallel gradients gets there).
_COS_TOL = 1e-10

# 1 − φ̂² is clamped below by this before its square root divides: φ̂ = ±1 exactly can only
# arise with beta = 1 and exactly parallel gradients.
_MIN_SIN_SQ = 1e-12


@attrs.define(eq=False)
class GradVac(GramianCombiner):
    """Gradient Vaccine (Wang et al., "Gradient Vaccine: Investigating and Improving Multi-task
    Optimization in Massively Multilingual Models", ICLR 2021, Algorithm 1 / Eq. 3).

    Keeps EMA targets ``φ̂_ij`` (initially 0) for every ordered task pair, per segment. For each
    task ``i`` and each ``j ≠ i`` in random order, with ``φ_ij = cos(g_i', g_j)`` (``g_j``
    original): if ``φ_ij < φ̂_ij``,

        g_i' += ‖g_i'‖ (φ̂_ij √(1−φ_ij²) − φ_ij √(1−φ̂_ij²)) / (‖g_j‖ √(1−φ̂_ij²)) · g_j

    and on every visit (fired or not) ``φ̂_ij ← (1−β) φ̂_ij + β φ_ij`` with the pre-correction
    ``φ_ij``. The result is ``Σ_i g_i'``. With all targets at 0 a step equals PCGrad.

    Departures from public code: the EMA is updated on every visit (one public implementation
    updates only when the correction fires, which makes GradVac a soft PCGrad); ``beta``
    defaults to 0.01 as the minBERT reports used it (torchjd and LibMTL default to 0.5); a pair
    where either gradient is zero has no cosine and is skipped (no correction, no EMA update).
    "Zero" for ``g_i'`` means a norm below 1e-7 of ``Σ_k |c_ik| ‖g_k‖`` (the norms it is built
    from), so an exact cancellation's rounding noise never updates a target; a cosine within
    1e-10 of its target counts as met.

    Granularity: pass ``segments`` (per parameter tensor or per layer, e.g. from
    ``TaskGradients.segments``) for one target matrix per segment; ``None`` is the whole vector.
    The number of segments is fixed by the first call.

    Args:
        beta: EMA rate of the targets, in [0, 1].
        seed: seed of the generator of visiting orders (``None``: fresh entropy).
    """

    name: ClassVar[str] = "gradvac"
    properties: ClassVar[frozenset[Property]] = frozenset(
        {
            Property.POSITIVELY_HOMOGENEOUS,
        }
    )

    beta: float = attrs.field(default=0.01, converter=float)
    seed: int | None = None
    _generator: torch.Generator = attrs.field(init=False, repr=False)
    _targets: Tensor | None = attrs.field(init=False, default=None, repr=False)

    @beta.validator
    def _check_beta(self, _attribute: attrs.Attribute, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"GradVac beta must be in [0, 1], got {value}")

    def __attrs_post_init__(self) -> None:
        self._generator = make_generator(self.seed)

    @property
    def targets(self) -> Tensor | None:
        """The EMA targets ``φ̂`` as ``[S, T, T]`` (``None`` before the first step)."""
        return self._targets

    def weights(self, gramian: Tensor) -> Tensor:
        S, T, _ = gramian.shape
        if self._targets is None:
            self._targets = torch.zeros(S, T, T, dtype=torch.float64)
        elif self._targets.shape != (S, T, T):
            raise ValueError(
                f"GradVac has EMA targets for {self._targets.shape[0]} segments and "
                f"{self._targets.shape[1]} tasks, but got {S} segments and {T} tasks; "
                "use the same segments and tasks every step (or a new GradVac)"
            )
        orders = visiting_orders(T, self._generator)
        small = small_gramian(gramian)
        if small is not None:  # one segment of a few tasks: Python floats beat numpy's calls
            return as_weights(small_vaccine_weights(small, orders, self._targets.numpy()[0], self.beta))
        return torch.from_numpy(vaccine_weights(gramian.numpy(), orders, self._targets.numpy(), self.beta))

    def state_dict(self) -> dict[str, Any]:
        state = generator_state(self._generator)
        state["targets"] = None if self._targets is None else self._targets.clone()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        state = dict(state)
        load_generator_state(self._generator, state, type(self).__name__)
        targets = state.get("targets")
        # On the CPU with the Gramians, wherever the checkpoint was mapped to.
        self._targets = None if targets is None else targets.detach().to("cpu", torch.float64).clone()


def vaccine_weights(
    K: np.ndarray, orders: list[list[int]], all_targets: np.ndarray, beta: float
) -> np.ndarray:
    """GradVac's summed weights ``Σ_i C_i`` ``[S, T]`` for Gramians ``K [S, T, T]``, the rows
    visiting ``orders`` (:func:`visiting_orders`); updates the EMA targets ``all_targets
    [S, T, T]`` in place."""
    # Row i's corrections involve only g_i', the original rows and the targets φ̂_i·, so the
    # T sequences run side by side: step k visits orders[i, k] in every row i of every
    # segment at once, in numpy ([S, T] arrays: torch's per-op dispatch would dominate).
    # Each step reads and writes its own pairs' targets, so they are read once before the
    # walk and written once after it.
    S, T, _ = K.shape
    norms = np.sqrt(np.maximum(K.diagonal(0, 1, 2), 0.0))  # ‖g_j‖, [S, T]
    visits = order_array(orders, T).T  # [T-1, T]
    tasks = np.arange(T)
    rows = np.zeros((S, T, T))  # g_i' = rows[:, i] @ G, from the identity
    rows[:, tasks, tasks] = 1.0
    bound = norms.copy()  # Σ_k |rows_ik| ‖g_k‖
    norms_j = norms[:, visits]  # [S, T-1, T]: step k's ‖g_j‖ per row
    targets = all_targets[:, tasks, visits]  # step k's φ̂_ij per row
    sin_targets = np.sqrt(np.maximum(1 - targets * targets, _MIN_SIN_SQ))
    # What each step needs of them: a defined cosine, the correction's denominator, and
    # the level below which a cosine misses its target.
    has_norms_j, denominators, thresholds = norms_j > 0, norms_j * sin_targets, targets - _COS_TOL
    phis = np.zeros(targets.shape)
    valids = np.zeros(targets.shape, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):  # masked out by `valid` below
        for k, visit in enumerate(visits):  # visit[i]: the task row i is compared with now
            dots = rows @ K  # g_i' · g_k for all k
            norm_i = np.sqrt(np.maximum(np.einsum("sik,sik->si", rows, dots), 0.0))  # ‖g_i'‖
            norm_j, target, sin_target = norms_j[:, k], targets[:, k], sin_targets[:, k]
            valid = (norm_i > _ZERO_NORM * bound) & has_norms_j[:, k]
            phi = np.where(valid, (dots[:, tasks, visit] / (norm_i * norm_j)).clip(-1.0, 1.0), 0.0)
            sin_phi = np.sqrt(np.maximum(1 - phi * phi, 0.0))
            coef = norm_i * (target * sin_phi - phi * sin_target) / denominators[:, k]
            coef = np.where(valid & (phi < thresholds[:, k]), coef, 0.0)
            rows[:, tasks, visit] += coef
            bound += np.abs(coef) * norm_j
            phis[:, k], valids[:, k] = phi, valid
    all_targets[:, tasks, visits] = np.where(valids, (1 - beta) * targets + beta * phis, targets)
    return rows.sum(1)


def small_vaccine_weights(
    K: list[list[float]], orders: list[list[int]], targets: np.ndarray, beta: float
) -> list[float]:
    """:func:`vaccine_weights` for one Gramian ``K`` as nested lists, in Python floats, one row
    at a time (row ``i``'s corrections involve only ``g_i'``, the original rows and its targets
    ``φ̂_i·``); updates the EMA targets ``targets [T, T]`` in place. A correction adds
    ``coef · g_j`` to ``g_i'``, so the dots ``g_i' · g_m`` are updated by ``coef · K_jm``
    rather than recomputed (the same values to rounding)."""
    T = len(K)
    norms = [math.sqrt(max(K[t][t], 0.0)) for t in range(T)]
    phi_hats = targets.tolist()
    weights = [0.0] * T
    for i, order in enumerate(orders):
        row = [0.0] * T  # g_i' = row @ G
        row[i] = 1.0
        dots = K[i][:]  # g_i' · g_m
        bound = norms[i]  # Σ_k |row_k| ‖g_k‖
        for j in order:
            norm_i, norm_j = math.sqrt(max(sum([r * d for r, d in zip(row, dots)]), 0.0)), norms[j]
            if not (norm_i > _ZERO_NORM * bound and norm_j > 0):
                continue  # no cosine: no correction, no EMA update
            target = phi_hats[i][j]
            phi = min(max(dots[j] / (norm_i * norm_j), -1.0), 1.0)
            if phi < target - _COS_TOL:
                sin_target = math.sqrt(max(1 - target * target, _MIN_SIN_SQ))
                sin_phi = math.sqrt(max(1 - phi * phi, 0.0))
                coef = norm_i * (target * sin_phi - phi * sin_target) / (norm_j * sin_target)
                row[j] += coef
                dots = [d + coef * k for d, k in zip(dots, K[j])]
                bound += abs(coef) * norm_j
            targets[i, j] = (1 - beta) * target + beta * phi
        weights = [w + r for w, r in zip(weights, row)]
    return weights
