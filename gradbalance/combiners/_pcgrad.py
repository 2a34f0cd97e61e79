"""PCGrad in Gramian space."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import attrs
import numpy as np
import torch
from torch import Tensor

from .._checks import reduction_field
from .._combiner import GramianCombinerWithReduction
from .._properties import Property
from ._order import generator_state, load_generator_state, make_generator, order_array, visiting_orders
from ._solvers import as_weights, small_gramian


@attrs.define(eq=False)
class PCGrad(GramianCombinerWithReduction):
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
    unreduced: ClassVar[Literal["sum", "mean"]] = "sum"  # Σ_i g_i'
    _generator: torch.Generator = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._generator = make_generator(self.seed)

    def unreduced_weights(self, gramian: Tensor) -> Tensor:
        small = small_gramian(gramian)
        if small is not None:  # one segment of a few tasks: Python floats beat numpy's calls
            return as_weights(small_projection_weights(small, visiting_orders(len(small), self._generator)))
        # Row i's projections involve only g_i' and the original rows, so the T sequences run
        # side by side: step k visits orders[i, k] in every row i of every segment at once, in
        # numpy ([S, T] arrays; torch's per-op dispatch would cost more than the arithmetic).
        K = gramian.numpy()
        S, T, _ = K.shape
        sq_norms = K.diagonal(0, 1, 2)
        # a zero g_j is never projected on
        inverse = np.divide(1.0, sq_norms, out=np.ones((S, T)), where=sq_norms > 0)
        orders = order_array(visiting_orders(T, self._generator), T)
        tasks = np.arange(T)
        rows = np.zeros((S, T, T))  # g_i' = rows[:, i] @ G, from the identity
        rows[:, tasks, tasks] = 1.0
        for visit in orders.T:  # visit[i]: the task row i projects against now
            dots = np.einsum("sik,sik->si", rows, K[:, visit])  # g_i' · g_j (K is symmetric)
            # Only a conflict (g_i' · g_j < 0) subtracts; a zero g_j has dots exactly 0.
            rows[:, tasks, visit] -= np.minimum(dots, 0.0) * inverse[:, visit]
        return torch.from_numpy(rows.sum(1))

    def state_dict(self) -> dict[str, Any]:
        return generator_state(self._generator)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        load_generator_state(self._generator, dict(state), type(self).__name__)


def small_projection_weights(K: list[list[float]], orders: list[list[int]]) -> list[float]:
    """PCGrad's summed weights ``Σ_i C_i`` for one Gramian ``K`` as nested lists, ``orders[i]``
    the tasks row ``i`` visits: :meth:`PCGrad.unreduced_weights`' steps in Python floats, one
    row at a time (the same products and sums, so the same weights to rounding)."""
    T = len(K)
    inverse = [1.0 / K[j][j] if K[j][j] > 0 else 1.0 for j in range(T)]  # a zero g_j: dots are 0
    weights = [0.0] * T
    for i, order in enumerate(orders):
        row = [0.0] * T  # g_i' = row @ G
        row[i] = 1.0
        for j in order:
            dot = sum([r * k for r, k in zip(row, K[j])])  # g_i' · g_j (K is symmetric)
            if dot < 0.0:
                row[j] -= dot * inverse[j]
        weights = [w + r for w, r in zip(weights, row)]
    return weights
