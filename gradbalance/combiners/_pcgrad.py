"""PCGrad in Gramian space."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Mapping

import attrs
import torch
from torch import Tensor

from .._checks import reduction_field
from .._properties import Property
from .._combiner import GramianCombiner
from ._order import generator_state, load_generator_state, make_generator, visiting_orders


@attrs.define(eq=False)
class PCGrad(GramianCombiner):
    """Projecting Conflicting Gradients (Yu et al., "Gradient Surgery for Multi-Task Learning",
    NeurIPS 2020, Algorithm 1).

    For each task ``i``, ``g_i'`` starts at ``g_i``; for every other task ``j ≠ i`` in random
    order, if ``g_i'·g_j < 0`` then ``g_i' ← g_i' − (g_i'·g_j / ‖g_j‖²) g_j`` — a projection onto
    the normal plane of the *original* ``g_j``. The result is ``Σ_i g_i'``
    (``reduction="mean"`` divides by ``T``).

    Every ``g_i'`` is a combination ``C_i G`` of the original rows, so the loop runs on the
    ``T×T`` coefficients with dot products from the Gramian ``K``: ``g_i'·g_j = (C_i K)_j``.

    Departures from public ports, all deliberate: ``j = i`` is never visited (some ports include
    it, a no-op only in exact arithmetic); the default reduction is the paper's sum (one popular
    port always averages); orders come from a private generator (``seed``), never the global
    RNG; a zero-norm ``g_j`` is skipped instead of dividing by zero. Given segments, each
    segment is an independent problem with the same visiting order.

    Args:
        seed: seed of the generator of visiting orders (``None``: fresh entropy).
        reduction: ``"sum"`` (paper) or ``"mean"``.
    """

    name: ClassVar[str] = "pcgrad"
    properties: ClassVar[frozenset[Property]] = frozenset(
        {
            Property.POSITIVELY_HOMOGENEOUS,
            Property.SUM_WITHOUT_CONFLICT,
        }
    )

    seed: int | None = None
    reduction: Literal["sum", "mean"] = reduction_field("sum")
    _generator: torch.Generator = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._generator = make_generator(self.seed)

    def weights(self, gramian: Tensor) -> Tensor:
        S, T, _ = gramian.shape
        sq_norms = gramian.diagonal(dim1=-2, dim2=-1)  # [S, T]
        coeffs = torch.eye(T, dtype=gramian.dtype).repeat(S, 1, 1)  # g_i' = C[:, i] @ G
        for i, order in enumerate(visiting_orders(T, self._generator)):
            row = coeffs[:, i]  # a view: updates land in coeffs
            for j in order:
                dot = (row * gramian[:, :, j]).sum(-1)  # g_i' · g_j
                sq = sq_norms[:, j]
                conflict = (dot < 0) & (sq > 0)
                row[:, j] -= torch.where(conflict, dot / torch.where(sq > 0, sq, 1.0), 0.0)
        weights = coeffs.sum(1)
        return weights / T if self.reduction == "mean" else weights

    def state_dict(self) -> dict[str, Any]:
        return generator_state(self._generator)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        load_generator_state(self._generator, dict(state), type(self).__name__)
