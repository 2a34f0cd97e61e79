"""GradVac in Gramian space."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import attrs
import torch
from torch import Tensor

from .._properties import Property
from .._combiner import GramianCombiner
from ._order import generator_state, load_generator_state, make_generator, visiting_orders

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
        targets = self._targets
        beta = self.beta
        norms = gramian.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt()  # ‖g_j‖, [S, T]
        coeffs = torch.eye(T, dtype=gramian.dtype).repeat(S, 1, 1)
        for i, order in enumerate(visiting_orders(T, self._generator)):
            row = coeffs[:, i]
            for j in order:
                dots = torch.einsum("st,stu->su", row, gramian)  # g_i' · g_k for all k
                norm_i = (row * dots).sum(-1).clamp_min(0).sqrt()  # ‖g_i'‖
                bound = (row.abs() * norms).sum(-1)
                norm_j = norms[:, j]
                valid = (norm_i > _ZERO_NORM * bound) & (norm_j > 0)
                denom = torch.where(valid, norm_i * norm_j, 1.0)
                phi = torch.where(valid, dots[:, j] / denom, 0.0).clamp(-1, 1)
                target = targets[:, i, j]
                sin_target = (1 - target * target).clamp_min(_MIN_SIN_SQ).sqrt()
                sin_phi = (1 - phi * phi).clamp_min(0).sqrt()
                coef = (
                    norm_i
                    * (target * sin_phi - phi * sin_target)
                    / (torch.where(valid, norm_j, 1.0) * sin_target)
                )
                row[:, j] += torch.where(valid & (phi < target - _COS_TOL), coef, 0.0)
                targets[:, i, j] = torch.where(valid, (1 - beta) * target + beta * phi, target)
        return coeffs.sum(1)

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
